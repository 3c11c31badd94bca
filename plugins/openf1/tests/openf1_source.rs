//! End-to-end tests of source `openf1` against a local OpenF1 look-alike: download into a
//! cache, replay it (with and without the network), gzip caches, and live polling.

mod fake_openf1;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use fake_openf1::{Db, Fault, Server};
use pitwall_api::record::{format_iso8601_ns, parse_iso8601_ns, Gap, PathKind};
use pitwall_api::testing::{build_context, drain, parse_config, wire};
use pitwall_api::{ComponentConfig, Event, Record, RecordKind};
use pitwall_openf1::source::{cache, OpenF1Config};
use serde_json::{json, Value};

const S: i64 = 1_000_000_000;
/// 2024-05-26T13:00:00Z: the session's scheduled start.
const T0: i64 = 1_716_728_400 * S;
/// Grid order: 16 on pole, then 1, then 44.
const GRID: [u32; 3] = [16, 1, 44];
const LAPS: u32 = 12;
const SAMPLE_NS: i64 = 250_000_000;
const DATA_END: i64 = T0 + 1200 * S;

fn iso(t: i64) -> String {
    format_iso8601_ns(t)
}

fn lap_one_start(driver: u32) -> i64 {
    let slot = GRID.iter().position(|d| *d == driver).unwrap() as i64;
    T0 + 120 * S + slot * 200_000_000
}

fn lap_duration(driver: u32, lap: u32) -> f64 {
    match (driver, lap) {
        (_, 1) => 95.0,
        (1, 7) => 89.5,
        (1, _) => 90.1,
        (16, _) => 90.0,
        _ => 90.6,
    }
}

fn lap_start(driver: u32, lap: u32) -> i64 {
    let before: f64 = (1..lap).map(|l| lap_duration(driver, l)).sum();
    lap_one_start(driver) + (before * 1e9) as i64
}

/// Driver 44's pit lane: 22 s from here, stopped from +9 s to +12 s.
fn pit_entry() -> i64 {
    lap_start(44, 5) + 60 * S
}

fn position_at(driver: u32, t: i64) -> (i64, i64) {
    if t < lap_one_start(driver) - 60 * S
        || (driver == 44 && (T0 + 130 * S..T0 + 131 * S).contains(&t))
    {
        return (0, 0); // not placed
    }
    let angle = (t - lap_one_start(driver)) as f64 / 1e9 / 90.0 * std::f64::consts::TAU;
    ((angle.cos() * 5000.0) as i64, (angle.sin() * 3000.0) as i64)
}

fn speed_at(driver: u32, t: i64) -> i64 {
    let entry = pit_entry();
    if driver == 44 && (entry..entry + 22 * S).contains(&t) {
        if (entry + 9 * S..entry + 12 * S).contains(&t) {
            0
        } else {
            78
        }
    } else {
        280
    }
}

fn race_db() -> Db {
    let mut db = Db::default();
    let base = |extra: Value| {
        let mut row = json!({"meeting_key": 1, "session_key": 9999});
        row.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        row
    };
    db.push("sessions", json!({"session_key": 9999, "meeting_key": 1, "session_name": "Race", "session_type": "Race",
        "date_start": iso(T0), "date_end": iso(DATA_END), "circuit_key": 39, "circuit_short_name": "Testring",
        "country_name": "Nowhere", "location": "Testville", "year": 2024}));
    db.push("sessions", json!({"session_key": 9998, "meeting_key": 1, "session_name": "Qualifying", "session_type": "Qualifying",
        "date_start": iso(T0 - 86_400 * S), "date_end": iso(T0 - 82_800 * S), "year": 2024}));
    db.push(
        "meetings",
        json!({"meeting_key": 1, "meeting_name": "Test Grand Prix", "year": 2024}),
    );
    db.push("drivers", base(json!({"driver_number": 1, "name_acronym": "VER", "full_name": "Max VERSTAPPEN", "team_colour": "3671C6"})));
    db.push(
        "drivers",
        base(json!({"driver_number": 16, "name_acronym": null, "team_colour": null})),
    );
    db.push("drivers", base(json!({"driver_number": 16, "name_acronym": "LEC", "full_name": "Charles LECLERC", "team_colour": "E8002D"})));
    db.push(
        "drivers",
        base(json!({"driver_number": 44, "name_acronym": "HAM", "team_colour": "27F4D2"})),
    );
    db.push("drivers", base(json!({"driver_number": "garbage"})));
    for driver in GRID {
        for lap in 1..=LAPS {
            let duration = if lap == 1 {
                Value::Null
            } else {
                json!(lap_duration(driver, lap))
            };
            let third = if lap == 1 {
                Value::Null
            } else {
                json!(lap_duration(driver, lap) - 60.0)
            };
            db.push("laps", base(json!({"driver_number": driver, "lap_number": lap, "date_start": iso(lap_start(driver, lap)),
                "lap_duration": duration, "duration_sector_1": 30.0, "duration_sector_2": 30.0, "duration_sector_3": third,
                "i1_speed": 300, "i2_speed": 290, "st_speed": 310, "is_pit_out_lap": driver == 44 && lap == 6,
                "segments_sector_1": [2049, 2049]})));
        }
        db.push("stints", base(json!({"driver_number": driver, "stint_number": 1, "compound": "MEDIUM", "lap_start": 1,
            "lap_end": if driver == 44 { 5 } else { LAPS }, "tyre_age_at_start": 0})));
        let mut t = T0;
        while t < DATA_END {
            let (x, y) = position_at(driver, t);
            db.push(
                "location",
                base(json!({"date": iso(t), "driver_number": driver, "x": x, "y": y, "z": 10})),
            );
            db.push("car_data", base(json!({"date": iso(t + 100_000_000), "driver_number": driver, "speed": speed_at(driver, t + 100_000_000),
                "rpm": 11000, "n_gear": 7, "throttle": 99, "brake": 0, "drs": 8})));
            t += SAMPLE_NS;
        }
    }
    db.push(
        "location",
        base(json!({"date": null, "driver_number": 1, "x": 1, "y": 2, "z": 3})),
    );
    db.push(
        "car_data",
        base(json!({"date": iso(T0 + 500 * S + 1), "driver_number": 16, "speed": "fast"})),
    );
    db.push("stints", base(json!({"driver_number": 44, "stint_number": 2, "compound": "HARD", "lap_start": 6, "lap_end": LAPS, "tyre_age_at_start": 0})));
    db.push("pit", base(json!({"date": iso(pit_entry() + 22 * S), "driver_number": 44, "lap_number": 5, "lane_duration": 22.0, "stop_duration": 2.5})));
    for (t, order) in [(T0 + 119 * S, [16, 1, 44]), (T0 + 600 * S, [1, 16, 44])] {
        for (i, driver) in order.iter().enumerate() {
            db.push(
                "position",
                base(json!({"date": iso(t), "driver_number": driver, "position": i + 1})),
            );
        }
    }
    let mut t = T0 + 120 * S;
    while t < DATA_END {
        let lapped = if t > T0 + 900 * S {
            json!("+1 LAP")
        } else {
            json!(30.5)
        };
        db.push(
            "intervals",
            base(
                json!({"date": iso(t), "driver_number": 16, "gap_to_leader": 0.0, "interval": 0.0}),
            ),
        );
        db.push(
            "intervals",
            base(
                json!({"date": iso(t), "driver_number": 1, "gap_to_leader": 0.4, "interval": 0.4}),
            ),
        );
        db.push("intervals", base(json!({"date": iso(t), "driver_number": 44, "gap_to_leader": lapped, "interval": null})));
        t += 4 * S;
    }
    db.push("race_control", base(json!({"date": iso(T0 + 110 * S), "category": "Flag", "flag": "GREEN", "scope": "Track", "message": "GREEN LIGHT - PIT EXIT OPEN"})));
    db.push("race_control", base(json!({"date": iso(DATA_END - S), "category": "Flag", "flag": "CHEQUERED", "scope": "Track", "message": "CHEQUERED FLAG"})));
    for minute in 0..20 {
        db.push("weather", base(json!({"date": iso(T0 + minute * 60 * S), "air_temperature": 24.5, "track_temperature": 41.0,
            "humidity": 50, "pressure": 1012.1, "rainfall": 0, "wind_direction": 180, "wind_speed": 1.2})));
    }
    for (i, driver) in [1, 16, 44].iter().enumerate() {
        db.push("session_result", base(json!({"driver_number": driver, "position": i + 1, "number_of_laps": LAPS,
            "duration": 1100.0 + i as f64, "gap_to_leader": if i == 0 { json!(0) } else { json!(i as f64) }, "dnf": false, "dns": false, "dsq": false})));
    }
    for (i, driver) in GRID.iter().enumerate() {
        db.push("starting_grid", json!({"meeting_key": 1, "session_key": 9998, "driver_number": driver, "position": i + 1, "lap_duration": 80.0 + i as f64}));
    }
    db.throttle_once.insert("laps".into());
    db
}

fn config(server_url: &str, cache_dir: &Path, extra: &str) -> OpenF1Config {
    parse_config(&format!(
        "session_key = 9999\nspeed = 0\nbase_url = {server_url:?}\ncache_dir = {:?}\nmax_requests_per_10s = 1000\n{extra}",
        cache_dir.display().to_string()
    ))
}

/// Run the source to its end; the events it emitted and its discarded-rows count.
async fn replay(config: &OpenF1Config) -> (Vec<Event>, u64) {
    let mut component = config.build(&build_context("f1", ".")).unwrap();
    let mut wiring = wire("f1", false);
    tokio::time::timeout(Duration::from_secs(120), component.run(&mut wiring.io))
        .await
        .expect("the source finishes")
        .expect("the source succeeds");
    let discarded = wiring.io.metrics.snapshot().discarded;
    (drain(&wiring.output), discarded)
}

fn rows_of(path: &Path) -> Vec<Value> {
    serde_json::from_str(&cache::read_text(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_the_session_then_replays_it_without_the_network() {
    let server = Server::start(race_db()).await;
    let base_url = server.base_url();
    let root = tempfile::tempdir().unwrap();
    // 12-minute windows are refused by the server (over 10 min) and must be split.
    let config = config(&base_url, root.path(), "window_minutes = 12.0");

    let (events, discarded) = replay(&config).await;

    // --- The cache ---
    let dir = root.path().join("race_data_9999");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["session_key"], json!(9999));
    assert_eq!(manifest["complete"], json!(true));
    assert_eq!(manifest["source"], json!(base_url));
    assert!(parse_iso8601_ns(manifest["created"].as_str().unwrap()).is_some());
    for name in cache::DOCUMENTS {
        assert!(dir.join(format!("{name}.json")).is_file(), "{name}.json");
    }
    assert_eq!(
        rows_of(&dir.join("drivers.json")).len(),
        5,
        "stored as served, garbage included"
    );
    let grid = rows_of(&dir.join("starting_grid.json"));
    assert_eq!(grid.len(), 3);
    assert_eq!(
        grid[0]["session_key"],
        json!(9998),
        "the grid comes from qualifying"
    );
    for driver in GRID {
        for series in ["location", "car_data"] {
            let rows = rows_of(&dir.join(format!("{series}/{driver}.json")));
            let expected = server.db.lock().unwrap().tables[series]
                .iter()
                .filter(|row| row["driver_number"] == json!(driver) && row["date"].is_string())
                .count();
            assert_eq!(rows.len(), expected, "{series}/{driver}");
            let times: Vec<i64> = rows
                .iter()
                .map(|row| {
                    row["date"]
                        .as_str()
                        .and_then(parse_iso8601_ns)
                        .unwrap_or(i64::MAX)
                })
                .collect();
            assert!(
                times.windows(2).all(|w| w[0] <= w[1]),
                "{series}/{driver} sorted by date"
            );
        }
    }

    // --- How it was downloaded ---
    let requests = server.requests();
    let statuses = server.db.lock().unwrap().statuses.clone();
    assert_eq!(
        requests.iter().filter(|r| r.starts_with("laps?")).count(),
        2,
        "429 once, then retried"
    );
    let refused = requests
        .iter()
        .zip(&statuses)
        .filter(|(r, s)| r.starts_with("location?") && **s == 500)
        .count();
    assert!(refused >= 3, "wide windows were refused ({refused}) ...");
    assert!(
        requests
            .iter()
            .zip(&statuses)
            .all(|(r, s)| !r.starts_with("location?") || *s == 500 || *s == 200 || *s == 404),
        "... and split until accepted"
    );
    assert!(requests
        .iter()
        .any(|r| r.starts_with("starting_grid?session_key=9998")));

    // --- The replay ---
    check_replay(&events);
    // The bad driver row and the car_data row with a text speed (the dateless location row is
    // never served for a date window).
    assert_eq!(discarded, 2, "garbage rows are counted");

    // A complete cache is replayed without a single request.
    let before = server.requests().len();
    let (again, _) = replay(&config).await;
    assert_eq!(
        server.requests().len(),
        before,
        "no request with a complete cache"
    );
    assert_eq!(again, events);

    // Not even when the server is gone.
    server.stop().await;
    let (offline, _) = replay(&config).await;
    assert_eq!(offline.len(), events.len());
}

fn check_replay(events: &[Event]) {
    let start = lap_one_start(16) - 20 * S;
    // Preamble: everything a replay knows up front, stamped with the start.
    let first_series = events
        .iter()
        .position(|e| {
            !matches!(
                e.kind(),
                RecordKind::Session
                    | RecordKind::Driver
                    | RecordKind::Lap
                    | RecordKind::Stint
                    | RecordKind::Pit
                    | RecordKind::SessionResult
                    | RecordKind::StartingGrid
                    | RecordKind::ReferencePath
            )
        })
        .unwrap();
    let (preamble, series) = events.split_at(first_series);
    assert!(
        preamble.iter().all(|e| e.time_ns == start),
        "preamble at the reference start"
    );
    let Record::Session(session) = &preamble[0].record else {
        panic!("the session comes first, not {:?}", preamble[0]);
    };
    assert_eq!(&*session.session_key, "9999");
    assert_eq!(session.meeting_name.as_deref(), Some("Test Grand Prix"));
    assert_eq!(session.session_name.as_deref(), Some("Race"));
    assert_eq!(session.note, None);
    let drivers: Vec<_> = preamble
        .iter()
        .filter_map(|e| match &e.record {
            Record::Driver(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        drivers.iter().map(|d| d.driver_number).collect::<Vec<_>>(),
        vec![1, 16, 44]
    );
    assert_eq!(
        drivers[1].name_acronym.as_deref(),
        Some("LEC"),
        "duplicates merged"
    );
    let count = |kind| preamble.iter().filter(|e| e.kind() == kind).count();
    assert_eq!(count(RecordKind::Lap), 3 * LAPS as usize);
    assert_eq!(count(RecordKind::Stint), 4);
    assert_eq!(count(RecordKind::Pit), 1);
    assert_eq!(count(RecordKind::SessionResult), 3);
    assert_eq!(count(RecordKind::StartingGrid), 3);
    let paths: Vec<_> = preamble
        .iter()
        .filter_map(|e| match &e.record {
            Record::ReferencePath(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(paths.len(), 2);
    let lap = &paths[0];
    assert_eq!(
        (lap.path, lap.car, lap.lap_number),
        (PathKind::Lap, 1, Some(7))
    );
    assert_eq!(lap.sector_durations, vec![30.0, 30.0, 29.5]);
    let lap_start = lap_start(1, 7);
    assert!(
        lap.samples.first().unwrap().0 >= lap_start
            && lap.samples.first().unwrap().0 < lap_start + SAMPLE_NS
    );
    assert!(
        (300..=360).contains(&lap.samples.len()),
        "{}",
        lap.samples.len()
    );
    let pit = &paths[1];
    assert_eq!((pit.path, pit.car), (PathKind::PitLane, 44));
    let (first, last) = (
        pit.samples.first().unwrap().0,
        pit.samples.last().unwrap().0,
    );
    assert!(
        // Within the resolution of two series sampled at 4 Hz each.
        (first - pit_entry()).abs() <= 2 * SAMPLE_NS,
        "pit pass starts at the lane entry: {first} vs {} (ends {last}, {} samples)",
        pit_entry(),
        pit.samples.len()
    );
    assert!(
        (last - (pit_entry() + 22 * S)).abs() <= 2 * SAMPLE_NS,
        "and ends at its exit"
    );
    assert!(paths
        .iter()
        .all(|p| p.samples.iter().all(|s| s.1 != 0.0 || s.2 != 0.0)));

    // The series: in time order from the start, ticks every 100 ms, the end last.
    assert!(
        series.windows(2).all(|w| w[0].time_ns <= w[1].time_ns),
        "time order"
    );
    assert!(series.iter().all(|e| e.time_ns >= start));
    let Record::SessionEnd(end) = &series.last().unwrap().record else {
        panic!("SessionEnd last");
    };
    assert_eq!(&*end.session_key, "9999");
    let ticks: Vec<i64> = series
        .iter()
        .filter(|e| e.kind() == RecordKind::Tick)
        .map(|e| e.time_ns)
        .collect();
    assert_eq!(ticks[0], start);
    assert!(ticks.windows(2).all(|w| w[1] - w[0] == 100_000_000));
    assert!(*ticks.last().unwrap() >= DATA_END - SAMPLE_NS);
    let positions: Vec<_> = series
        .iter()
        .filter_map(|e| match &e.record {
            Record::Position(p) => Some((e.time_ns, p.clone())),
            _ => None,
        })
        .collect();
    assert!(
        positions.iter().all(|(_, p)| p.x != 0.0 || p.y != 0.0),
        "0,0 skipped"
    );
    let skipped_window = positions
        .iter()
        .filter(|(t, p)| p.car == 44 && (T0 + 130 * S..T0 + 131 * S).contains(t))
        .count();
    assert_eq!(skipped_window, 0);
    let expected_positions: usize = GRID
        .iter()
        .map(|driver| {
            let mut n = 0;
            let mut t = T0;
            while t < DATA_END {
                if t >= start && position_at(*driver, t) != (0, 0) {
                    n += 1;
                }
                t += SAMPLE_NS;
            }
            n
        })
        .sum();
    assert_eq!(positions.len(), expected_positions);
    let unique: HashSet<(i64, u32)> = positions.iter().map(|(t, p)| (*t, p.car)).collect();
    assert_eq!(unique.len(), positions.len(), "no duplicates");
    let kinds: HashSet<RecordKind> = series.iter().map(Event::kind).collect();
    for kind in [
        RecordKind::CarData,
        RecordKind::RacePosition,
        RecordKind::Interval,
        RecordKind::RaceControl,
        RecordKind::Weather,
    ] {
        assert!(kinds.contains(&kind), "{kind} replayed");
    }
    assert!(series.iter().any(|e| matches!(&e.record, Record::Interval(i) if i.gap_to_leader == Some(Gap::Text("+1 LAP".into())))));
    // The race-position change at 600 s arrives at 600 s.
    assert!(series.iter().any(
        |e| matches!(&e.record, Record::RacePosition(p) if p.car == 1 && p.position == 1)
            && e.time_ns == T0 + 600 * S
    ));
    // Weather before the start is not replayed.
    assert!(series
        .iter()
        .filter(|e| e.kind() == RecordKind::Weather)
        .all(|e| e.time_ns >= start));
}

/// Write `text` gzipped.
fn gzip(path: &Path, text: &str) {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_a_gzipped_simulated_cache_with_garbage_in_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("race_data_4242");
    std::fs::create_dir_all(dir.join("location")).unwrap();
    std::fs::create_dir_all(dir.join("car_data")).unwrap();
    let t = |s: i64| iso(T0 + s * S);
    gzip(&dir.join("sessions.json.gz"), &json!([{"session_key": 4242, "meeting_key": 7, "session_name": "Race", "date_start": t(0)}]).to_string());
    std::fs::write(
        dir.join("meetings.json"),
        json!([{"meeting_key": 7, "meeting_name": "Simulated GP"}]).to_string(),
    )
    .unwrap();
    gzip(&dir.join("drivers.json.gz"), &json!([{"session_key": 4242, "driver_number": 5, "name_acronym": null, "team_colour": null}]).to_string());
    gzip(&dir.join("laps.json.gz"), &json!([
        {"session_key": 4242, "driver_number": 5, "lap_number": 1, "date_start": t(30), "lap_duration": null},
        {"session_key": 4242, "driver_number": 5, "lap_number": 2, "date_start": null, "lap_duration": 80.0},
        {"session_key": 4242, "driver_number": 5, "lap_number": "three"}
    ]).to_string());
    // No position, intervals, pit, weather, ... files at all: they are just empty.
    // One unreadable file is skipped, not fatal.
    std::fs::write(dir.join("race_control.json"), "{ this is not json").unwrap();
    let rows: Vec<Value> = (0..100)
        .map(|i| json!({"date": t(i), "driver_number": 5, "x": if i < 10 { 0 } else { i }, "y": if i < 10 { 0 } else { -i }, "z": 0}))
        .chain([json!("not a row"), json!({"date": "yesterday", "x": 1, "y": 1})])
        .collect();
    gzip(
        &dir.join("location/5.json.gz"),
        &Value::Array(rows).to_string(),
    );
    std::fs::write(
        dir.join("car_data/5.json"),
        json!([{"date": t(50), "speed": 100, "n_gear": null}]).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        json!({"session_key": 4242, "complete": true, "source": "simulated sample session", "created": t(0)}).to_string(),
    )
    .unwrap();

    let config: OpenF1Config = parse_config(&format!(
        "session_key = 4242\nspeed = 0\ntick_ms = 1000\nbase_url = \"http://127.0.0.1:9/v1\"\ncache_dir = {:?}",
        root.path().display().to_string()
    ));
    let (events, discarded) = replay(&config).await;
    let Record::Session(session) = &events[0].record else {
        panic!("session first");
    };
    assert_eq!(session.note.as_deref(), Some("simulated sample session"));
    assert_eq!(session.meeting_name.as_deref(), Some("Simulated GP"));
    // race_start: lap 1 at 30 s, minus 20 s.
    let start = T0 + 10 * S;
    assert!(events.iter().all(|e| e.time_ns >= start));
    let positions = events
        .iter()
        .filter(|e| e.kind() == RecordKind::Position)
        .count();
    assert_eq!(
        positions, 90,
        "samples 10..99: the 0,0 ones and the garbage skipped"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind() == RecordKind::Lap)
            .count(),
        2
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind() == RecordKind::CarData)
            .count(),
        1
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind() == RecordKind::Tick)
            .count(),
        90
    );
    assert_eq!(events.last().unwrap().kind(), RecordKind::SessionEnd);
    assert!(discarded >= 3, "{discarded}");

    // data_start and a fixed start instead of the race start.
    let at = |start: &str| -> OpenF1Config {
        parse_config(&format!(
            "session_key = 4242\nspeed = 0\nstart = {start:?}\nbase_url = \"http://127.0.0.1:9/v1\"\ncache_dir = {:?}",
            root.path().display().to_string()
        ))
    };
    let (events, _) = replay(&at("data_start")).await;
    assert_eq!(events[0].time_ns, T0 + 10 * S, "first placed sample");
    let (events, _) = replay(&at(&t(95))).await;
    assert_eq!(events[0].time_ns, T0 + 95 * S);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind() == RecordKind::Position)
            .count(),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paces_by_event_time_loops_and_stops_on_shutdown() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("race_data_7");
    let t = |ms: i64| iso(T0 + ms * 1_000_000);
    std::fs::create_dir_all(dir.join("location")).unwrap();
    std::fs::write(
        dir.join("sessions.json"),
        json!([{"session_key": 7}]).to_string(),
    )
    .unwrap();
    let rows: Vec<Value> = (0..=10)
        .map(|i| json!({"date": t(i * 100), "x": 1, "y": i}))
        .collect();
    std::fs::write(dir.join("location/3.json"), Value::Array(rows).to_string()).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        json!({"session_key": 7, "complete": true}).to_string(),
    )
    .unwrap();
    let config: OpenF1Config = parse_config(&format!(
        "session_key = 7\nspeed = 2.0\nlead_ms = 0\nloop = true\nstart = \"data_start\"\nbase_url = \"http://127.0.0.1:9/v1\"\ncache_dir = {:?}",
        root.path().display().to_string()
    ));
    let mut component = config.build(&build_context("f1", ".")).unwrap();
    let mut wiring = wire("f1", false);
    let shutdown = wiring.io.shutdown.clone();
    let started = std::time::Instant::now();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1250)).await;
        shutdown.trigger();
    });
    tokio::time::timeout(Duration::from_secs(5), component.run(&mut wiring.io))
        .await
        .expect("stops promptly on shutdown")
        .unwrap();
    stopper.await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(1600), "{elapsed:?}");
    let events = drain(&wiring.output);
    // 1 s of data at speed 2 takes 0.5 s: in 1.25 s two passes end and a third begins.
    let ends = events
        .iter()
        .filter(|e| e.kind() == RecordKind::SessionEnd)
        .count();
    assert_eq!(ends, 2, "{events:?}");
    let sessions = events
        .iter()
        .filter(|e| e.kind() == RecordKind::Session)
        .count();
    assert_eq!(sessions, 3, "each pass starts with the preamble");
}

fn live_db(now: i64) -> Db {
    let mut db = Db {
        credentials: Some(("fan@example.com".into(), "s3cret".into())),
        ..Db::default()
    };
    db.push("sessions", json!({"session_key": 9999, "meeting_key": 1, "session_name": "Race", "date_start": iso(now - 600 * S), "date_end": iso(now + 3600 * S)}));
    db.push(
        "meetings",
        json!({"meeting_key": 1, "meeting_name": "Live Grand Prix"}),
    );
    for driver in [1, 16] {
        db.push("drivers", json!({"session_key": 9999, "driver_number": driver, "name_acronym": format!("D{driver}")}));
        db.push("position", json!({"session_key": 9999, "date": iso(now - 300 * S), "driver_number": driver, "position": if driver == 1 { 1 } else { 2 }}));
    }
    db.push("laps", json!({"session_key": 9999, "driver_number": 1, "lap_number": 3, "date_start": iso(now - 5 * S), "lap_duration": null}));
    // Old samples: outside the first poll's window, never emitted.
    db.push("location", json!({"session_key": 9999, "date": iso(now - 120 * S), "driver_number": 1, "x": 9, "y": 9, "z": 0}));
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_polling_emits_new_rows_as_they_appear() {
    let now = pitwall_api::record::parse_iso8601_ns(&iso(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64))
    .unwrap();
    let server = Server::start(live_db(now)).await;
    let root = tempfile::tempdir().unwrap();
    let config = config(
        &server.base_url(),
        root.path(),
        "mode = \"live\"\npoll_interval_ms = 100\nusername = \"fan@example.com\"\npassword = \"s3cret\"",
    );
    assert!(
        !format!("{config:?}").contains("s3cret"),
        "secrets never in debug output"
    );

    // The "car" moves: new samples every 100 ms; the lap completes after a second.
    let db = server.db.clone();
    let feeder = tokio::spawn(async move {
        for step in 1..=25i64 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let t = now + step * 100_000_000;
            let mut db = db.lock().unwrap();
            for driver in [1, 16] {
                db.push("location", json!({"session_key": 9999, "date": iso(t), "driver_number": driver, "x": step * 10, "y": driver, "z": 0}));
                db.push("car_data", json!({"session_key": 9999, "date": iso(t), "driver_number": driver, "speed": 200 + step}));
            }
            if step == 10 {
                db.tables.get_mut("laps").unwrap()[0]["lap_duration"] = json!(91.25);
                db.push("position", json!({"session_key": 9999, "date": iso(t), "driver_number": 16, "position": 1}));
                db.push("race_control", json!({"session_key": 9999, "date": iso(t), "category": "Flag", "flag": "YELLOW", "message": "YELLOW IN SECTOR 2"}));
            }
        }
    });

    let mut component = config.build(&build_context("f1", ".")).unwrap();
    let mut wiring = wire("f1", false);
    let shutdown = wiring.io.shutdown.clone();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(3500)).await;
        shutdown.trigger();
    });
    tokio::time::timeout(Duration::from_secs(10), component.run(&mut wiring.io))
        .await
        .expect("live stops on shutdown")
        .expect("live polling succeeds");
    feeder.await.unwrap();
    stopper.await.unwrap();
    let events = drain(&wiring.output);

    let Record::Session(session) = &events[0].record else {
        panic!("session first: {:?}", events[0]);
    };
    assert_eq!(session.meeting_name.as_deref(), Some("Live Grand Prix"));
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind() == RecordKind::Driver)
            .count(),
        2
    );
    let positions: Vec<(i64, u32, f64)> = events
        .iter()
        .filter_map(|e| match &e.record {
            Record::Position(p) => Some((e.time_ns, p.car, p.x)),
            _ => None,
        })
        .collect();
    assert_eq!(
        positions.len(),
        50,
        "every new sample once, the old one never: {positions:?}"
    );
    let unique: HashSet<(i64, u32)> = positions.iter().map(|p| (p.0, p.1)).collect();
    assert_eq!(unique.len(), 50);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind() == RecordKind::CarData)
            .count(),
        50
    );
    let laps: Vec<Option<f64>> = events
        .iter()
        .filter_map(|e| match &e.record {
            Record::Lap(lap) => Some(lap.lap_duration),
            _ => None,
        })
        .collect();
    assert_eq!(
        laps,
        vec![None, Some(91.25)],
        "the lap, then its completion"
    );
    let race_positions = events
        .iter()
        .filter(|e| e.kind() == RecordKind::RacePosition)
        .count();
    assert_eq!(race_positions, 3, "history once, then the change");
    assert!(events.iter().any(|e| e.kind() == RecordKind::RaceControl));
    assert!(events.iter().any(|e| e.kind() == RecordKind::Tick));
    let newest = positions.iter().map(|p| p.0).max().unwrap();
    assert_eq!(newest, now + 25 * 100_000_000);

    {
        let db = server.db.lock().unwrap();
        assert!(!db.tokens.is_empty(), "a token was obtained");
        assert!(
            db.statuses.iter().all(|s| *s != 401),
            "every request carried it"
        );
        assert!(
            db.statuses.iter().all(|s| *s != 500),
            "no query was too wide"
        );
        let location_polls: Vec<&String> = db
            .requests
            .iter()
            .filter(|r| r.starts_with("location?"))
            .collect();
        assert!(location_polls.len() >= 10);
        assert!(location_polls
            .iter()
            .all(|r| r.contains("date>") && !r.contains("driver_number")));
    }
    server.stop().await;
}

/// The cache contract shared with the sample generator: its output replays as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_the_simulated_sample_session() {
    let root = tempfile::tempdir().unwrap();
    for gzip in [false, true] {
        let options = pitwall_openf1::sample::SampleOptions {
            session_key: if gzip { 9002 } else { 9001 },
            laps: 3,
            cars: 4,
            seed: 7,
            gzip,
            out_dir: root.path().to_path_buf(),
        };
        let summary = pitwall_openf1::sample::generate(&options).unwrap();
        let config: OpenF1Config = parse_config(&format!(
            "session_key = {}\nspeed = 0\nbase_url = \"http://127.0.0.1:9/v1\"\ncache_dir = {:?}",
            options.session_key,
            root.path().display().to_string()
        ));
        let (events, discarded) = replay(&config).await;
        assert_eq!(discarded, 0, "the sample is clean");
        let Record::Session(session) = &events[0].record else {
            panic!("session first");
        };
        assert!(session.note.as_deref().unwrap_or("").contains("simulated"));
        let paths = events
            .iter()
            .filter(|e| e.kind() == RecordKind::ReferencePath)
            .count();
        assert_eq!(paths, 2, "a lap and a pit pass");
        assert_eq!(
            events
                .iter()
                .filter(|e| e.kind() == RecordKind::Driver)
                .count(),
            4
        );
        let start = events[0].time_ns;
        let series: Vec<&Event> = events
            .iter()
            .filter(|e| pitwall_openf1::source::is_time_series(&e.record))
            .collect();
        assert!(series.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
        assert!(series.iter().all(|e| e.time_ns >= start));
        let positions = series
            .iter()
            .filter(|e| e.kind() == RecordKind::Position)
            .count();
        assert!(
            positions > 0 && positions <= summary.location_rows,
            "{positions}"
        );
        assert_eq!(events.last().unwrap().kind(), RecordKind::SessionEnd);
    }
}

// --- Faults of the OpenF1 server (issue 7): each test states what was lost. ---

/// Log lines written while a future runs (INFO and above, plain text).
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .map(str::to_string)
            .collect()
    }
}

/// Run the source once (as the engine does, on the same instance), capturing its log.
async fn run_logged(
    component: &mut Box<dyn pitwall_api::Component>,
    logs: &Logs,
) -> (Result<(), String>, Vec<Event>, u64) {
    use tracing::instrument::WithSubscriber;
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let mut wiring = wire("f1", false);
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        component.run(&mut wiring.io).with_subscriber(subscriber),
    )
    .await
    .expect("the source finishes")
    .map_err(|e| e.to_string());
    let discarded = wiring.io.metrics.snapshot().discarded;
    (result, drain(&wiring.output), discarded)
}

/// The source set up as the engine would, to download from a server serving `db` (with
/// `extra` options) into a fresh cache; its log is captured by [`run_logged`].
async fn faulty_download(
    db: Db,
    extra: &str,
) -> (
    Server,
    tempfile::TempDir,
    Box<dyn pitwall_api::Component>,
    Logs,
) {
    let server = Server::start(db).await;
    let root = tempfile::tempdir().unwrap();
    let component = config(&server.base_url(), root.path(), extra)
        .build(&build_context("f1", "."))
        .unwrap();
    (server, root, component, Logs::default())
}

/// What "nothing lost" is measured against: the same session downloaded from a server
/// without faults (rows of the wrong type included: `race_db` serves a driver numbered
/// "garbage" and a car_data row whose speed is "fast"), its cache directory, replay and
/// discarded-rows count.
async fn clean_download() -> (tempfile::TempDir, Vec<Event>, u64) {
    let mut db = race_db();
    db.throttle_once.clear();
    let server = Server::start(db).await;
    let root = tempfile::tempdir().unwrap();
    let (events, discarded) = replay(&config(&server.base_url(), root.path(), "")).await;
    server.stop().await;
    assert_eq!(discarded, 2, "the wrong-typed rows are skipped and counted");
    (root, events, discarded)
}

/// Every file of a session's cache but the manifest, parsed, by path relative to `dir`.
fn cache_files(dir: &Path) -> std::collections::BTreeMap<String, Value> {
    let mut files = std::collections::BTreeMap::new();
    for sub in ["", "location", "car_data"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() || path.ends_with(cache::MANIFEST) {
                continue;
            }
            let name = path.strip_prefix(dir).unwrap().display().to_string();
            assert!(
                name.ends_with(".json"),
                "only whole .json files in the cache, not {name}"
            );
            files.insert(
                name,
                serde_json::from_str(&cache::read_text(&path).unwrap()).unwrap(),
            );
        }
    }
    files
}

/// Nothing lost: the cache holds the same files with the same rows as a clean download,
/// marked complete, and replays to the same events with the same discarded count.
fn assert_nothing_lost(
    root: &Path,
    (clean_root, clean_events, clean_discarded): &(tempfile::TempDir, Vec<Event>, u64),
    events: &[Event],
    discarded: u64,
) {
    let dir = root.join("race_data_9999");
    assert!(cache::is_complete(&dir), "the cache is marked complete");
    let files = cache_files(&dir);
    let clean = cache_files(&clean_root.path().join("race_data_9999"));
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        clean.keys().collect::<Vec<_>>(),
        "the same files"
    );
    for (name, rows) in &clean {
        assert_eq!(&files[name], rows, "{name}: the same rows");
    }
    assert_eq!(events.len(), clean_events.len());
    assert!(events == clean_events.as_slice(), "the same replay");
    assert_eq!(discarded, *clean_discarded);
}

/// A server that accepts requests and then says nothing (twice on `laps`, once on driver
/// 44's first `location` window), or trickles a body a byte at a time (`drivers`), with
/// `request_timeout_s = 1`. Each stalled request is abandoned after 1 s: a document is
/// retried with backoff, the window is split in two and its halves fetched. Every wait is
/// a warning naming the request, never the access token.
///
/// Lost: nothing. The cache equals a clean download's file for file and row for row, and
/// replays to the same events; the download took a few seconds longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_server_costs_seconds_and_no_data() {
    let clean = clean_download().await;
    let mut db = race_db();
    db.throttle_once.clear();
    db.credentials = Some(("fan@example.com".into(), "s3cret".into()));
    db.fault("laps?", Fault::Stall, Some(2));
    db.fault("drivers?", Fault::Trickle, Some(1));
    db.fault(
        "location?session_key=9999&driver_number=44&",
        Fault::Stall,
        Some(1),
    );
    let (server, root, mut component, logs) = faulty_download(
        db,
        "request_timeout_s = 1.0\nusername = \"fan@example.com\"\npassword = \"s3cret\"",
    )
    .await;
    let started = std::time::Instant::now();
    let (result, events, discarded) = run_logged(&mut component, &logs).await;
    let elapsed = started.elapsed();
    result.expect("the download outlasts the stalls");

    let requests = server.requests();
    let faulted = server.db.lock().unwrap().faulted.clone();
    assert_eq!(faulted.len(), 4, "{faulted:?}");
    assert_eq!(
        requests.iter().filter(|r| r.starts_with("laps?")).count(),
        3,
        "two stalls, then retried"
    );
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.starts_with("drivers?"))
            .count(),
        2,
        "one trickle, then retried"
    );
    // The stalled 5-minute window was split, not retried as it was.
    let first_window: Vec<&String> = requests
        .iter()
        .filter(|r| {
            r.starts_with("location?session_key=9999&driver_number=44&")
                && r.contains(&format!("date>={}", iso(T0)))
        })
        .collect();
    assert_eq!(first_window.len(), 2, "{first_window:?}");
    assert!(first_window[0].ends_with(&format!("date<{}", iso(T0 + 300 * S))));
    assert!(first_window[1].ends_with(&format!("date<{}", iso(T0 + 150 * S))));
    // Three stalls in sequence (laps twice, drivers once) cost a second each plus backoff,
    // the window's stall ran alongside: seconds, not the default 90 s each.
    assert!(elapsed >= Duration::from_secs(3), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(40), "{elapsed:?}");

    // The waits are in the log, with the request and not the token.
    let retries = logs.lines_with(&[
        "WARN",
        "openf1: request failed; retrying",
        "/v1/laps?session_key=9999",
        "no complete answer within 1 s (option request_timeout_s)",
        "retry_in_ms=",
    ]);
    assert_eq!(retries.len(), 2, "{}", logs.text());
    assert_eq!(
        logs.lines_with(&["WARN", "/v1/drivers?session_key=9999", "within 1 s"])
            .len(),
        1,
        "{}",
        logs.text()
    );
    assert_eq!(
        logs.lines_with(&[
            "WARN",
            "window too slow; splitting it in two",
            "/v1/location?session_key=9999&driver_number=44&"
        ])
        .len(),
        1,
        "{}",
        logs.text()
    );
    let text = logs.text();
    assert!(
        !text.contains("token-") && !text.contains("s3cret"),
        "{text}"
    );

    assert_nothing_lost(root.path(), &clean, &events, discarded);
    server.stop().await;
}

/// 200 answers that are not rows: an HTML error page (`drivers`), JSON cut short (`laps`
/// twice, driver 1's first `car_data` window), an object instead of the array (the first
/// `sessions` request and `stints`). Each is taken for a transient proxy fault: logged,
/// retried with backoff, never stored. Rows of the wrong type inside a valid array (the
/// "garbage" driver, the "fast" speed) are stored as served and skipped and counted by the
/// replay, as in the clean download.
///
/// Lost: nothing. The cache equals a clean download's and replays to the same events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_garbage_answers_are_retried_and_never_stored() {
    let clean = clean_download().await;
    let mut db = race_db();
    db.throttle_once.clear();
    db.fault("sessions?session_key=9999", Fault::Object, Some(1));
    db.fault("drivers?", Fault::Html, Some(1));
    db.fault("laps?", Fault::Truncated, Some(2));
    db.fault("stints?", Fault::Object, Some(1));
    db.fault(
        "car_data?session_key=9999&driver_number=1&",
        Fault::Truncated,
        Some(1),
    );
    let (server, root, mut component, logs) = faulty_download(db, "").await;
    let (result, events, discarded) = run_logged(&mut component, &logs).await;
    result.expect("the download outlasts the garbage");

    let requests = server.requests();
    assert_eq!(server.db.lock().unwrap().faulted.len(), 6);
    let count = |prefix: &str| requests.iter().filter(|r| r.starts_with(prefix)).count();
    assert_eq!(count("sessions?session_key=9999"), 2);
    assert_eq!(count("drivers?"), 2);
    assert_eq!(count("laps?"), 3);
    assert_eq!(count("stints?"), 2);
    let warned = |needles: &[&str]| {
        let mut needles = needles.to_vec();
        needles.extend(["WARN", "openf1: request failed; retrying", "retry_in_ms="]);
        logs.lines_with(&needles).len()
    };
    assert_eq!(
        warned(&["/v1/drivers?session_key=9999", "not JSON", "<html>"]),
        1,
        "{}",
        logs.text()
    );
    assert_eq!(
        warned(&["/v1/laps?session_key=9999", "JSON cut short"]),
        2,
        "{}",
        logs.text()
    );
    assert_eq!(
        warned(&[
            "/v1/stints?session_key=9999",
            "wrong shape (an object, not an array)"
        ]),
        1,
        "{}",
        logs.text()
    );
    assert_eq!(
        warned(&[
            "/v1/car_data?session_key=9999&driver_number=1&",
            "cut short"
        ]),
        1
    );

    assert_nothing_lost(root.path(), &clean, &events, discarded);
    server.stop().await;
}

/// Connections closed by the server after half of the body, whose headers announced all of
/// it (`laps` once, driver 16's first two `location` windows). reqwest reports the short
/// body; the request is retried with backoff like any broken connection.
///
/// Lost: nothing. The cache equals a clean download's and replays to the same events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_body_is_retried() {
    let clean = clean_download().await;
    let mut db = race_db();
    db.throttle_once.clear();
    db.fault("laps?", Fault::DropMidBody, Some(1));
    db.fault(
        "location?session_key=9999&driver_number=16&",
        Fault::DropMidBody,
        Some(2),
    );
    let (server, root, mut component, logs) = faulty_download(db, "").await;
    let (result, events, discarded) = run_logged(&mut component, &logs).await;
    result.expect("the download outlasts the dropped connections");

    let requests = server.requests();
    assert_eq!(server.db.lock().unwrap().faulted.len(), 3);
    assert_eq!(
        requests.iter().filter(|r| r.starts_with("laps?")).count(),
        2
    );
    let first_window = requests
        .iter()
        .filter(|r| {
            r.starts_with("location?session_key=9999&driver_number=16&")
                && r.contains(&format!("date>={}", iso(T0)))
        })
        .count();
    assert_eq!(first_window, 3, "dropped twice, then retried as it was");
    let dropped = logs.lines_with(&["WARN", "openf1: request failed; retrying", "/v1/laps?"]);
    assert_eq!(dropped.len(), 1, "{}", logs.text());
    assert!(
        dropped[0].contains("body")
            && dropped[0].contains("end of file before message length reached"),
        "{}",
        dropped[0]
    );

    assert_nothing_lost(root.path(), &clean, &events, discarded);
    server.stop().await;
}

/// A proxy that answers every request for driver 44's `car_data` with an HTML page. After 4
/// attempts the download fails with an error naming the endpoint and the query; the files
/// already fetched are whole, the failed series is absent and no manifest is written, so
/// the cache is not taken for complete. The next run (the engine restarts the source on
/// the same instance) fetches only what is missing once the proxy recovers.
///
/// Lost: nothing, once the fault clears: the resumed cache equals a clean download's and
/// replays to the same events. While the fault lasts, nothing is replayed at all (no
/// partial session is ever replayed as if whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_garbage_fails_clearly_and_the_next_run_resumes() {
    let clean = clean_download().await;
    let mut db = race_db();
    db.throttle_once.clear();
    db.fault(
        "car_data?session_key=9999&driver_number=44&",
        Fault::Html,
        None,
    );
    let (server, root, mut component, logs) = faulty_download(db, "").await;
    let (result, events, _) = run_logged(&mut component, &logs).await;
    let error = result.expect_err("a fault that outlasts the retries fails the download");
    assert!(
        error.contains("/v1/car_data?session_key=9999&driver_number=44&date>=")
            && error.contains("HTTP 200, but the body is not a JSON array of rows: not JSON"),
        "{error}"
    );
    assert!(
        events.is_empty(),
        "nothing replayed from an incomplete cache"
    );
    let requests = server.requests();
    let hit = requests
        .iter()
        .filter(|r| r.starts_with("car_data?session_key=9999&driver_number=44&"))
        .count();
    assert_eq!(hit, 4, "4 attempts for a garbage answer");
    assert_eq!(
        logs.lines_with(&["WARN", "openf1: giving up on the request", "attempt=4"])
            .len(),
        1,
        "{}",
        logs.text()
    );

    let dir = root.path().join("race_data_9999");
    assert!(!dir.join(cache::MANIFEST).exists(), "no manifest");
    assert!(!cache::is_complete(&dir));
    assert!(!dir.join("car_data/44.json").exists(), "no half series");
    let kept = cache_files(&dir); // also: only whole .json files, no .part left behind
    for name in cache::DOCUMENTS {
        assert!(kept.contains_key(&format!("{name}.json")), "{name} kept");
    }

    // The proxy recovers; the source runs again and fetches only what is missing.
    server.db.lock().unwrap().faults.clear();
    let before = requests.len();
    let (result, events, discarded) = run_logged(&mut component, &logs).await;
    result.expect("the resumed download succeeds");
    let resumed = server.requests()[before..].to_vec();
    assert!(
        resumed
            .iter()
            .all(|r| r.starts_with("location?") || r.starts_with("car_data?")),
        "documents are not fetched again: {resumed:?}"
    );
    for name in kept.keys() {
        if let Some(series) = name.strip_suffix(".json").filter(|n| n.contains('/')) {
            let (endpoint, driver) = series.split_once('/').unwrap();
            let prefix = format!("{endpoint}?session_key=9999&driver_number={driver}&");
            assert!(
                !resumed.iter().any(|r| r.starts_with(&prefix)),
                "{series} was whole and is not fetched again"
            );
        }
    }
    assert!(resumed
        .iter()
        .any(|r| r.starts_with("car_data?session_key=9999&driver_number=44&")));
    assert_nothing_lost(root.path(), &clean, &events, discarded);
    server.stop().await;
}

// --- "latest" without the network. ---

/// A sample session under `root` that looks downloaded from OpenF1 (or, with `simulated`,
/// left as the sample generator marks it).
fn cached_session(root: &Path, session_key: u64, simulated: bool) {
    let options = pitwall_openf1::sample::SampleOptions {
        session_key: u32::try_from(session_key).unwrap(),
        laps: 2,
        cars: 3,
        seed: 3,
        gzip: true,
        out_dir: root.to_path_buf(),
    };
    pitwall_openf1::sample::generate(&options).unwrap();
    if !simulated {
        let dir = cache::session_dir(root, session_key);
        cache::write_manifest(&dir, session_key, "https://api.openf1.org/v1").unwrap();
    }
}

fn first_session_key(events: &[Event]) -> String {
    let Record::Session(session) = &events.first().expect("events").record else {
        panic!("session first");
    };
    session.session_key.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_replays_the_newest_download_when_openf1_cannot_be_reached() {
    let root = tempfile::tempdir().unwrap();
    cached_session(root.path(), 9001, false);
    cached_session(root.path(), 9003, false);
    // Newer, but simulated: "latest" means the latest real session.
    cached_session(root.path(), 9999, true);
    let config: OpenF1Config = parse_config(&format!(
        "session_key = \"latest\"\nspeed = 0\nbase_url = \"http://127.0.0.1:9/v1\"\ncache_dir = {:?}",
        root.path().display().to_string()
    ));
    let mut component = config.build(&build_context("f1", ".")).unwrap();
    let logs = Logs::default();
    let started = std::time::Instant::now();
    let (result, events, _) = run_logged(&mut component, &logs).await;
    result.expect("replays from the cache");
    assert_eq!(first_session_key(&events), "9003");
    assert_eq!(events.last().unwrap().kind(), RecordKind::SessionEnd);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "one attempt, not half a minute of retries: {:?}",
        started.elapsed()
    );
    let warnings = logs.lines_with(&["WARN", "replaying the newest downloaded one", "9003"]);
    assert_eq!(warnings.len(), 1, "{}", logs.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_asks_openf1_first_and_never_falls_back_to_a_simulation() {
    // Reachable: OpenF1's answer wins over what the cache holds.
    let server = Server::start(race_db()).await;
    let root = tempfile::tempdir().unwrap();
    cached_session(root.path(), 9001, false);
    let config: OpenF1Config = parse_config(&format!(
        "session_key = \"latest\"\nspeed = 0\nbase_url = {:?}\ncache_dir = {:?}\nmax_requests_per_10s = 1000",
        server.base_url(),
        root.path().display().to_string()
    ));
    let (events, _) = replay(&config).await;
    assert_eq!(first_session_key(&events), "9999");

    // With only a simulated session cached there is nothing to fall back to: the question
    // is retried like any other request (and then fails naming it).
    let simulated = tempfile::tempdir().unwrap();
    cached_session(simulated.path(), 9999, true);
    assert_eq!(cache::newest_downloaded_session(simulated.path()), None);
    // The session just downloaded is now the newest to fall back to.
    assert_eq!(cache::newest_downloaded_session(root.path()), Some(9999));
}
