//! Black-box tests of the `cardputer` sink: a real server on loopback, real HTTP and
//! WebSocket clients, and a frame parser that does what the Cardputer firmware does.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{next_message, next_text, start, Client};
use pitwall_api::record::*;
use pitwall_api::testing::{build_context, parse_config};
use pitwall_api::{ComponentConfig, Event, Record};
use pitwall_web::cardputer::{CardputerConfig, CLIENT_BACKLOG};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream as MaybeTls;

const SESSION: &str = "9158";
const PROBE: &str = "/session/probe/drivers";

fn key() -> SessionKey {
    SESSION.into()
}

fn frame(t_ms: i64, cars: &[(u32, f64, f64, u32)]) -> Event {
    frame_of(SESSION, t_ms, cars)
}

fn frame_of(session: &str, t_ms: i64, cars: &[(u32, f64, f64, u32)]) -> Event {
    Event::new(
        t_ms * 1_000_000,
        Record::Frame(Arc::new(Frame {
            session_key: session.into(),
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

fn session_end() -> Event {
    Event::new(0, Record::SessionEnd(SessionEnd { session_key: key() }))
}

/// What the firmware does with a frame: split on `|`, the first field is the clock, and a
/// chunk counts only with exactly three commas. Returns the clock and the cars it would draw.
fn parse_like_firmware(text: &str) -> (i64, Vec<(u32, i64, i64, u32)>) {
    let mut fields = text.split('|');
    let clock = fields
        .next()
        .unwrap()
        .parse::<i64>()
        .expect("clock is an integer");
    let mut cars = Vec::new();
    for chunk in fields {
        if chunk.matches(',').count() != 3 {
            continue;
        }
        let parts: Vec<&str> = chunk.split(',').collect();
        cars.push((
            parts[0].parse().expect("car is an integer"),
            parts[1].parse().expect("x is an integer"),
            parts[2].parse().expect("y is an integer"),
            parts[3].parse().expect("position is an integer"),
        ));
    }
    (clock, cars)
}

async fn json_doc(running: &common::Running, name: &str) -> Value {
    let response = running.get(&format!("/session/{SESSION}/{name}")).await;
    assert_eq!(response.status(), 200, "document {name}");
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "document {name}"
    );
    response.json().await.unwrap()
}

const T: Duration = Duration::from_secs(3);

#[tokio::test]
async fn documents_are_built_from_records_field_by_field() {
    let running = start::<CardputerConfig>("", PROBE).await;
    let driver = |number: u32, acronym: &str, colour: &str| {
        Event::new(
            0,
            Record::Driver(Arc::new(Driver {
                session_key: key(),
                driver_number: number,
                name_acronym: Some(acronym.into()),
                team_colour: Some(colour.into()),
                full_name: Some(format!("Driver {number}")),
                ..Default::default()
            })),
        )
    };
    let layout = TrackLayout {
        session_key: key(),
        track_path: vec![Point { x: 1.0, y: 2.0 }, Point { x: 3.5, y: -4.0 }],
        pit_path: vec![Point { x: 0.0, y: 0.5 }],
        sector_points: vec![SectorPoint {
            id: "Start/Finish".into(),
            x: 1.0,
            y: 2.0,
        }],
        bounds: Bounds {
            min_x: 0.0,
            max_x: 3.5,
            min_y: -4.0,
            max_y: 2.0,
        },
    };
    let metadata = RaceMetadata {
        session_key: key(),
        reference_start_time: "2024-05-26T13:03:15.000000+00:00".into(),
        reference_start_ns: 123,
        race_winner: Some(16),
        podium_drivers: vec![16, 81, 55],
        fastest_lap: Some(FastestLap {
            driver_number: 44,
            lap_number: 70,
            lap_time: 74.165,
            sector_1: Some(19.0),
            sector_2: Some(35.0),
            sector_3: None,
        }),
    };
    let lap = |driver: u32, lap: u32, duration: f64| {
        Event::new(
            0,
            Record::Lap(Arc::new(Lap {
                session_key: key(),
                driver_number: driver,
                lap_number: lap,
                lap_duration: Some(duration),
                ..Default::default()
            })),
        )
    };
    let events = vec![
        driver(44, "HAM", "27F4D2"),
        driver(1, "VER", "3671C6"),
        driver(44, "HAM", "00D2BE"), // updated: replaces the first
        Event::new(0, Record::TrackLayout(Arc::new(layout))),
        Event::new(0, Record::RaceMetadata(Arc::new(metadata))),
        Event::new(
            0,
            Record::Session(Arc::new(Session {
                session_key: key(),
                session_name: Some("Race".into()),
                circuit_short_name: Some("Monte Carlo".into()),
                year: Some(2024),
                ..Default::default()
            })),
        ),
        lap(44, 1, 90.0),
        lap(1, 1, 89.0),
        lap(44, 1, 88.5), // upsert by driver + lap
        lap(44, 2, 80.0),
        Event::new(
            0,
            Record::Stint(Arc::new(Stint {
                session_key: key(),
                driver_number: 1,
                stint_number: 1,
                compound: Some("MEDIUM".into()),
                ..Default::default()
            })),
        ),
        Event::new(
            0,
            Record::Stint(Arc::new(Stint {
                session_key: key(),
                driver_number: 1,
                stint_number: 1,
                compound: Some("HARD".into()),
                ..Default::default()
            })),
        ),
        Event::new(
            0,
            Record::Interval(Arc::new(Interval {
                session_key: key(),
                driver_number: 1,
                gap_to_leader: Some(Gap::Seconds(0.0)),
                interval: Some(Gap::Text("+1 LAP".into())),
                ..Default::default()
            })),
        ),
        Event::new(
            1_716_728_615_000_000_000,
            Record::RacePosition(RacePosition {
                session_key: key(),
                car: 44,
                position: 3,
            }),
        ),
        Event::new(
            0,
            Record::SessionResult(Arc::new(SessionResultEntry {
                session_key: key(),
                driver_number: 44,
                position: Some(2),
                ..Default::default()
            })),
        ),
        Event::new(
            0,
            Record::SessionResult(Arc::new(SessionResultEntry {
                session_key: key(),
                driver_number: 1,
                position: Some(1),
                ..Default::default()
            })),
        ),
        Event::new(
            0,
            Record::StartingGrid(Arc::new(GridSlot {
                session_key: key(),
                driver_number: 1,
                position: 2,
                lap_duration: Some(70.5),
            })),
        ),
        Event::new(
            0,
            Record::StartingGrid(Arc::new(GridSlot {
                session_key: key(),
                driver_number: 44,
                position: 1,
                lap_duration: None,
            })),
        ),
        Event::new(
            0,
            Record::Document(Arc::new(Document {
                session_key: key(),
                name: "weather".into(),
                body: json!({"rain": false}),
            })),
        ),
    ];
    running.push(events).await;
    // The sink applies batches asynchronously: wait until the last record is visible.
    let deadline = Instant::now() + T;
    while running
        .get(&format!("/session/{SESSION}/weather"))
        .await
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "documents never appeared");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let drivers = json_doc(&running, "drivers").await;
    let drivers = drivers.as_array().unwrap();
    assert_eq!(drivers.len(), 2, "deduplicated by driver_number");
    assert_eq!(drivers[0]["driver_number"], 1);
    assert_eq!(drivers[0]["name_acronym"], "VER");
    assert_eq!(drivers[0]["team_colour"], "3671C6");
    assert_eq!(drivers[1]["driver_number"], 44);
    assert_eq!(
        drivers[1]["team_colour"], "00D2BE",
        "latest driver record wins"
    );
    assert_eq!(drivers[1]["full_name"], "Driver 44");
    assert_eq!(drivers[1]["session_key"], SESSION);

    let layout = json_doc(&running, "track_layout").await;
    assert_eq!(
        layout,
        json!({
            "track_path": [{"x": 1.0, "y": 2.0}, {"x": 3.5, "y": -4.0}],
            "pit_path": [{"x": 0.0, "y": 0.5}],
            "sector_points": [{"id": "Start/Finish", "x": 1.0, "y": 2.0}],
            "bounds": {"min_x": 0.0, "max_x": 3.5, "min_y": -4.0, "max_y": 2.0}
        })
    );

    let metadata = json_doc(&running, "race_metadata").await;
    assert_eq!(
        metadata,
        json!({
            "session_key": SESSION,
            "reference_start_time": "2024-05-26T13:03:15.000000+00:00",
            "race_winner": 16,
            "podium_drivers": [16, 81, 55],
            "fastest_lap": {"driver_number": 44, "lap_number": 70, "lap_time": 74.165,
                            "sector_1": 19.0, "sector_2": 35.0, "sector_3": null}
        })
    );

    let info = json_doc(&running, "session_info").await;
    assert_eq!(info["session_key"], SESSION);
    assert_eq!(info["session_name"], "Race");
    assert_eq!(info["circuit_short_name"], "Monte Carlo");
    assert_eq!(info["year"], 2024);

    let laps = json_doc(&running, "laps").await;
    let laps: Vec<(u64, u64, f64)> = laps
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["lap_number"].as_u64().unwrap(),
                l["driver_number"].as_u64().unwrap(),
                l["lap_duration"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(laps, vec![(1, 1, 89.0), (1, 44, 88.5), (2, 44, 80.0)]);

    let stints = json_doc(&running, "stints").await;
    assert_eq!(
        stints.as_array().unwrap().len(),
        1,
        "upsert by driver + stint"
    );
    assert_eq!(stints[0]["compound"], "HARD");

    let intervals = json_doc(&running, "intervals").await;
    assert_eq!(intervals[0]["driver_number"], 1);
    assert_eq!(intervals[0]["gap_to_leader"], 0.0);
    assert_eq!(intervals[0]["interval"], "+1 LAP");

    let positions = json_doc(&running, "positions").await;
    assert_eq!(
        positions,
        json!([{"date": "2024-05-26T13:03:35.000000+00:00", "driver_number": 44,
                "position": 3, "session_key": SESSION}])
    );

    let result = json_doc(&running, "session_result").await;
    assert_eq!(result[0]["driver_number"], 1, "ordered by position");
    assert_eq!(result[1]["driver_number"], 44);
    assert_eq!(result[1]["position"], 2);

    let grid = json_doc(&running, "starting_grid").await;
    assert_eq!(grid[0]["driver_number"], 44, "ordered by grid position");
    assert_eq!(grid[1]["lap_duration"], 70.5);

    assert_eq!(json_doc(&running, "weather").await, json!({"rain": false}));

    // A document record overrides a built document of the same name.
    running
        .push(vec![Event::new(
            0,
            Record::Document(Arc::new(Document {
                session_key: key(),
                name: "drivers".into(),
                body: json!([{"driver_number": 99}]),
            })),
        )])
        .await;
    let deadline = Instant::now() + T;
    loop {
        let drivers = json_doc(&running, "drivers").await;
        if drivers == json!([{"driver_number": 99}]) {
            break;
        }
        assert!(Instant::now() < deadline, "override never applied");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.finish().await.unwrap();
}

#[tokio::test]
async fn unknown_sessions_and_names_are_404() {
    let running = start::<CardputerConfig>("", PROBE).await;
    running
        .push(vec![Event::new(
            0,
            Record::Driver(Arc::new(Driver {
                session_key: key(),
                driver_number: 1,
                ..Default::default()
            })),
        )])
        .await;
    let deadline = Instant::now() + T;
    while running
        .get(&format!("/session/{SESSION}/drivers"))
        .await
        .status()
        != 200
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for path in [
        "/session/1234/drivers".to_string(),
        format!("/session/{SESSION}/no_such_document"),
        // Known name, nothing received for it yet.
        format!("/session/{SESSION}/track_layout"),
        format!("/session/{SESSION}/../../etc/passwd"),
        "/sessions".to_string(),
    ] {
        assert_eq!(running.get(&path).await.status(), 404, "{path}");
    }
    running.finish().await.unwrap();
}

#[tokio::test]
async fn the_session_fed_longest_ago_goes_when_max_sessions_are_kept() {
    let running = start::<CardputerConfig>("max_sessions = 2", PROBE).await;
    let car = [(1, 1.0, 1.0, 1)];
    let driver = |session: &str| {
        Event::new(
            0,
            Record::Driver(Arc::new(Driver {
                session_key: session.into(),
                driver_number: 1,
                ..Default::default()
            })),
        )
    };
    running
        .push(vec![driver("fp1"), frame_of("fp1", 100, &car)])
        .await;
    let mut fp1 = running.connect("fp1").await;
    assert_eq!(next_text(&mut fp1, T).await, "100|1,1,1,1");
    running
        .push(vec![driver("fp2"), frame_of("fp2", 100, &car)])
        .await;
    // fp1 is fed again: now fp2 has gone longest without a record.
    running.push(vec![frame_of("fp1", 200, &car)]).await;
    assert_eq!(next_text(&mut fp1, T).await, "200|1,1,1,1");
    assert_eq!(running.get("/session/fp2/drivers").await.status(), 200);
    let mut fp2 = running.connect("fp2").await;
    assert_eq!(next_text(&mut fp2, T).await, "100|1,1,1,1");

    running.push(vec![frame_of("fp3", 100, &car)]).await;
    // Its connected device is closed, not left waiting for frames that never come.
    assert!(matches!(
        next_message(&mut fp2, T).await,
        Message::Close(Some(_))
    ));
    let deadline = Instant::now() + T;
    while running.get("/session/fp2/drivers").await.status() != 404 {
        assert!(Instant::now() < deadline, "fp2 was never dropped");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut late = running.connect("fp2").await;
    match next_message(&mut late, T).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4004),
        other => panic!("expected a close frame, got {other:?}"),
    }
    // The sessions kept are untouched.
    assert_eq!(running.get("/session/fp1/drivers").await.status(), 200);
    running.push(vec![frame_of("fp1", 300, &car)]).await;
    assert_eq!(next_text(&mut fp1, T).await, "300|1,1,1,1");
    let mut fp3 = running.connect("fp3").await;
    assert_eq!(next_text(&mut fp3, T).await, "100|1,1,1,1");
    running.finish().await.unwrap();
}

#[tokio::test]
async fn unknown_session_is_closed_with_4004() {
    let running = start::<CardputerConfig>("", PROBE).await;
    let mut client = running.connect("no-such-session").await;
    match next_message(&mut client, T).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4004),
        other => panic!("expected a close frame, got {other:?}"),
    }
    running.finish().await.unwrap();
}

#[tokio::test]
async fn frames_parse_like_the_firmware_and_new_clients_get_the_current_one() {
    let running = start::<CardputerConfig>(&format!("session_key = \"{SESSION}\""), PROBE).await;
    // session_key known from the start: a client may connect before any record.
    let mut early = running.connect(SESSION).await;
    running
        .push(vec![frame(
            1200,
            &[
                (44, 12.6, -3.4, 1),
                (1, -1000.5, 2000.49, 2), // halves round away from zero
                (16, f64::NAN, 5.0, 3),   // no usable data: left out
                (81, 0.0, 0.0, 0),
            ],
        )])
        .await;
    let text = next_text(&mut early, T).await;
    assert_eq!(text, "1200|44,13,-3,1|1,-1001,2000,2|81,0,0,0");
    let (clock, cars) = parse_like_firmware(&text);
    assert_eq!(clock, 1200);
    assert_eq!(
        cars,
        vec![(44, 13, -3, 1), (1, -1001, 2000, 2), (81, 0, 0, 0)]
    );

    // Several frames in one batch: each is sent, in order.
    running
        .push(vec![
            frame(1300, &[(44, 14.0, -3.0, 1)]),
            frame(1400, &[(44, 15.0, -2.0, 1)]),
        ])
        .await;
    let text = next_text(&mut early, T).await;
    assert_eq!(parse_like_firmware(&text), (1300, vec![(44, 14, -3, 1)]));
    let text = next_text(&mut early, T).await;
    assert_eq!(parse_like_firmware(&text), (1400, vec![(44, 15, -2, 1)]));

    // A new client gets the current frame at once, with no new frame being pushed.
    let started = Instant::now();
    let mut late = running.connect(SESSION).await;
    let text = next_text(&mut late, T).await;
    assert_eq!(text, "1400|44,15,-2,1");
    println!("first frame to a new client after {:?}", started.elapsed());

    // An empty frame is just the clock.
    running.push(vec![frame(1500, &[])]).await;
    assert_eq!(next_text(&mut late, T).await, "1500");
    assert_eq!(parse_like_firmware("1500"), (1500, vec![]));

    // Records of other sessions are not served.
    let mut other = running.connect("other").await;
    match next_message(&mut other, T).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4004),
        other => panic!("expected a close frame, got {other:?}"),
    }
    running.finish().await.unwrap();
}

#[tokio::test]
async fn a_client_within_the_backlog_gets_every_frame_and_further_behind_skips_ahead() {
    let running = start::<CardputerConfig>(&format!("session_key = \"{SESSION}\""), PROBE).await;
    let mut client = running.connect(SESSION).await;
    let car = [(44, 1.0, 1.0, 1)];
    // A backlog's worth of frames published at once: the client gets each, in order.
    let backlog = CLIENT_BACKLOG as i64;
    running
        .push((1..=backlog).map(|t| frame(t * 100, &car)).collect())
        .await;
    for t in 1..=backlog {
        let (clock, _) = parse_like_firmware(&next_text(&mut client, T).await);
        assert_eq!(clock, t * 100);
    }
    // Ten times that at once: the client falls behind and skips to the newest.
    let far = 10 * backlog;
    let start_ms = 100_000;
    running
        .push((1..=far).map(|t| frame(start_ms + t * 100, &car)).collect())
        .await;
    let mut clocks = Vec::new();
    while clocks.last() != Some(&(start_ms + far * 100)) {
        clocks.push(parse_like_firmware(&next_text(&mut client, T).await).0);
    }
    assert!(clocks.windows(2).all(|w| w[1] > w[0]), "{clocks:?}");
    assert!(
        clocks.len() < far as usize,
        "a client {far} frames behind skipped none"
    );
    running.finish().await.unwrap();
}

#[tokio::test]
async fn finished_is_sent_after_the_session_end() {
    let running = start::<CardputerConfig>("finished_interval_ms = 100", PROBE).await;
    running
        .push(vec![frame(65_000, &[(44, 1.0, 2.0, 1)])])
        .await;
    let mut client = loop {
        // The session exists once its first record is applied.
        let mut client = running.connect(SESSION).await;
        match next_message(&mut client, T).await {
            Message::Text(text) => {
                assert_eq!(text.as_str(), "65000|44,1,2,1");
                break client;
            }
            Message::Close(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            other => panic!("unexpected {other:?}"),
        }
    };
    running.push(vec![session_end()]).await;
    let first = next_text(&mut client, T).await;
    let first_at = Instant::now();
    assert_eq!(first, "65000|FINISHED");
    let second = next_text(&mut client, T).await;
    let gap = first_at.elapsed();
    assert_eq!(second, "65000|FINISHED");
    assert!(
        gap >= Duration::from_millis(60),
        "FINISHED repeats every interval, not faster: {gap:?}"
    );

    // A client that connects after the end gets FINISHED at once.
    let mut late = running.connect(SESSION).await;
    assert_eq!(
        next_text(&mut late, Duration::from_millis(90)).await,
        "65000|FINISHED"
    );
    running.finish().await.unwrap();
}

#[tokio::test]
async fn finished_waits_until_frames_stop() {
    let running = start::<CardputerConfig>(
        &format!("session_key = \"{SESSION}\"\nfinished_interval_ms = 500"),
        PROBE,
    )
    .await;
    let mut client = running.connect(SESSION).await;
    // The end arrives, but frames keep coming for a while (a resampler flushing).
    running
        .push(vec![frame(100, &[(1, 1.0, 1.0, 1)]), session_end()])
        .await;
    assert_eq!(next_text(&mut client, T).await, "100|1,1,1,1");
    for t in 2..=5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        running
            .push(vec![frame(t * 100, &[(1, 1.0, 1.0, 1)])])
            .await;
        assert_eq!(
            next_text(&mut client, T).await,
            format!("{}|1,1,1,1", t * 100)
        );
    }
    assert_eq!(next_text(&mut client, T).await, "500|FINISHED");
    running.finish().await.unwrap();
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_delay_others() {
    let running = start::<CardputerConfig>(&format!("session_key = \"{SESSION}\""), PROBE).await;
    // Never read from this one: its socket buffers fill up and its sends stall.
    let stalled: Client = running.connect(SESSION).await;
    let mut reader = running.connect(SESSION).await;
    const CARS: usize = 5000;
    const FRAMES: i64 = 200;
    let reading = tokio::spawn(async move {
        let mut seen = 0;
        let mut last = -1;
        while last != (FRAMES - 1) * 100 {
            let text = next_text(&mut reader, T).await;
            let (clock, parsed) = parse_like_firmware(&text);
            assert!(clock > last, "frames arrive in order, newest wins");
            assert_eq!(parsed.len(), CARS);
            last = clock;
            seen += 1;
        }
        (seen, Instant::now())
    });
    // Big frames (~115 KB each, ~23 MB in all, more than loopback socket buffers hold), pushed
    // a few milliseconds apart so that the sink publishes most of them.
    let cars: Vec<(u32, f64, f64, u32)> = (0..CARS as u32)
        .map(|i| (i, -12345.0 + i as f64, 23456.0, i % 20 + 1))
        .collect();
    for n in 0..FRAMES {
        running.push(vec![frame(n * 100, &cars)]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pushed = Instant::now();
    let (seen, done) = reading.await.expect("reader saw every frame in order");
    let waited = done.saturating_duration_since(pushed);
    let sent = running.metrics.snapshot().sent;
    println!("reader: {seen} frames, the last {waited:?} after the last push; sent in all: {sent}");
    assert!(
        waited < Duration::from_secs(3),
        "reader was held up: {waited:?}"
    );
    assert!(
        seen >= 20,
        "the reader kept up with most frames, saw only {seen}"
    );
    // The stalled client got far fewer: its socket really was full, and that did not matter.
    let stalled_sent = sent - seen;
    assert!(
        stalled_sent < seen,
        "stalled client took {stalled_sent} frames, reader {seen}"
    );
    drop(stalled);
    running.finish().await.unwrap();
}

/// A handheld on weak Wi-Fi reads slower than frames come. The frames it does read must
/// stay close to the newest: the kernel may queue only a little unsent data per socket
/// (`pitwall_api::http::MAX_UNSENT_BYTES`), so the sink feels the back-pressure and skips
/// the client ahead (`CLIENT_BACKLOG`) instead of queueing minutes of old frames in a send
/// buffer Linux would otherwise grow to megabytes. Lost: the frames skipped, by design.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_device_is_skipped_ahead_instead_of_falling_behind() {
    let running = start::<CardputerConfig>(&format!("session_key = \"{SESSION}\""), PROBE).await;
    // A small receive window, like a microcontroller's TCP stack.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(running.address).await.unwrap();
    let url = format!("ws://{}/ws/{SESSION}", running.address);
    let (mut device, _) = tokio_tungstenite::client_async(url, MaybeTls::Plain(stream))
        .await
        .expect("WebSocket connects");
    // ~2 KB frames at 20 per second; the device reads 4 per second.
    const FRAMES: i64 = 240;
    let cars: Vec<(u32, f64, f64, u32)> = (0..100)
        .map(|i| (i, -12345.0 + i as f64, 23456.0, i % 20 + 1))
        .collect();
    let pushing = {
        let input = running.input.clone();
        tokio::spawn(async move {
            for n in 1..=FRAMES {
                let batch = Arc::new(vec![frame(n * 100, &cars)]);
                input.push(batch, pitwall_api::WhenFull::Block).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut last_read = 0;
    while !pushing.is_finished() {
        tokio::time::sleep(Duration::from_millis(250)).await;
        last_read = parse_like_firmware(&next_text(&mut device, T).await).0 / 100;
    }
    let behind = FRAMES - last_read;
    println!("the slow device read frame {last_read} when frame {FRAMES} was the newest");
    // Without the bound it would be ~180 frames behind (it read 48 of 240, in order).
    assert!(
        behind <= 2 * CLIENT_BACKLOG as i64,
        "the slow device fell {behind} frames behind"
    );
    running.finish().await.unwrap();
}

#[tokio::test]
async fn max_clients_is_enforced() {
    let running = start::<CardputerConfig>(
        &format!("session_key = \"{SESSION}\"\nmax_clients = 2"),
        PROBE,
    )
    .await;
    let first = running.connect(SESSION).await;
    let _second = running.connect(SESSION).await;
    let refused =
        tokio_tungstenite::connect_async(format!("ws://{}/ws/{SESSION}", running.address)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!(
            "third client should be refused, got {:?}",
            other.map(|_| ())
        ),
    }
    // A slot frees up when a client leaves.
    drop(first);
    let deadline = Instant::now() + T;
    loop {
        let url = format!("ws://{}/ws/{SESSION}", running.address);
        if tokio_tungstenite::connect_async(url).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.finish().await.unwrap();
}

#[tokio::test]
async fn end_of_input_closes_clients_cleanly() {
    let running = start::<CardputerConfig>(&format!("session_key = \"{SESSION}\""), PROBE).await;
    let mut client = running.connect(SESSION).await;
    running.push(vec![frame(100, &[(1, 1.0, 1.0, 1)])]).await;
    assert_eq!(next_text(&mut client, T).await, "100|1,1,1,1");
    let address = running.address;
    let server = running.server.clone();
    let input = running.input.clone();
    input.close();
    match next_message(&mut client, T).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected a close frame, got {other:?}"),
    }
    running.finish().await.unwrap();
    // The routes are gone with the sink, though the server still runs.
    let response = reqwest::get(format!("http://{address}/session/{SESSION}/drivers"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    drop(server);
}

#[tokio::test]
async fn options_are_checked_and_a_taken_port_fails_the_build() {
    let config: CardputerConfig = parse_config("");
    assert_eq!(config.address, "127.0.0.1:8000");
    assert_eq!(config.max_clients, 1024);
    assert_eq!(config.finished_interval_ms, 1000);
    let listeners = config.listeners();
    assert_eq!(listeners.len(), 1);
    assert_eq!(
        listeners[0].routes,
        vec!["/session/{session_key}/{name}", "/ws/{session_key}"]
    );
    assert!(config.accepts().contains(pitwall_api::RecordKind::Frame));
    assert!(!config.accepts().contains(pitwall_api::RecordKind::Position));

    let bad: CardputerConfig =
        parse_config("address = \"nowhere\"\nmax_clients = 0\nfinished_interval_ms = 0");
    let keys: Vec<String> = bad.check().into_iter().map(|p| p.key).collect();
    assert_eq!(keys, ["address", "max_clients", "finished_interval_ms"]);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let config: CardputerConfig = parse_config(&format!("address = \"{address}\""));
    assert!(config.build(&build_context("c", ".")).is_err());
}

#[tokio::test]
async fn a_replacement_mounts_when_the_old_instance_stops() {
    let running = start::<CardputerConfig>(&format!("session_key = \"{SESSION}\""), PROBE).await;
    // Built while the old instance runs (as a reload does): shares the server, mounts nothing.
    let config: CardputerConfig = parse_config(&format!(
        "address = \"{}\"\nsession_key = \"other\"",
        running.address
    ));
    let mut replacement = config
        .build(&running.ctx)
        .expect("builds on a shared server");
    let address = running.address;
    let server = running.server.clone();
    running.finish().await.unwrap();
    let mut wiring = pitwall_api::testing::wire("sink", true);
    let input = wiring.input.take().unwrap();
    let task = tokio::spawn(async move {
        replacement
            .run(&mut wiring.io)
            .await
            .map_err(|e| e.to_string())
    });
    common::wait_mounted(&format!("http://{address}{PROBE}")).await;
    let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws/{SESSION}"))
        .await
        .unwrap();
    match next_message(&mut client, T).await {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4004, "served by the new instance")
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    input.close();
    task.await.unwrap().unwrap();
    drop(server);
}
