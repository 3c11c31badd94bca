//! Light gate to browser: a gate message published to a real Mosquitto broker on loopback,
//! through the `mqtt` source, `race_control` and the `dashboard` sink of the real binary, to
//! `lap_finish` received by WebSocket clients, with 1 + 100 browsers connected. Printed: the
//! time to the first browser that shows the lap, to each browser (every browser's every
//! lap, pooled), and until every browser shows it.
//!
//!     cargo bench --bench gate_latency          # needs Debian's `mosquitto`
//!     BROWSERS=0 cargo bench --bench gate_latency

#[path = "../tests/support/mqtt.rs"]
mod mqtt;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(30);
const BROWSERS: usize = 100;
const GATES: usize = 400;

/// A browser's socket as the load generator models it. Tungstenite zeroes its whole read
/// buffer (128 KiB by default) before every read; 100 such clients would spend more CPU on
/// that than the server spends on them, on the same two cores. A page reads a few hundred
/// bytes per lap, so 4 KiB is plenty.
fn browser_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4 * 1024)
}

async fn connect(url: &str) -> Result<Browser, tokio_tungstenite::tungstenite::Error> {
    tokio_tungstenite::connect_async_with_config(url, Some(browser_config()), true)
        .await
        .map(|(socket, _)| socket)
}

type Browser =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

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
    let mut controller = loop {
        match connect(&url).await {
            Ok(socket) => break socket,
            Err(_) => {
                assert!(started.elapsed() < PATIENCE, "the dashboard never came up");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    controller.send(Message::text("start")).await.unwrap();
    wait_for(&mut controller, "start_race").await;
    // Every browser, the one that pressed START included, reads everything as a page does
    // and notes when each `lap_finish` arrived.
    let browsers = browsers();
    let (arrived, mut arrivals) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let mut sockets = vec![controller];
    for _ in 1..browsers {
        sockets.push(connect(&url).await.unwrap());
    }
    for mut socket in sockets {
        let arrived = arrived.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message {
                    if text.contains("\"type\":\"lap_finish\"") {
                        let _ = arrived.send(Instant::now());
                    }
                }
            }
        });
    }

    let mut options = rumqttc::MqttOptions::new("gate", "127.0.0.1", broker_port);
    options.set_keep_alive(Duration::from_secs(5));
    let (gate, mut events) = rumqttc::AsyncClient::new(options, 100);
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    events.set_network_options(network);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (mut first, mut every, mut last) = (Vec::new(), Vec::new(), Vec::new());
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
        let mut lap = Vec::with_capacity(browsers);
        while lap.len() < browsers {
            match tokio::time::timeout(PATIENCE, arrivals.recv()).await {
                Ok(Some(at)) => lap.push(at.duration_since(sent).as_secs_f64() * 1e3),
                _ => panic!("lap {i}: only {} of {browsers} browsers got it", lap.len()),
            }
        }
        lap.sort_by(f64::total_cmp);
        first.push(lap[0]);
        last.push(lap[browsers - 1]);
        every.extend(lap);
    }
    let others = browsers - 1;
    for (what, values) in [
        ("to the first browser to show it", &mut first),
        ("to each browser", &mut every),
        ("until every browser shows it", &mut last),
    ] {
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() as f64 * q) as usize).min(values.len() - 1)];
        println!(
            "gate_latency/1+{others}_browsers: gate published -> lap_finish {what}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({GATES} gates)",
            at(0.5),
            at(0.99),
            values[values.len() - 1]
        );
    }
    let _ = child.kill().await;
}

/// Browsers connected: 1 + `BROWSERS` (default 100).
fn browsers() -> usize {
    1 + std::env::var("BROWSERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(BROWSERS)
}

async fn wait_for(socket: &mut Browser, kind: &str) {
    let pattern = format!("\"type\":\"{kind}\"");
    loop {
        match tokio::time::timeout(PATIENCE, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) if text.contains(&pattern) => return,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no {kind}: {other:?}"),
        }
    }
}
