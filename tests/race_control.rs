//! Slot-car race control end to end: the real binary runs race control between a real
//! Mosquitto broker and the dashboard WebSocket; the test speaks the original page's
//! protocol (FORMATS.md section 7), publishes light-gate messages, listens for `GO`, and takes
//! the broker away mid-race.

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use support::mqtt::{publish, Mosquitto};
use support::{free_port, Running, Workspace, PATIENCE};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Read dashboard messages until one of `kind` arrives; returns it and everything before.
async fn until(socket: &mut Socket, kind: &str) -> (Value, Vec<Value>) {
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let left = PATIENCE.saturating_sub(started.elapsed());
        let message = tokio::time::timeout(left, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} message; saw {seen:?}"));
        let Some(Ok(Message::Text(text))) = message else {
            continue;
        };
        let value: Value = serde_json::from_str(&text).expect("dashboard messages are JSON");
        if value["type"] == kind {
            return (value, seen);
        }
        seen.push(value);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_to_laps_with_go_bounces_and_a_broker_outage() {
    let (broker_port, web_port) = (free_port(), free_port());
    let broker = Mosquitto::start(broker_port).await;
    let workspace = Workspace::new();
    workspace.write_pipeline(&format!(
        r#"
[sources.gates]
type = "mqtt"
url = "mqtt://127.0.0.1:{broker_port}"
topics = ["carrera/track{{lane}}/finish"]
emit = "gate_trigger"

[transforms.race]
type = "race_control"
inputs = ["gates", {{ from = "dashboard", when_full = "drop_oldest" }}]
light_interval_ms = 100
hold_min_ms = 100
hold_max_ms = 200
min_lap_ms = 300

[sinks.dashboard]
type = "dashboard"
inputs = ["race"]
address = "127.0.0.1:{web_port}"

[sinks.go]
type = "mqtt"
inputs = ["race"]
url = "mqtt://127.0.0.1:{broker_port}"
topic = "carrera/race/start"
kinds = ["command"]
text = "GO"
"#
    ));
    let running = Running::start(&workspace).await;

    // Someone listening for GO, as the track's start relay would.
    let mut options = rumqttc::MqttOptions::new("go-listener", "127.0.0.1", broker_port);
    options.set_keep_alive(Duration::from_secs(5));
    let (listener, mut listener_events) = rumqttc::AsyncClient::new(options, 10);
    listener
        .subscribe("carrera/race/start", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let (go_tx, mut go_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = listener_events.poll().await {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish)) = event {
                let _ = go_tx.send(String::from_utf8_lossy(&publish.payload).to_string());
            }
        }
    });

    let url = format!("ws://127.0.0.1:{web_port}/ws");
    let started = Instant::now();
    let mut socket = loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((socket, _)) => break socket,
            Err(_) => {
                assert!(started.elapsed() < PATIENCE, "{}", running.stderr());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let (state, _) = until(&mut socket, "full_state").await;
    assert_eq!(state["status"], "idle");
    // The subscription must be in place before lights out.
    tokio::time::sleep(Duration::from_millis(300)).await;

    socket.send(Message::text("start")).await.unwrap();
    let (_, before) = until(&mut socket, "lights_out").await;
    let lights: Vec<u64> = before
        .iter()
        .filter(|m| m["type"] == "light")
        .map(|m| m["light_id"].as_u64().unwrap())
        .collect();
    assert_eq!(lights, [1, 2, 3, 4, 5], "five lights, in order");
    until(&mut socket, "start_race").await;
    let go = tokio::time::timeout(PATIENCE, go_rx.recv())
        .await
        .expect("GO is published");
    assert_eq!(go.as_deref(), Some("GO"));

    // A lap, then a bounce of the same gate: one lap_finish, one rejection.
    tokio::time::sleep(Duration::from_millis(350)).await;
    publish(broker_port, "carrera/track1/finish", "").await;
    let (lap, _) = until(&mut socket, "lap_finish").await;
    assert_eq!(lap["track"], 1);
    let first_lap = lap["lap_time_sec"].as_f64().unwrap();
    assert!((0.3..10.0).contains(&first_lap), "{first_lap}");
    publish(broker_port, "carrera/track1/finish", "").await;
    let (rejected, _) = until(&mut socket, "lap_rejected").await;
    assert_eq!(rejected["track"], 1);

    // The broker goes away: every dashboard is told.
    broker.stop().await;
    let (status, _) = until(&mut socket, "status").await;
    let text = status["message"].as_str().unwrap();
    assert!(text.contains("unreachable"), "{text}");

    // It comes back: timing resumes.
    let _broker = Mosquitto::start(broker_port).await;
    let (status, _) = until(&mut socket, "status").await;
    assert!(
        status["message"].as_str().unwrap().contains("connected"),
        "{status}"
    );
    publish(broker_port, "carrera/track1/finish", "").await;
    let (lap, _) = until(&mut socket, "lap_finish").await;
    assert_eq!(lap["track"], 1);

    socket.send(Message::text("stop")).await.unwrap();
    let (finished, _) = until(&mut socket, "race_finished").await;
    let laps = finished["track_1_laps"].as_array().unwrap();
    assert_eq!(laps.len(), 2, "{finished}");
    assert_eq!(
        finished["track_1_fastest"].as_f64(),
        laps.iter().filter_map(Value::as_f64).reduce(f64::min)
    );
    assert_eq!(finished["track_2_laps"], serde_json::json!([]));
    running.stop().await;
}
