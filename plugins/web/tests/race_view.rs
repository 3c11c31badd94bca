//! The `race_view` sink's protocol without a browser: a real server on loopback, real HTTP
//! and WebSocket clients. The full state on connect, then updates with what changed; a late
//! viewer gets the same state as the first; OpenF1, Emperor and simulator records all land
//! in the tower and on the map.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{next_text, start, Running};
use pitwall_api::record::*;
use pitwall_api::telemetry::CarTelemetry;
use pitwall_api::{Event, Record};
use pitwall_web::race_view::RaceViewConfig;
use serde_json::Value;

const SESSION: &str = "9158";
const T: Duration = Duration::from_secs(3);
/// Event times of a replay: a September 2024 afternoon, far from the wall clock.
const START_NS: i64 = 1_725_195_600_000_000_000;

fn key() -> SessionKey {
    SESSION.into()
}

fn driver(number: u32, code: &str, colour: &str) -> Event {
    Event::new(
        START_NS,
        Record::Driver(Arc::new(Driver {
            session_key: key(),
            driver_number: number,
            name_acronym: Some(code.into()),
            team_colour: Some(colour.into()),
            full_name: Some(format!("Driver {code}")),
            ..Driver::default()
        })),
    )
}

fn frame(t_ms: i64, cars: &[(u32, f64, f64, u32)]) -> Event {
    Event::new(
        START_NS + t_ms * 1_000_000,
        Record::Frame(Arc::new(Frame {
            session_key: key(),
            t_ms,
            cars: cars
                .iter()
                .map(|&(car, x, y, position)| FrameCar {
                    car,
                    x,
                    y,
                    position,
                })
                .collect(),
        })),
    )
}

fn race_control(t_ms: i64, flag: Option<&str>, message: &str) -> Event {
    Event::new(
        START_NS + t_ms * 1_000_000,
        Record::RaceControl(Arc::new(RaceControlMessage {
            session_key: key(),
            category: Some("Flag".into()),
            flag: flag.map(str::to_string),
            scope: Some("Track".into()),
            lap_number: Some(1),
            message: Some(message.into()),
            ..RaceControlMessage::default()
        })),
    )
}

async fn view(options: &str) -> Running {
    start::<RaceViewConfig>(&format!("interval_ms = 20\n{options}"), "/").await
}

async fn state(running: &Running) -> Value {
    let response = running.get("/race/state").await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Updates until one satisfies `wanted`, within [`T`].
async fn update_where(client: &mut common::Client, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let message: Value = serde_json::from_str(&next_text(client, left).await).unwrap();
        assert_eq!(
            message["type"], "update",
            "after the state, only updates: {message}"
        );
        if wanted(&message) {
            return message;
        }
    }
}

fn codes(tower: &Value) -> Vec<String> {
    tower["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["code"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_page_is_one_self_contained_file() {
    let running = view("title = \"Monza <live>\"").await;
    let response = running.get("/").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = response.text().await.unwrap();
    assert!(
        page.contains("<title>Monza &lt;live&gt;</title>"),
        "title escaped"
    );
    assert!(page.len() < 200 * 1024, "page weight {} bytes", page.len());
    for external in ["src=\"http", "href=\"http", "@import", "fetch("] {
        assert!(
            !page.contains(external),
            "the page loads nothing else: {external}"
        );
    }
    assert!(
        page.contains("\"socket\":\"/race/socket\""),
        "settings written in"
    );
}

#[tokio::test]
async fn a_viewer_gets_the_full_state_then_only_what_changed() {
    let running = view("total_laps = 53").await;
    running
        .push(vec![
            driver(1, "VER", "3671C6"),
            driver(16, "LEC", "E8002D"),
            Event::new(
                START_NS,
                Record::TrackLayout(Arc::new(TrackLayout {
                    session_key: key(),
                    track_path: vec![
                        Point { x: 0.0, y: 0.0 },
                        Point { x: 100.0, y: 0.0 },
                        Point { x: 100.0, y: 50.0 },
                    ],
                    pit_path: vec![Point { x: 0.0, y: -5.0 }, Point { x: 50.0, y: -5.0 }],
                    ..TrackLayout::default()
                })),
            ),
            frame(100, &[(16, 10.0, 0.0, 1), (1, 5.0, 0.0, 2)]),
        ])
        .await;
    // The state holds both drivers in race order, the track and the cars.
    let mut first = None;
    for _ in 0..100 {
        let s = state(&running).await;
        if s["cars"].as_array().is_some_and(|cars| cars.len() == 2) {
            first = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = first.expect("the state fills in");
    assert_eq!(first["type"], "state");
    assert_eq!(codes(&first["tower"]), ["LEC", "VER"]);
    assert_eq!(first["tower"]["rows"][0]["colour"], "E8002D");
    assert_eq!(first["track"]["outline"][1], serde_json::json!([100, 0]));
    assert_eq!(first["track"]["driven"], false);
    assert_eq!(
        first["session"]["status"], "replay",
        "event times long past"
    );
    assert_eq!(first["session"]["total_laps"], 53);
    assert_eq!(first["session"]["t_ms"], 100);

    // A viewer: the same state first, then updates.
    let mut client = running.connect_path("/race/socket").await;
    let on_connect: Value = serde_json::from_str(&next_text(&mut client, T).await).unwrap();
    assert_eq!(
        on_connect, first,
        "the socket's first message is the full state"
    );

    running
        .push(vec![frame(200, &[(16, 12.0, 0.0, 1), (1, 7.0, 0.0, 2)])])
        .await;
    let moved = update_where(&mut client, |u| u.get("cars").is_some()).await;
    assert!(moved.get("track").is_none(), "the track did not change");
    assert!(moved.get("tower").is_none(), "the tower did not change");
    assert_eq!(moved["cars"][0], serde_json::json!(["1", 7, 0, "running"]));
    assert_eq!(moved["session"]["t_ms"], 200);

    // An overtake changes the tower; a race-control message arrives alone, newest only.
    running
        .push(vec![
            frame(300, &[(16, 14.0, 0.0, 2), (1, 15.0, 0.0, 1)]),
            race_control(300, Some("GREEN"), "GREEN LIGHT - PIT EXIT OPEN"),
        ])
        .await;
    let overtake = update_where(&mut client, |u| u.get("tower").is_some()).await;
    assert_eq!(codes(&overtake["tower"]), ["VER", "LEC"]);
    assert_eq!(
        overtake["race_control"][0]["message"],
        "GREEN LIGHT - PIT EXIT OPEN"
    );
    assert_eq!(overtake["session"]["track_status"], "GREEN");

    // A second viewer that connects now sees the same race as the first.
    let mut late = running.connect_path("/race/socket").await;
    let late_state: Value = serde_json::from_str(&next_text(&mut late, T).await).unwrap();
    assert_eq!(codes(&late_state["tower"]), ["VER", "LEC"]);
    assert_eq!(late_state["race_control"].as_array().unwrap().len(), 1);
    running.finish().await.unwrap();
}

#[tokio::test]
async fn laps_stints_pit_stops_and_gaps_fill_the_tower() {
    let running = view("").await;
    let lap = |number: u32, duration: Option<f64>, driver: u32| {
        Event::new(
            START_NS,
            Record::Lap(Arc::new(Lap {
                session_key: key(),
                driver_number: driver,
                lap_number: number,
                lap_duration: duration,
                ..Lap::default()
            })),
        )
    };
    running
        .push(vec![
            driver(1, "VER", "3671C6"),
            driver(16, "LEC", "E8002D"),
            frame(100, &[(1, 0.0, 0.0, 1), (16, 1.0, 0.0, 2)]),
            lap(2, Some(82.5), 1),
            lap(3, Some(81.9), 1),
            lap(3, Some(81.2), 16),
            Event::new(
                START_NS,
                Record::Interval(Arc::new(Interval {
                    session_key: key(),
                    driver_number: 16,
                    gap_to_leader: Some(Gap::Seconds(1.5)),
                    interval: Some(Gap::Text("+1 LAP".into())),
                    ..Interval::default()
                })),
            ),
            Event::new(
                START_NS,
                Record::Stint(Arc::new(Stint {
                    session_key: key(),
                    driver_number: 16,
                    stint_number: 2,
                    compound: Some("HARD".into()),
                    lap_start: Some(2),
                    tyre_age_at_start: Some(3),
                    ..Stint::default()
                })),
            ),
            Event::new(
                START_NS + 1_000_000_000,
                Record::Pit(Arc::new(Pit {
                    session_key: key(),
                    driver_number: 16,
                    lap_number: Some(1),
                    lane_duration: Some(22.0),
                    ..Pit::default()
                })),
            ),
        ])
        .await;
    let mut rows = Value::Null;
    for _ in 0..100 {
        let s = state(&running).await;
        if s["tower"]["rows"][1]["pit_stops"] == 1 {
            rows = s["tower"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = &rows["rows"][0];
    assert_eq!(leader["code"], "VER");
    assert_eq!(leader["laps"], 3);
    assert_eq!(leader["last_lap_s"], 81.9);
    assert_eq!(leader["best_lap_s"], 81.9);
    let second = &rows["rows"][1];
    assert_eq!(second["gap"], "+1.500");
    assert_eq!(second["interval"], "+1 LAP");
    assert_eq!(second["compound"], "HARD");
    assert_eq!(second["tyre_age"], 5, "3 laps old at lap 2, 2 laps on it");
    assert_eq!(second["status"], "pit", "within its 22 s in the lane");
    assert_eq!(rows["fastest"], "16", "81.2 is the fastest lap");
    running.finish().await.unwrap();
}

#[tokio::test]
async fn emperor_standings_chat_and_collisions() {
    let running = view("").await;
    let standing = |car: u32, position: u32, name: &str| {
        Event::new(
            START_NS,
            Record::Standing(Arc::new(Standing {
                session_key: "york".into(),
                car,
                position,
                driver_name: Some(name.into()),
                gap: (position > 1).then(|| "+2.000".to_string()),
                laps: 4,
                best_lap_s: Some(90.0 + f64::from(position)),
                last_lap_s: Some(91.0),
                ..Standing::default()
            })),
        )
    };
    let position = |car: u32, x: f64| {
        Event::new(
            START_NS,
            Record::Position(CarPosition {
                session_key: "york".into(),
                car,
                x,
                y: 3.0,
                ..CarPosition::default()
            }),
        )
    };
    running
        .push(vec![
            standing(3, 2, "Jane Doe"),
            standing(7, 1, "Max Power"),
            position(3, 10.0),
            position(7, 20.0),
            Event::new(
                START_NS,
                Record::Chat(Arc::new(Chat {
                    session_key: "york".into(),
                    car: Some(3),
                    driver_name: Some("Jane Doe".into()),
                    message: "gg".into(),
                })),
            ),
            Event::new(
                START_NS,
                Record::Collision(Arc::new(Collision {
                    session_key: "york".into(),
                    car: 3,
                    other_car: Some(7),
                    impact_speed_kmh: 42.0,
                    ..Collision::default()
                })),
            ),
        ])
        .await;
    let mut s = Value::Null;
    for _ in 0..100 {
        s = state(&running).await;
        if s["race_control"].as_array().is_some_and(|rc| rc.len() == 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        codes(&s["tower"]),
        ["POW", "DOE"],
        "race order, initials of the surname"
    );
    assert_eq!(s["tower"]["rows"][1]["gap"], "+2.000");
    assert_eq!(
        s["race_control"][0]["message"], "Car 3 hit car 7 at 42 km/h",
        "newest first"
    );
    assert_eq!(s["race_control"][1]["message"], "Jane Doe: gg");
    assert_eq!(s["cars"].as_array().unwrap().len(), 2);
    assert_eq!(s["track"]["driven"], true, "no outline: the driven path");

    // A driver who leaves is off the map and out of the tower.
    running
        .push(vec![Event::new(
            START_NS,
            Record::Connection(Arc::new(Connection {
                session_key: "york".into(),
                car: 3,
                connected: false,
                driver_name: Some("Jane Doe".into()),
                ..Connection::default()
            })),
        )])
        .await;
    for _ in 0..100 {
        s = state(&running).await;
        if s["cars"].as_array().is_some_and(|cars| cars.len() == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(codes(&s["tower"]), ["POW"]);
    assert_eq!(s["race_control"][0]["message"], "Jane Doe left (car 3)");
    running.finish().await.unwrap();
}

#[tokio::test]
async fn simulator_telemetry_draws_every_rig_and_the_path_they_drive() {
    let running = view("").await;
    let telemetry = |rig: &str, place: i32, angle: f32| {
        Event::new(
            1_000_000,
            Record::CarTelemetry(Arc::new(CarTelemetry {
                game: "rfactor2".into(),
                session: rig.into(),
                car_id: 0,
                driver: Some(format!("Sim {rig}").into()),
                place,
                completed_laps: 2,
                best_lap_s: Some(100.0 + place as f32),
                position: [500.0 * angle.cos(), 2.0, 500.0 * angle.sin()],
                ..CarTelemetry::default()
            })),
        )
    };
    // Two rigs, each with car 0, driving round a circle.
    let mut events = Vec::new();
    for step in 0..300 {
        let angle = step as f32 * std::f32::consts::TAU / 250.0;
        events.push(telemetry("edge-1", 1, angle));
        events.push(telemetry("edge-2", 2, angle - 0.2));
    }
    running.push(events).await;
    let mut s = Value::Null;
    for _ in 0..100 {
        s = state(&running).await;
        if s["cars"].as_array().is_some_and(|cars| cars.len() == 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ids: Vec<&str> = s["tower"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["edge-1:0", "edge-2:0"], "one row per rig, by place");
    assert_eq!(s["tower"]["rows"][0]["name"], "Sim edge-1");
    assert_eq!(
        s["session"]["status"], "replay",
        "sim clocks are never live"
    );
    let outline = s["track"]["outline"].as_array().unwrap();
    assert!(
        outline.len() > 50,
        "the driven path has {} points",
        outline.len()
    );
    // The path closes on itself after one lap of the circle.
    assert_eq!(outline.first(), outline.last());
    for point in outline {
        let (x, y) = (point[0].as_f64().unwrap(), point[1].as_f64().unwrap());
        assert!((x.hypot(y) - 500.0).abs() < 1.0, "on the circle: {point}");
    }
    running.finish().await.unwrap();
}

#[tokio::test]
async fn bad_options_are_explained() {
    use pitwall_api::testing::parse_config;
    use pitwall_api::ComponentConfig;
    let config: RaceViewConfig =
        parse_config("path = \"race\"\ninterval_ms = 1\nmax_clients = 0\ntotal_laps = 0");
    let problems: Vec<String> = config.check().iter().map(|p| format!("{p:?}")).collect();
    let joined = problems.join("\n");
    for option in ["path", "interval_ms", "max_clients", "total_laps"] {
        assert!(joined.contains(option), "{option} is named: {joined}");
    }
}
