//! Light gate to browser: a gate message published to a real Mosquitto broker on loopback,
//! through the `mqtt` source, `race_control` and the `dashboard` sink of the real binary, to
//! `lap_finish` received by a WebSocket client, with 100 other browsers connected.
//! `cargo bench --bench gate_latency` (needs Debian's `mosquitto`).

#[path = "../tests/support/mqtt.rs"]
mod mqtt;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(30);
const BROWSERS: usize = 100;
const GATES: usize = 400;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let (broker_port, web_port) = (free_port(), free_port());
    let _broker = mqtt::Mosquitto::start(broker_port).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("race.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[sources.gates]
type = "mqtt"
url = "mqtt://127.0.0.1:{broker_port}"
topics = ["carrera/track{{lane}}/finish"]
emit = "gate_trigger"
qos = 0

[transforms.race]
type = "race_control"
inputs = ["gates", {{ from = "dashboard", when_full = "drop_oldest" }}]
light_interval_ms = 10
hold_min_ms = 10
hold_max_ms = 20
min_lap_ms = 1

[sinks.dashboard]
type = "dashboard"
inputs = ["race"]
address = "127.0.0.1:{web_port}"
max_clients = 1000
"#
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pitwall-flow"))
        .arg("run")
        .arg("--no-watch")
        .arg(&file)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("ws://127.0.0.1:{web_port}/ws");
    let started = Instant::now();
    let mut measuring = loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((socket, _)) => break socket,
            Err(_) => {
                assert!(started.elapsed() < PATIENCE, "the dashboard never came up");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // The other browsers read everything, as pages do.
    for _ in 0..BROWSERS {
        let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        tokio::spawn(async move { while let Some(Ok(_)) = socket.next().await {} });
    }
    measuring.send(Message::text("start")).await.unwrap();
    wait_for(&mut measuring, "start_race").await;

    let mut options = rumqttc::MqttOptions::new("gate", "127.0.0.1", broker_port);
    options.set_keep_alive(Duration::from_secs(5));
    let (gate, mut events) = rumqttc::AsyncClient::new(options, 100);
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    events.set_network_options(network);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut latencies = Vec::with_capacity(GATES);
    for i in 0..GATES {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let lane = 1 + i % 2;
        let sent = Instant::now();
        gate.publish(
            format!("carrera/track{lane}/finish"),
            rumqttc::QoS::AtMostOnce,
            false,
            Vec::new(),
        )
        .await
        .unwrap();
        wait_for(&mut measuring, "lap_finish").await;
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "gate_latency/{BROWSERS}_browsers: gate published -> lap_finish at a browser: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({GATES} gates)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3
    );
    let _ = child.kill().await;
}

async fn wait_for(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    kind: &str,
) {
    let pattern = format!("\"type\":\"{kind}\"");
    loop {
        match tokio::time::timeout(PATIENCE, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) if text.contains(&pattern) => return,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no {kind}: {other:?}"),
        }
    }
}
