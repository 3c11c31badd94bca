use std::io::Read;

use serde_json::Value;

use super::*;

const START_LINE: (f64, f64) = (-1389.0, -855.0);

fn options(dir: &Path, laps: u32, cars: u32, seed: u64, gzip: bool) -> SampleOptions {
    SampleOptions {
        session_key: 9999,
        laps,
        cars,
        seed,
        gzip,
        out_dir: dir.to_path_buf(),
    }
}

/// A cache file as JSON, plain or gzipped.
fn read(dir: &Path, name: &str) -> Value {
    let plain = dir.join(format!("{name}.json"));
    let bytes = if plain.exists() {
        fs::read(plain).unwrap()
    } else {
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(File::open(dir.join(format!("{name}.json.gz"))).unwrap())
            .read_to_end(&mut text)
            .unwrap();
        text
    };
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn rows(dir: &Path, name: &str) -> Vec<Value> {
    match read(dir, name) {
        Value::Array(rows) => rows,
        other => panic!("{name} is not an array: {other}"),
    }
}

fn ns(row: &Value, field: &str) -> i64 {
    parse_iso8601_ns(row[field].as_str().unwrap()).unwrap()
}

/// A driver's location samples as (ns, x, y).
fn track(dir: &Path, driver: u64) -> Vec<(i64, f64, f64)> {
    rows(dir, &format!("location/{driver}"))
        .iter()
        .map(|r| {
            (
                ns(r, "date"),
                r["x"].as_f64().unwrap(),
                r["y"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Where the car was at `t`, interpolating between samples.
fn at(track: &[(i64, f64, f64)], t: i64) -> (f64, f64) {
    let i = track
        .partition_point(|s| s.0 <= t)
        .clamp(1, track.len() - 1);
    let (a, b) = (track[i - 1], track[i]);
    let frac = (t - a.0) as f64 / (b.0 - a.0) as f64;
    (a.1 + (b.1 - a.1) * frac, a.2 + (b.2 - a.2) * frac)
}

fn distance(a: (f64, f64), b: (f64, f64)) -> f64 {
    (a.0 - b.0).hypot(a.1 - b.1)
}

#[test]
fn every_file_is_present_and_valid_json() {
    for gzip in [false, true] {
        let temp = tempfile::tempdir().unwrap();
        let summary = generate(&options(temp.path(), 2, 20, 7, gzip)).unwrap();
        let dir = &summary.dir;
        assert_eq!(dir, &temp.path().join("race_data_9999"));
        for name in [
            "sessions",
            "meetings",
            "drivers",
            "laps",
            "position",
            "intervals",
            "stints",
            "pit",
            "race_control",
            "session_result",
            "starting_grid",
            "weather",
        ] {
            assert!(!rows(dir, name).is_empty(), "{name} is empty");
            let (plain, gz) = (
                dir.join(format!("{name}.json")).exists(),
                dir.join(format!("{name}.json.gz")).exists(),
            );
            assert_eq!((plain, gz), (!gzip, gzip), "{name}");
        }
        let drivers = rows(dir, "drivers");
        assert_eq!(drivers.len(), 20);
        for driver in &drivers {
            let number = driver["driver_number"].as_u64().unwrap();
            assert!(!rows(dir, &format!("location/{number}")).is_empty());
            assert!(!rows(dir, &format!("car_data/{number}")).is_empty());
            let colour = driver["team_colour"].as_str().unwrap();
            assert!(colour.len() == 6 && colour.chars().all(|c| c.is_ascii_hexdigit()));
            assert_eq!(driver["name_acronym"].as_str().unwrap().len(), 3);
        }
        // The circuit is the bundled MultiViewer file, unchanged.
        assert_eq!(
            fs::read_to_string(dir.join("circuit_info.json")).unwrap(),
            MONZA_CIRCUIT_JSON
        );
        let manifest: Value =
            serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["complete"], true);
        assert_eq!(manifest["simulated"], true);
        assert_eq!(manifest["session_key"], 9999);
        assert!(manifest["source"].as_str().unwrap().contains("seed 7"));
        assert!(parse_iso8601_ns(manifest["created"].as_str().unwrap()).is_some());
        // Names say it is simulated; times are OpenF1's ISO 8601 with microseconds.
        let session = &rows(dir, "sessions")[0];
        assert!(session["session_name"]
            .as_str()
            .unwrap()
            .contains("simulated"));
        assert_eq!(session["session_type"], "Race");
        assert!(rows(dir, "meetings")[0]["meeting_name"]
            .as_str()
            .unwrap()
            .contains("Simulated"));
        let date = rows(dir, "laps")[0]["date_start"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            date.len(),
            "2024-09-01T13:03:35.123000+00:00".len(),
            "{date}"
        );
        assert!(date.ends_with("+00:00"));
        let on_disk: u64 = walk(dir)
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(summary.bytes_written, on_disk);
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn the_same_seed_gives_the_same_race() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let first = generate(&options(a.path(), 2, 8, 42, false)).unwrap();
    let second = generate(&options(b.path(), 2, 8, 42, false)).unwrap();
    let other = generate(&options(c.path(), 2, 8, 43, false)).unwrap();
    let mut files = walk(&first.dir);
    files.sort();
    assert!(files.len() > 20);
    for file in &files {
        let relative = file.strip_prefix(&first.dir).unwrap();
        if relative == Path::new("manifest.json") {
            continue; // carries the creation time
        }
        let again = fs::read(second.dir.join(relative)).unwrap();
        assert!(
            fs::read(file).unwrap() == again,
            "{} differs",
            relative.display()
        );
    }
    assert_ne!(
        fs::read(first.dir.join("laps.json")).unwrap(),
        fs::read(other.dir.join("laps.json")).unwrap()
    );
}

#[test]
fn samples_come_at_openf1_rates_and_share_location_dates() {
    let temp = tempfile::tempdir().unwrap();
    let summary = generate(&options(temp.path(), 2, 6, 1, false)).unwrap();
    let dir = &summary.dir;
    let drivers: Vec<u64> = rows(dir, "drivers")
        .iter()
        .map(|d| d["driver_number"].as_u64().unwrap())
        .collect();
    let first: Vec<String> = rows(dir, &format!("location/{}", drivers[0]))
        .iter()
        .map(|r| r["date"].as_str().unwrap().to_string())
        .collect();
    let span_s = |dates: &[i64]| (dates[dates.len() - 1] - dates[0]) as f64 / 1e9;
    let mut location_total = 0;
    let mut car_data_total = 0;
    for &driver in &drivers {
        let location = rows(dir, &format!("location/{driver}"));
        let dates: Vec<String> = location
            .iter()
            .map(|r| r["date"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            dates, first,
            "every car of a location sample shares its date"
        );
        let times: Vec<i64> = location.iter().map(|r| ns(r, "date")).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "sorted by date");
        let rate = times.len() as f64 / span_s(&times);
        assert!((3.6..3.8).contains(&rate), "location at {rate} Hz");
        let car_data = rows(dir, &format!("car_data/{driver}"));
        let times: Vec<i64> = car_data.iter().map(|r| ns(r, "date")).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]));
        let rate = times.len() as f64 / span_s(&times);
        assert!((3.6..3.8).contains(&rate), "car_data at {rate} Hz");
        for row in &car_data {
            assert!(row["n_gear"].as_u64().unwrap() <= 8);
            assert!(row["throttle"].as_u64().unwrap() <= 100);
            assert!(matches!(row["brake"].as_u64().unwrap(), 0 | 100));
            assert!(row["speed"].as_u64().unwrap() < 360);
        }
        location_total += location.len();
        car_data_total += car_data.len();
    }
    assert_eq!(summary.location_rows, location_total);
    assert_eq!(summary.car_data_rows, car_data_total);
    // Data starts minutes before the race.
    let lights_out = rows(dir, "laps")
        .iter()
        .filter(|l| l["lap_number"] == 1)
        .map(|l| ns(l, "date_start"))
        .min()
        .unwrap();
    let first_sample = parse_iso8601_ns(&first[0]).unwrap();
    assert!(lights_out - first_sample > 300_000_000_000);
    // Weather about once a minute.
    let weather = rows(dir, "weather");
    let gaps: Vec<i64> = weather
        .windows(2)
        .map(|w| ns(&w[1], "date") - ns(&w[0], "date"))
        .collect();
    assert!(gaps
        .iter()
        .all(|g| (58_000_000_000..62_000_000_000).contains(g)));
}

#[test]
fn laps_agree_with_where_the_cars_are() {
    let temp = tempfile::tempdir().unwrap();
    let summary = generate(&options(temp.path(), 4, 10, 5, false)).unwrap();
    let dir = &summary.dir;
    let laps = rows(dir, "laps");
    assert_eq!(summary.laps, laps.len());
    let mut tracks = std::collections::HashMap::new();
    let mut pit_out_laps = 0;
    for lap in &laps {
        let driver = lap["driver_number"].as_u64().unwrap();
        let track = tracks.entry(driver).or_insert_with(|| track(dir, driver));
        let start = ns(lap, "date_start");
        let gap = distance(at(track, start), START_LINE);
        let number = lap["lap_number"].as_u64().unwrap();
        if number == 1 {
            // On the grid: at most 10 slots of 8 m behind the line.
            assert!(gap < 900.0, "lap 1 of {driver} starts {gap} from the line");
            assert!(lap["lap_duration"].is_null());
        } else if lap["is_pit_out_lap"] == true {
            // Crossing the line in the pit lane, 25 m beside the track.
            pit_out_laps += 1;
            assert!((200.0..300.0).contains(&gap), "pit-out lap {gap}");
        } else {
            assert!(
                gap < 30.0,
                "lap {number} of {driver} starts {gap} from the line"
            );
        }
        if let Some(duration) = lap["lap_duration"].as_f64() {
            let sectors: f64 = (1..=3)
                .map(|s| lap[format!("duration_sector_{s}")].as_f64().unwrap())
                .sum();
            assert!(
                (sectors - duration).abs() < 0.003,
                "{sectors} vs {duration}"
            );
            assert!((75.0..110.0).contains(&duration), "{duration}");
            for s in 1..=3 {
                assert!(lap[format!("segments_sector_{s}")].as_array().is_some());
            }
        }
    }
    assert_eq!(pit_out_laps, 10, "every car pits once");
    // Each lap starts when the previous one ends.
    for driver in tracks.keys() {
        let mine: Vec<&Value> = laps
            .iter()
            .filter(|l| l["driver_number"].as_u64() == Some(*driver))
            .collect();
        for pair in mine.windows(2) {
            if let Some(duration) = pair[0]["lap_duration"].as_f64() {
                let end = ns(pair[0], "date_start") + (duration * 1e9) as i64;
                assert!((ns(pair[1], "date_start") - end).abs() < 2_000_000);
            }
        }
    }
    // Pit stops: one per car, about 20 s in the lane, and the compound changes.
    let pits = rows(dir, "pit");
    assert_eq!(pits.len(), 10);
    for pit in &pits {
        let lane = pit["lane_duration"].as_f64().unwrap();
        assert!((17.0..30.0).contains(&lane), "lane {lane}");
    }
    let stints = rows(dir, "stints");
    assert_eq!(stints.len(), 20);
    for pair in stints.chunks(2) {
        assert_eq!(pair[0]["driver_number"], pair[1]["driver_number"]);
        assert_ne!(pair[0]["compound"], pair[1]["compound"]);
        assert_eq!(
            pair[0]["lap_end"].as_u64().unwrap() + 1,
            pair[1]["lap_start"].as_u64().unwrap()
        );
    }
}

#[test]
fn the_fastest_lap_is_a_real_lap() {
    let temp = tempfile::tempdir().unwrap();
    let summary = generate(&options(temp.path(), 3, 8, 11, false)).unwrap();
    let dir = &summary.dir;
    let laps = rows(dir, "laps");
    let fastest = laps
        .iter()
        .filter(|l| l["lap_duration"].is_f64())
        .min_by(|a, b| {
            let d = |l: &Value| l["lap_duration"].as_f64().unwrap();
            d(a).total_cmp(&d(b))
        })
        .expect("a timed lap");
    let driver = fastest["driver_number"].as_u64().unwrap();
    let duration = fastest["lap_duration"].as_f64().unwrap();
    assert!((78.0..90.0).contains(&duration), "{duration}");
    let track = track(dir, driver);
    let start = ns(fastest, "date_start");
    let end = start + (duration * 1e9) as i64;
    assert!(distance(at(&track, start), START_LINE) < 30.0);
    assert!(distance(at(&track, end), START_LINE) < 30.0);
    // In between, the car went round: it was far from the line half a lap later, and the
    // distance it covered is one lap of the outline (~5.8 km).
    assert!(distance(at(&track, (start + end) / 2), START_LINE) > 5000.0);
    let covered: f64 = track
        .windows(2)
        .filter(|w| w[0].0 >= start && w[1].0 <= end)
        .map(|w| distance((w[0].1, w[0].2), (w[1].1, w[1].2)))
        .sum();
    assert!((55_000.0..58_500.0).contains(&covered), "covered {covered}");
    // car_data speed agrees with the motion: average speed over the lap ~ 5.8 km / time.
    let car_data = rows(dir, &format!("car_data/{driver}"));
    let speeds: Vec<f64> = car_data
        .iter()
        .filter(|r| (start..end).contains(&ns(r, "date")))
        .map(|r| r["speed"].as_f64().unwrap())
        .collect();
    let mean = speeds.iter().sum::<f64>() / speeds.len() as f64;
    let expected = 5764.0 / duration * 3.6;
    assert!(
        (mean - expected).abs() / expected < 0.05,
        "{mean} vs {expected}"
    );
}

#[test]
fn positions_change_and_results_are_classified() {
    let temp = tempfile::tempdir().unwrap();
    let summary = generate(&options(temp.path(), 12, 12, 3, false)).unwrap();
    let dir = &summary.dir;
    let positions = rows(dir, "position");
    // The first sample gives everyone their grid slot, then only changes follow.
    let grid = rows(dir, "starting_grid");
    let first_date = positions[0]["date"].clone();
    let initial: Vec<&Value> = positions
        .iter()
        .filter(|p| p["date"] == first_date)
        .collect();
    assert_eq!(initial.len(), 12);
    for p in &initial {
        let slot = grid
            .iter()
            .find(|g| g["driver_number"] == p["driver_number"])
            .unwrap();
        assert_eq!(slot["position"], p["position"]);
    }
    assert!(positions.len() > 12 + 10, "overtakes change positions");
    let mut last = std::collections::HashMap::new();
    for p in &positions {
        let previous = last.insert(p["driver_number"].clone(), p["position"].clone());
        assert_ne!(
            previous.as_ref(),
            Some(&p["position"]),
            "change events only"
        );
    }
    // Classification: 12 laps, one car retired (null position, dnf), points for the top ten.
    let results = rows(dir, "session_result");
    assert_eq!(results.len(), 12);
    let retired: Vec<&Value> = results.iter().filter(|r| r["dnf"] == true).collect();
    assert_eq!(retired.len(), 1);
    assert!(retired[0]["position"].is_null());
    assert_eq!(results[0]["position"], 1);
    assert_eq!(results[0]["number_of_laps"], 12);
    assert_eq!(results[0]["gap_to_leader"], 0.0);
    let points: f64 = results.iter().map(|r| r["points"].as_f64().unwrap()).sum();
    assert_eq!(points, 101.0 + 1.0); // 25+18+...+1, plus the fastest lap
                                     // The final order agrees with the last position events.
    for result in results.iter().filter(|r| r["dnf"] == false) {
        assert_eq!(last[&result["driver_number"]], result["position"]);
    }
    // Race control: green, yellow and clear, chequered flag; intervals every ~4 s.
    let flags: Vec<String> = rows(dir, "race_control")
        .iter()
        .filter_map(|r| r["flag"].as_str().map(str::to_string))
        .collect();
    assert_eq!(flags, ["GREEN", "YELLOW", "CLEAR", "CHEQUERED"]);
    let intervals = rows(dir, "intervals");
    // The leader's rows: gap 0, no interval; everyone else has a number (or null in the
    // first seconds, before the leader has passed where they are).
    let leader_rows: Vec<&Value> = intervals
        .iter()
        .filter(|r| r["interval"].is_null() && !r["gap_to_leader"].is_null())
        .collect();
    assert!(leader_rows.iter().all(|r| r["gap_to_leader"] == 0.0));
    let share = leader_rows.len() as f64 / intervals.len() as f64;
    assert!(
        (0.07..0.1).contains(&share),
        "one row in 12 is the leader's: {share}"
    );
    assert!(intervals
        .iter()
        .filter(|r| !r["interval"].is_null())
        .all(|r| r["interval"].as_f64().unwrap() >= 0.0 && r["gap_to_leader"].is_f64()));
    let winner = results[0]["driver_number"].clone();
    let winner_rows: Vec<i64> = intervals
        .iter()
        .filter(|r| r["driver_number"] == winner)
        .map(|r| ns(r, "date"))
        .collect();
    let mean_gap = (winner_rows[winner_rows.len() - 1] - winner_rows[0]) as f64
        / (winner_rows.len() - 1) as f64
        / 1e9;
    assert!((3.8..4.2).contains(&mean_gap), "{mean_gap}");
    // The retired car stands still from its retirement on.
    let number = retired[0]["driver_number"].as_u64().unwrap();
    let track = track(dir, number);
    let tail = &track[track.len() - 200..];
    assert!(tail.iter().all(|s| (s.1, s.2) == (tail[0].1, tail[0].2)));
}

#[test]
fn lapped_cars_show_laps_not_seconds() {
    // A full-length race spreads the field wide enough for the leader to lap the back.
    let temp = tempfile::tempdir().unwrap();
    let summary = generate(&options(temp.path(), 53, 20, 2024, true)).unwrap();
    let intervals = rows(&summary.dir, "intervals");
    assert!(intervals
        .iter()
        .any(|r| r["gap_to_leader"].as_str() == Some("+1 LAP")));
}

#[test]
fn bigger_fields_and_bad_options() {
    let temp = tempfile::tempdir().unwrap();
    let summary = generate(&options(temp.path(), 1, 24, 9, false)).unwrap();
    let drivers = rows(&summary.dir, "drivers");
    let mut numbers: Vec<u64> = drivers
        .iter()
        .map(|d| d["driver_number"].as_u64().unwrap())
        .collect();
    numbers.dedup();
    assert_eq!(numbers.len(), 24);
    // A one-lap race has no pit stops and no timed lap, but it has a result.
    assert!(rows(&summary.dir, "pit").is_empty());
    assert_eq!(rows(&summary.dir, "session_result").len(), 24);
    for (laps, cars) in [(0, 20), (5, 0), (5, MAX_CARS + 1), (MAX_LAPS + 1, 20)] {
        let error = generate(&options(temp.path(), laps, cars, 1, false)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
    // A real (not simulated) session in the way is never overwritten.
    let real = temp.path().join("race_data_9999");
    fs::write(
        real.join("manifest.json"),
        r#"{"session_key": 9999, "complete": true, "source": "https://api.openf1.org/v1"}"#,
    )
    .unwrap();
    let error = generate(&options(temp.path(), 1, 2, 1, false)).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
    assert!(real.join("drivers.json").exists());
}
