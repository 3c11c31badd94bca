//! The simulated field: a 2024-like grid of 20 drivers (numbers, names, teams and team
//! colours as OpenF1 publishes them), plus generated extra entries beyond 20.

/// One entry of the field.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub number: u32,
    pub first_name: String,
    pub last_name: String,
    pub acronym: String,
    pub team: String,
    pub colour: String,
    pub country_code: String,
    /// Index of the team (pit box order).
    pub team_index: usize,
    /// Relative pace handicap of the car: 0.0 is the fastest team.
    pub team_pace: f64,
}

struct Team {
    name: &'static str,
    colour: &'static str,
    pace: f64,
    drivers: [(u32, &'static str, &'static str, &'static str, &'static str); 2],
}

const TEAMS: [Team; 10] = [
    Team {
        name: "McLaren",
        colour: "FF8000",
        pace: 0.0000,
        drivers: [
            (4, "Lando", "Norris", "NOR", "GBR"),
            (81, "Oscar", "Piastri", "PIA", "AUS"),
        ],
    },
    Team {
        name: "Ferrari",
        colour: "E8002D",
        pace: 0.0018,
        drivers: [
            (16, "Charles", "Leclerc", "LEC", "MON"),
            (55, "Carlos", "Sainz", "SAI", "ESP"),
        ],
    },
    Team {
        name: "Red Bull Racing",
        colour: "3671C6",
        pace: 0.0033,
        drivers: [
            (1, "Max", "Verstappen", "VER", "NED"),
            (11, "Sergio", "Perez", "PER", "MEX"),
        ],
    },
    Team {
        name: "Mercedes",
        colour: "27F4D2",
        pace: 0.0045,
        drivers: [
            (44, "Lewis", "Hamilton", "HAM", "GBR"),
            (63, "George", "Russell", "RUS", "GBR"),
        ],
    },
    Team {
        name: "Aston Martin",
        colour: "229971",
        pace: 0.0120,
        drivers: [
            (14, "Fernando", "Alonso", "ALO", "ESP"),
            (18, "Lance", "Stroll", "STR", "CAN"),
        ],
    },
    Team {
        name: "RB",
        colour: "6692FF",
        pace: 0.0132,
        drivers: [
            (22, "Yuki", "Tsunoda", "TSU", "JPN"),
            (3, "Daniel", "Ricciardo", "RIC", "AUS"),
        ],
    },
    Team {
        name: "Haas F1 Team",
        colour: "B6BABD",
        pace: 0.0138,
        drivers: [
            (27, "Nico", "Hulkenberg", "HUL", "GER"),
            (20, "Kevin", "Magnussen", "MAG", "DEN"),
        ],
    },
    Team {
        name: "Williams",
        colour: "64C4FF",
        pace: 0.0150,
        drivers: [
            (23, "Alexander", "Albon", "ALB", "THA"),
            (2, "Logan", "Sargeant", "SAR", "USA"),
        ],
    },
    Team {
        name: "Alpine",
        colour: "FF87BC",
        pace: 0.0162,
        drivers: [
            (10, "Pierre", "Gasly", "GAS", "FRA"),
            (31, "Esteban", "Ocon", "OCO", "FRA"),
        ],
    },
    Team {
        name: "Kick Sauber",
        colour: "52E252",
        pace: 0.0210,
        drivers: [
            (77, "Valtteri", "Bottas", "BOT", "FIN"),
            (24, "Guanyu", "Zhou", "ZHO", "CHN"),
        ],
    },
];

/// The most cars a sample can have (the grid must fit on the main straight).
pub const MAX_CARS: u32 = 40;

/// The first `cars` entries: the 20 drivers of 2024, then generated "Sim Driver" entries
/// in a simulated team pair by pair.
pub(crate) fn field(cars: u32) -> Vec<Entry> {
    let mut entries = Vec::new();
    // A field of fewer than 20 takes whole teams in the order of the table.
    for (team_index, team) in TEAMS.iter().enumerate() {
        for &(number, first, last, acronym, country) in &team.drivers {
            entries.push(Entry {
                number,
                first_name: first.to_string(),
                last_name: last.to_string(),
                acronym: acronym.to_string(),
                team: team.name.to_string(),
                colour: team.colour.to_string(),
                country_code: country.to_string(),
                team_index,
                team_pace: team.pace,
            });
        }
    }
    let used: Vec<u32> = entries.iter().map(|e| e.number).collect();
    let mut spare = (5..100).filter(|n| !used.contains(n));
    let mut extra = 0usize;
    while entries.len() < cars as usize {
        let number = spare.next().unwrap_or(100 + extra as u32);
        let letter = |k: usize| char::from(b'A' + (k % 26) as u8);
        let team_index = TEAMS.len() + extra / 2;
        entries.push(Entry {
            number,
            first_name: "Sim".to_string(),
            last_name: format!("Driver {number}"),
            acronym: format!("S{}{}", letter(extra / 26), letter(extra)),
            team: format!("Simulated Racing {}", extra / 2 + 1),
            colour: ["AAAAAA", "C8A2C8", "8FBC8F", "DAA520"][(extra / 2) % 4].to_string(),
            country_code: "SIM".to_string(),
            team_index,
            team_pace: 0.018 + 0.0015 * ((extra / 2) % 5) as f64,
        });
        extra += 1;
    }
    entries.truncate(cars as usize);
    entries
}
