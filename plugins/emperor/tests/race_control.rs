//! The `emperor` source against a local race-control WebSocket server that plays message
//! sequences in the documented format, drops the connection mid-session and serves a new
//! snapshot after the reconnect.

use std::time::Duration;

use futures_util::SinkExt;
use pitwall_api::testing::{build_context, drain, parse_config, wire};
use pitwall_api::{ComponentConfig, Event, Record};
use pitwall_emperor::source::EmperorConfig;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "york-fs-gt3.race.20240526T130000Z";

/// (guid, car, name, position, laps, last lap ns, best lap ns)
type D = (&'static str, u32, &'static str, u32, u32, i64, i64);

fn driver(d: &D) -> serde_json::Value {
    let (guid, car, name, position, laps, last, best) = *d;
    json!({
        "CarInfo": {"CarID": car, "DriverName": name, "DriverGUID": guid, "CarModel": "bmw_m4_gt3",
                    "CarName": "BMW", "DriverInitials": "X"},
        "Position": position,
        "Split": if position == 1 { String::new() } else { format!("+{}.000", position) },
        "TotalNumLaps": laps,
        "LastSeen": "2024-05-26T13:20:00Z",
        "LastPos": {"X": 1.0, "Y": 2.0, "Z": 3.0},
        "Collisions": [],
        "Tyres": "M", "IsInPits": false, "NumPits": 0, "DRSActive": false, "BlueFlag": null,
        "Cars": {"bmw_m4_gt3": {"BestLap": best, "LastLap": last, "TotalLapTime": last * i64::from(laps),
                 "NumLaps": laps, "TopSpeedBestLap": 250.5, "TopSpeedThisLap": 249.0,
                 "LastLapCompletedTime": "2024-05-26T13:10:00Z"}}
    })
}

fn snapshot(connected: &[D], disconnected: &[D]) -> String {
    let map = |list: &[D]| {
        let drivers: serde_json::Map<String, serde_json::Value> =
            list.iter().map(|d| (d.0.to_string(), driver(d))).collect();
        let order: Vec<&str> = list.iter().map(|d| d.0).collect();
        json!({"Drivers": drivers, "GUIDsInPositionalOrder": order})
    };
    let car_ids: serde_json::Map<String, serde_json::Value> = connected
        .iter()
        .map(|d| (d.1.to_string(), json!(d.0)))
        .collect();
    json!({"EventType": 200, "Message": {
        "SessionInfo": {"Version": 4, "ServerName": "York FS | GT3", "Track": "ks_brands_hatch",
            "TrackConfig": "gp", "Name": "Race", "Type": 3, "Time": 0, "Laps": 20,
            "ElapsedMilliseconds": 600000, "AmbientTemp": 18, "RoadTemp": 25, "WeatherGraphics": "3_clear"},
        "TrackMapData": {"width": 1200, "height": 800, "margin": 20, "scale_factor": 2.0,
            "offset_x": 500.0, "offset_y": 400.0},
        "TrackInfo": {"name": "Brands Hatch", "city": "West Kingsdown", "country": "Great Britain",
            "length": "3908m"},
        "SessionStartTime": "2024-05-26T13:00:00Z",
        "CurrentRealtimePosInterval": 100,
        "ConnectedDrivers": map(connected),
        "DisconnectedDrivers": map(disconnected),
        "CarIDToGUID": car_ids,
        "ChatMessages": [],
        "SomethingNewInTheFork": {"a": 1}
    }})
    .to_string()
}

fn car_update(car: u32, x: f64, z: f64, spline: f64) -> String {
    json!({"EventType": 53, "Message": {"CarID": car, "Pos": {"X": x, "Y": 1.5, "Z": z},
        "Velocity": {"X": 1, "Y": 0, "Z": 1}, "Gear": 4, "EngineRPM": 7000,
        "NormalisedSplinePos": spline}})
    .to_string()
}

fn connection(kind: u32, car: u32, guid: &str, name: &str) -> String {
    json!({"EventType": kind, "Message": {"CarID": car, "DriverName": name, "DriverGUID": guid,
        "CarModel": "bmw_m4_gt3", "CarSkin": "red"}})
    .to_string()
}

const CHAT: &str = r#"{"EventType":57,"Message":{"CarID":1,"Message":"gg","DriverGUID":"G1","DriverName":"Ann","Time":"2024-05-26T13:05:00Z"}}"#;

/// One line per record, for comparing a whole run at once.
fn describe(event: &Event) -> String {
    match &event.record {
        Record::Session(s) => format!(
            "session {} {} {}",
            s.session_key,
            s.session_name.as_deref().unwrap_or("-"),
            s.circuit_short_name.as_deref().unwrap_or("-")
        ),
        Record::Connection(c) => format!(
            "{} car {} {} {}",
            if c.connected { "join" } else { "leave" },
            c.car,
            c.driver_guid.as_deref().unwrap_or("-"),
            c.driver_name.as_deref().unwrap_or("-")
        ),
        Record::Standing(s) => format!(
            "standing car {} P{} laps {} gap {} best {:?} last {:?}",
            s.car,
            s.position,
            s.laps,
            s.gap.as_deref().unwrap_or("-"),
            s.best_lap_s,
            s.last_lap_s
        ),
        Record::Lap(l) => format!(
            "lap car {} #{} {:?} {}",
            l.driver_number,
            l.lap_number,
            l.lap_duration,
            l.date_start.as_deref().unwrap_or("-")
        ),
        Record::Position(p) => format!(
            "position car {} {} {} {} {:?}",
            p.car, p.x, p.y, p.z, p.spline
        ),
        Record::Collision(c) => format!(
            "collision car {} other {:?} {} km/h at {} {} {}",
            c.car, c.other_car, c.impact_speed_kmh, c.x, c.y, c.z
        ),
        Record::Chat(c) => format!("chat car {:?} {}", c.car, c.message),
        Record::SessionEnd(e) => format!("end {}", e.session_key),
        other => format!("other {:?}", other.kind()),
    }
}

#[tokio::test]
async fn follows_a_session_across_a_dropped_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        // First connection.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let ann: D = ("G1", 1, "Ann", 1, 2, 62_000_000_000, 61_500_000_000);
        let bob: D = ("G2", 2, "Bob", 2, 0, 0, 0);
        let frames = vec![
            String::new(), // nothing broadcast yet
            snapshot(&[ann, bob], &[]),
            car_update(1, 100.0, -50.0, 0.25),
            car_update(2, -20.0, 10.0, 0.75),
            "{\"EventType\": 53, \"Message\": {".to_string(), // malformed
            r#"{"EventType":999,"Message":{"Whatever":true}}"#.to_string(),
            r#"{"EventType":56,"Message":4}"#.to_string(),
            r#"{"EventType":58,"Message":2}"#.to_string(),
            connection(51, 3, "G3", "Cat"),
            CHAT.to_string(),
            r#"{"EventType":10,"Message":{"CarID":1,"OtherCarID":2,"ImpactSpeed":42.5,"WorldPos":{"X":10,"Y":1,"Z":20},"RelPos":{"X":0,"Y":0,"Z":1}}}"#.to_string(),
            r#"{"EventType":11,"Message":{"CarID":3,"OtherCarID":0,"ImpactSpeed":12,"WorldPos":{"X":-4,"Y":0,"Z":6}}}"#.to_string(),
            // Ann completes lap 3; Cat appears with 0 laps.
            snapshot(
                &[
                    ("G1", 1, "Ann", 1, 3, 61_000_000_000, 61_000_000_000),
                    bob,
                    ("G3", 3, "Cat", 3, 0, 0, 0),
                ],
                &[],
            ),
            connection(52, 2, "G2", "Bob"),
        ];
        for frame in frames {
            ws.send(Message::text(frame)).await.unwrap();
        }
        // Drop mid-session without a close handshake.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(ws);

        // Second connection: while we were away Ann did laps 4 and 5, Cat lap 1, Dan joined
        // and Bob's lap history sits among the disconnected drivers.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let frames = vec![
            snapshot(
                &[
                    ("G1", 1, "Ann", 1, 5, 60_500_000_000, 60_500_000_000),
                    ("G3", 3, "Cat", 2, 1, 70_000_000_000, 70_000_000_000),
                    ("G4", 4, "Dan", 3, 0, 0, 0),
                ],
                &[bob],
            ),
            CHAT.to_string(), // the server replays stored chat on connect
            car_update(4, 0.0, 0.0, 0.5),
            r#"{"EventType":55,"Message":{"Filename":"results.json"}}"#.to_string(),
        ];
        for frame in frames {
            ws.send(Message::text(frame)).await.unwrap();
        }
        done_tx.send(()).unwrap();
        // Keep the connection open until the test ends.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(ws);
    });

    let config: EmperorConfig = parse_config(&format!(
        "url = \"ws://{address}/api/race-control\"\nreconnect_initial_ms = 20\nreconnect_max_ms = 50"
    ));
    assert!(config.check().is_empty());
    let mut component = config.build(&build_context("race", ".")).unwrap();
    let mut wiring = wire("race", false);
    let shutdown = wiring.io.shutdown.clone();
    let metrics = wiring.io.metrics.clone();
    let output = wiring.output.clone();
    let runner = tokio::spawn(async move {
        component.run(&mut wiring.io).await.unwrap();
    });
    tokio::time::timeout(Duration::from_secs(20), done_rx)
        .await
        .expect("the server played both connections")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .expect("the source stops on shutdown")
        .unwrap();
    server.abort();

    let got: Vec<String> = drain(&output).iter().map(describe).collect();
    let expected = vec![
        format!("session {KEY} Race ks_brands_hatch/gp"),
        "join car 1 G1 Ann".to_string(),
        "join car 2 G2 Bob".to_string(),
        "standing car 1 P1 laps 2 gap - best Some(61.5) last Some(62.0)".to_string(),
        "standing car 2 P2 laps 0 gap +2.000 best None last None".to_string(),
        // world frame: x = X, y = Z, z = Y
        "position car 1 100 -50 1.5 Some(0.25)".to_string(),
        "position car 2 -20 10 1.5 Some(0.75)".to_string(),
        "join car 3 G3 Cat".to_string(),
        "chat car Some(1) gg".to_string(),
        "collision car 1 other Some(2) 42.5 km/h at 10 20 1".to_string(),
        "collision car 3 other None 12 km/h at -4 6 0".to_string(),
        // Ann's third lap, seen in the next snapshot.
        "lap car 1 #3 Some(61.0) 2024-05-26T13:08:59.000000+00:00".to_string(),
        "standing car 1 P1 laps 3 gap - best Some(61.0) last Some(61.0)".to_string(),
        "standing car 3 P3 laps 0 gap +3.000 best None last None".to_string(),
        "leave car 2 G2 Bob".to_string(),
        // After the reconnect: only what happened meanwhile, each once.
        "join car 4 G4 Dan".to_string(),
        "lap car 1 #4 None -".to_string(),
        "lap car 1 #5 Some(60.5) 2024-05-26T13:08:59.500000+00:00".to_string(),
        "lap car 3 #1 Some(70.0) 2024-05-26T13:08:50.000000+00:00".to_string(),
        "standing car 1 P1 laps 5 gap - best Some(60.5) last Some(60.5)".to_string(),
        "standing car 3 P2 laps 1 gap +2.000 best Some(70.0) last Some(70.0)".to_string(),
        "standing car 4 P3 laps 0 gap +3.000 best None last None".to_string(),
        "position car 4 0 0 1.5 Some(0.5)".to_string(),
        format!("end {KEY}"),
    ];
    assert_eq!(got, expected, "\n got: {got:#?}");

    // Every lap number once per car, none lost: Ann 3, 4, 5; Cat 1.
    let events = got.iter().filter(|l| l.starts_with("lap ")).count();
    assert_eq!(events, 4);
    // The malformed frame was counted; the unknown type and bare numbers were not errors.
    assert_eq!(metrics.snapshot().errors, 1, "{:?}", metrics.snapshot());
}

#[tokio::test]
async fn unknown_events_pass_on_as_json_when_asked_and_shutdown_interrupts_backoff() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.send(Message::text(snapshot(&[], &[]))).await.unwrap();
        ws.send(Message::text(
            r#"{"EventType":300,"Message":{"Flag":"yellow"}}"#,
        ))
        .await
        .unwrap();
        ws.close(None).await.unwrap();
        // Refuse further connections by ending: the source keeps retrying with backoff.
    });
    let config: EmperorConfig = parse_config(&format!(
        "url = \"ws://{address}/api/race-control\"\nemit_unknown = true\nsession_key = \"york\"\nreconnect_initial_ms = 10000"
    ));
    let mut component = config.build(&build_context("race", ".")).unwrap();
    let mut wiring = wire("race", false);
    let shutdown = wiring.io.shutdown.clone();
    let output = wiring.output.clone();
    let runner = tokio::spawn(async move { component.run(&mut wiring.io).await.unwrap() });
    server.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(2), runner)
        .await
        .expect("shutdown interrupts the 10 s backoff")
        .unwrap();
    let events = drain(&output);
    let json: Vec<&serde_json::Value> = events
        .iter()
        .filter_map(|e| match &e.record {
            Record::Json(v) => Some(v.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(
        json,
        vec![
            &json!({"source": "emperor", "session_key": "york", "event_type": 300,
                     "message": {"Flag": "yellow"}})
        ]
    );
    assert!(matches!(&events[0].record, Record::Session(s) if &*s.session_key == "york"));
}

/// A server that accepts and closes at once (a proxy with nothing behind it) is retried
/// with backoff, as one that refuses: before, its close frame counted as "delivered" and
/// reset the backoff, so it was retried every `reconnect_initial_ms` forever.
#[tokio::test]
async fn a_server_that_accepts_and_closes_at_once_is_backed_off() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let server = {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                    let _ = ws.close(None).await;
                }
            }
        })
    };
    let config: EmperorConfig = parse_config(&format!(
        "url = \"ws://{address}/api/race-control\"\nreconnect_initial_ms = 50\nreconnect_max_ms = 5000"
    ));
    let mut component = config.build(&build_context("race", ".")).unwrap();
    let mut wiring = wire("race", false);
    let shutdown = wiring.io.shutdown.clone();
    let runner = tokio::spawn(async move { component.run(&mut wiring.io).await.unwrap() });
    tokio::time::sleep(Duration::from_secs(2)).await;
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .expect("stops")
        .unwrap();
    server.abort();
    let attempts = accepted.load(std::sync::atomic::Ordering::SeqCst);
    // Doubling from 50 ms (with jitter): about six tries in 2 s; every 50 ms would be 40.
    assert!(
        (2..=10).contains(&attempts),
        "{attempts} connections in 2 s"
    );
}
