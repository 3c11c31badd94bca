//! Black-box tests of the `json_ws` sink: a real server on loopback and real WebSocket
//! clients, including the rF2 WebSocket server's exact messages (FORMATS.md section 6).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{next_text, start, Client};
use futures_util::StreamExt;
use pitwall_api::record::Standing;
use pitwall_api::{CarTelemetry, Event, Record};
use pitwall_web::json_ws::JsonWsConfig;
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

/// The rF2 server's message, field for field (FORMATS.md section 6).
const RF2_OPTIONS: &str = r#"
interval_ms = 50
stale_after_ms = 400
kinds = ["car_telemetry"]
filter = { is_player = true }
fallback = { status = "no_player_vehicle_found" }
[fields]
driverName = "driver"
vehicleName = "car_model"
trackName = "track"
place = "place"
gear = "gear"
brake = "brake"
throttle = "throttle"
session = "session_type"
"#;

const NO_PLAYER: &str = r#"{"status":"no_player_vehicle_found"}"#;

fn car(id: i32, player: bool, driver: &str, throttle: f32) -> Event {
    Event::new(
        1,
        Record::CarTelemetry(Arc::new(CarTelemetry {
            game: "rfactor2".into(),
            session: "rfactor2".into(),
            car_id: id,
            is_player: player,
            driver: Some(driver.into()),
            car_model: Some("Oreca 07".into()),
            track: Some("Le Mans".into()),
            place: id,
            gear: 4,
            brake: 0.25,
            throttle,
            session_type: Some(10),
            ..Default::default()
        })),
    )
}

fn standing(car: u32, position: u32, name: &str) -> Event {
    Event::new(
        1,
        Record::Standing(Arc::new(Standing {
            session_key: "s".into(),
            car,
            position,
            driver_name: Some(name.into()),
            ..Default::default()
        })),
    )
}

fn json_event(n: u64, pad: usize) -> Event {
    Event::new(
        1,
        Record::Json(Arc::new(json!({"n": n, "pad": "x".repeat(pad)}))),
    )
}

/// Texts until one satisfies `done` (within `WAIT`); all of them, the last one included.
async fn texts_until(client: &mut Client, done: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let text = next_text(client, left).await;
        let stop = done(&text);
        seen.push(text);
        if stop {
            return seen;
        }
    }
}

#[tokio::test]
async fn latest_mode_speaks_the_rf2_server_protocol() {
    let running = start::<JsonWsConfig>(RF2_OPTIONS, "/").await;
    let mut client = running.connect_path("/").await;
    // No player car yet: the status object, every tick.
    assert_eq!(next_text(&mut client, WAIT).await, NO_PLAYER);
    assert_eq!(next_text(&mut client, WAIT).await, NO_PLAYER);

    // An AI car does not match; the player's car does, and key order is the options' order.
    running
        .push(vec![
            car(2, false, "AI", 1.0),
            car(1, true, "Player One", 0.75),
        ])
        .await;
    let expected = r#"{"driverName":"Player One","vehicleName":"Oreca 07","trackName":"Le Mans","place":1,"gear":4,"brake":0.25,"throttle":0.75,"session":10}"#;
    texts_until(&mut client, |t| t == expected).await;
    // The same record again on the next ticks, while it is fresh.
    let started = Instant::now();
    assert_eq!(next_text(&mut client, WAIT).await, expected);
    assert_eq!(next_text(&mut client, WAIT).await, expected);
    assert!(
        started.elapsed() >= Duration::from_millis(60),
        "one message per tick, not a flood"
    );

    // The newest matching record of a batch wins, even with others after it.
    running
        .push(vec![
            car(1, true, "Player One", 0.5),
            car(1, true, "Player One", 0.25),
            car(3, false, "AI", 0.0),
        ])
        .await;
    let seen = texts_until(&mut client, |t| t.contains(r#""throttle":0.25"#)).await;
    assert!(
        seen.iter().all(|t| !t.contains(r#""throttle":0.5"#)),
        "only the newest match of a batch is sent: {seen:?}"
    );

    // Only AI cars from now on: after stale_after_ms the fallback comes back.
    let fresh_until = Instant::now();
    running.push(vec![car(2, false, "AI", 1.0)]).await;
    let seen = texts_until(&mut client, |t| t == NO_PLAYER).await;
    let stale_after = fresh_until.elapsed();
    assert!(
        stale_after >= Duration::from_millis(300),
        "fallback only once the record is stale ({stale_after:?})"
    );
    assert!(seen[..seen.len() - 1]
        .iter()
        .all(|t| t.contains("Player One")));

    // A second client gets the current message at once and then the ticks.
    let mut second = running.connect_path("/").await;
    assert_eq!(next_text(&mut second, WAIT).await, NO_PLAYER);

    running.finish().await.unwrap();
    for client in [&mut client, &mut second] {
        let closed = texts_or_close(client).await;
        assert!(closed, "clients get a close frame when the sink stops");
    }
}

/// Skip texts until a close frame (true) or the end of the stream (false).
async fn texts_or_close(client: &mut Client) -> bool {
    loop {
        match tokio::time::timeout(WAIT, client.next()).await {
            Ok(Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => continue,
            _ => return false,
        }
    }
}

#[tokio::test]
async fn table_mode_is_a_sorted_timing_tower() {
    let options = r#"
mode = "table"
interval_ms = 40
kinds = ["standing"]
key = "car"
sort_by = "position"
fallback = { status = "no standings yet" }
[fields]
pos = "position"
car = "car"
name = "driver_name"
"#;
    let running = start::<JsonWsConfig>(options, "/").await;
    let mut client = running.connect_path("/").await;
    assert_eq!(
        next_text(&mut client, WAIT).await,
        r#"{"status":"no standings yet"}"#
    );
    running
        .push(vec![
            standing(7, 2, "Bea"),
            standing(3, 1, "Ann"),
            car(1, true, "not a standing", 0.0),
            standing(9, 3, "Cid"),
        ])
        .await;
    let expected = r#"[{"pos":1,"car":3,"name":"Ann"},{"pos":2,"car":7,"name":"Bea"},{"pos":3,"car":9,"name":"Cid"}]"#;
    texts_until(&mut client, |t| t == expected).await;

    // Car 7 overtakes car 3: the newest record per car replaces its row.
    running
        .push(vec![standing(7, 1, "Bea"), standing(3, 2, "Ann")])
        .await;
    let seen = texts_until(&mut client, |t| t.starts_with(r#"[{"pos":1,"car":7"#)).await;
    let last: Value = serde_json::from_str(seen.last().unwrap()).unwrap();
    assert_eq!(
        last,
        json!([
            {"pos": 1, "car": 7, "name": "Bea"},
            {"pos": 2, "car": 3, "name": "Ann"},
            {"pos": 3, "car": 9, "name": "Cid"}
        ])
    );
    running.finish().await.unwrap();
}

#[tokio::test]
async fn each_mode_forwards_every_record_to_every_client() {
    let running = start::<JsonWsConfig>("mode = \"each\"\nkinds = [\"json\"]", "/").await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(running.connect_path("/").await);
    }
    // Every client is registered before records flow (a ping round trip each).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let events: Vec<Event> = (0..20).map(|n| json_event(n, 3)).collect();
    running.push(events[..10].to_vec()).await;
    running.push(events[10..].to_vec()).await;
    for client in &mut clients {
        for n in 0..20 {
            let text = next_text(client, WAIT).await;
            assert_eq!(text, format!(r#"{{"n":{n},"pad":"xxx"}}"#));
        }
    }
    running.finish().await.unwrap();
}

#[tokio::test]
async fn a_client_that_never_reads_stalls_neither_the_others_nor_the_pipeline() {
    let running = start::<JsonWsConfig>("mode = \"each\"", "/").await;
    // Connected, but never reads a byte.
    let _asleep = running.connect_path("/").await;
    let mut reader = running.connect_path("/").await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // 2,000 messages of 32 KiB (64 MB): far more than the sleeper's socket buffers and
    // queue hold. Pushed a chunk at a time, each once the reader has the one before, so
    // that the reader never falls behind on its own, however busy the machine: what is
    // tested is that the sleeper holds up neither the reader nor the pipeline.
    const MESSAGES: u64 = 2000;
    const CHUNK: u64 = 50;
    let (progress, mut received_so_far) = tokio::sync::watch::channel(0u64);
    let pushing = {
        let input = running.input.clone();
        tokio::spawn(async move {
            for chunk in 0..MESSAGES / CHUNK {
                let batch: Vec<Event> = (chunk * CHUNK..(chunk + 1) * CHUNK)
                    .map(|n| json_event(n, 32 * 1024))
                    .collect();
                input
                    .push(Arc::new(batch), pitwall_api::WhenFull::Block)
                    .await;
                let reader_caught_up = received_so_far.wait_for(|n| *n >= (chunk + 1) * CHUNK);
                tokio::time::timeout(Duration::from_secs(30), reader_caught_up)
                    .await
                    .expect("the reader was held up")
                    .expect("the reader is running");
            }
        })
    };
    let mut received = 0;
    while received < MESSAGES {
        let text = next_text(&mut reader, Duration::from_secs(30)).await;
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value["n"], received,
            "the reader gets every message, in order"
        );
        received += 1;
        progress.send_replace(received);
    }
    tokio::time::timeout(Duration::from_secs(10), pushing)
        .await
        .expect("the pipeline was never held up")
        .unwrap();
    assert!(
        running.metrics.snapshot().discarded > 0,
        "the sleeper's oldest messages were dropped for it"
    );
    running.finish().await.unwrap();
}

#[tokio::test]
async fn whole_records_without_fields_and_the_client_limit() {
    let running = start::<JsonWsConfig>("max_clients = 1\nfilter = { car = 3 }", "/").await;
    let mut client = running.connect_path("/").await;
    running
        .push(vec![standing(3, 1, "Ann"), standing(4, 2, "Bob")])
        .await;
    let text = next_text(&mut client, WAIT).await;
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["car"], 3);
    assert_eq!(value["driver_name"], "Ann");
    assert_eq!(value["session_key"], "s", "the record's own fields, whole");
    assert!(value.get("kind").is_none());

    let refused = tokio_tungstenite::connect_async(format!("ws://{}/", running.address)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    running.finish().await.unwrap();
}
