//! Scale-out through a broker end to end: edge instances of the real binary replay a
//! recording and publish it to a real Mosquitto in the protobuf wire format, hub instances
//! subscribe and record what they get; what the hubs record is what the edges read.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pitwall_api::record::{CarPosition, Point};
use pitwall_api::record::{
    Chat, Collision, Connection, Driver, GateTrigger, Lap, Session, Standing, TrackLayout,
};
use pitwall_api::{CarTelemetry, Event, Record};
use support::mqtt::Mosquitto;
use support::{free_port, wait_until, PATIENCE};

/// One pitwall-flow process running a pipeline file with its own environment.
struct Instance {
    name: &'static str,
    child: tokio::process::Child,
    stderr: Arc<Mutex<String>>,
}

impl Instance {
    fn start(name: &'static str, pipeline: &Path, env: &[(&str, String)]) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pitwall-flow"))
            .arg("run")
            .arg(pipeline)
            .arg("--no-watch")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        let stderr = support::capture_stderr(&mut child);
        Self {
            name,
            child,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    async fn wait_for_log(&self, text: &str) {
        let started = Instant::now();
        while !self.stderr().contains(text) {
            assert!(
                started.elapsed() < PATIENCE,
                "{} never logged `{text}`; stderr:\n{}",
                self.name,
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Wait for the process to exit on its own, successfully.
    async fn finishes(mut self) {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not finish; stderr:\n{}", self.name, self.stderr()))
            .unwrap();
        assert!(
            status.success(),
            "{} failed; stderr:\n{}",
            self.name,
            self.stderr()
        );
    }

    /// SIGTERM, then wait for a clean exit (sinks drained and files closed).
    async fn stop(self) {
        let pid = self.child.id().expect("still running");
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        self.finishes().await;
    }
}

/// One edge's recording: a session with its drivers, two rigs' telemetry at 60 Hz, a
/// server's standings, laps, positions and the odd connection, collision, chat, gate trigger
/// and raw JSON, in time order. `edge` makes its session key and values its own.
fn recording(edge: u32, telemetry_frames: u32) -> Vec<Event> {
    let session: Arc<str> = format!("league.{edge}.race").into();
    let t0 = 1_760_000_000_000_000_000i64 + i64::from(edge) * 1_000;
    let mut events = vec![
        Event::new(
            t0,
            Record::Session(Arc::new(Session {
                session_key: session.clone(),
                session_name: Some("Race".into()),
                location: Some("Magione".into()),
                ..Session::default()
            })),
        ),
        Event::new(
            t0,
            Record::TrackLayout(Arc::new(TrackLayout {
                // The first x names the edge (a layout carries no session in JSON).
                track_path: vec![
                    Point {
                        x: f64::from(edge),
                        y: -2.0,
                    },
                    Point { x: 3.0, y: 4.25 },
                ],
                ..TrackLayout::default()
            })),
        ),
        Event::new(
            t0,
            Record::Json(Arc::new(serde_json::json!({"edge": edge, "note": "hello"}))),
        ),
    ];
    for car in 0..2u32 {
        events.push(Event::new(
            t0 + 1,
            Record::Driver(Arc::new(Driver {
                session_key: session.clone(),
                driver_number: car,
                full_name: Some(format!("Driver {edge}-{car}")),
                ..Driver::default()
            })),
        ));
    }
    for i in 0..telemetry_frames {
        let f = i as f32;
        let car = i % 2;
        let t = t0 + 10 + i64::from(i) * 8_333_333;
        events.push(Event::new(
            t,
            Record::CarTelemetry(Arc::new(CarTelemetry {
                game: "assetto_corsa".into(),
                session: format!("rig-{edge}-{car}").into(),
                car_id: car as i32,
                is_player: true,
                monotonic_ns: u64::from(i / 2) * 16_666_667,
                car_model: Some("ks_mazda_mx5_cup".into()),
                track: Some("magione".into()),
                speed_kmh: 80.0 + (f * 0.37) % 90.0,
                throttle: (f * 0.013) % 1.0,
                brake: if i % 50 < 5 { 0.75 } else { 0.0 },
                steering: ((f * 0.01) % 2.0) - 1.0,
                gear: (i % 6) as i32,
                rpm: 3000.0 + (f * 7.0) % 4000.0,
                max_rpm: 7500.0,
                acc_g: [0.1 * (f % 7.0), 1.0, -0.2],
                velocity: [f % 30.0, 0.0, 20.0],
                tyre_temp_c: [70.0 + f % 10.0, 71.0, 72.0, 73.0],
                tyre_load: [2500.0, 2600.0, 2700.0, 2800.0 + f],
                position: [f * 0.5, 1.0, -f * 0.25],
                status: 2,
                completed_laps: (i / 600) as i32,
                place: 1 + car as i32,
                spline: (f / 600.0) % 1.0,
                current_lap_s: Some((i % 600) as f32 / 60.0),
                last_lap_s: (i >= 600).then_some(61.25),
                best_lap_s: (i >= 600).then_some(60.5),
                delta_lap_s: -0.125,
                ..CarTelemetry::default()
            })),
        ));
        if i % 60 == 59 {
            // Once a second: the server's view.
            for car in 0..2u32 {
                events.push(Event::new(
                    t,
                    Record::Standing(Arc::new(Standing {
                        session_key: session.clone(),
                        car,
                        position: car + 1,
                        driver_name: Some(format!("Driver {edge}-{car}")),
                        gap: (car > 0).then(|| format!("+{}.5", i / 60)),
                        laps: i / 600,
                        best_lap_s: (i >= 600).then_some(60.5),
                        ..Standing::default()
                    })),
                ));
                events.push(Event::new(
                    t,
                    Record::Position(CarPosition {
                        session_key: session.clone(),
                        car,
                        x: f64::from(i) * 0.5,
                        y: -3.0,
                        z: 1.0,
                        spline: Some(f64::from(i % 600) / 600.0),
                    }),
                ));
            }
        }
        if i % 600 == 599 {
            events.push(Event::new(
                t,
                Record::Lap(Arc::new(Lap {
                    session_key: session.clone(),
                    driver_number: car,
                    lap_number: i / 600 + 1,
                    lap_duration: Some(61.25),
                    duration_sector_1: Some(20.5),
                    is_pit_out_lap: Some(false),
                    ..Lap::default()
                })),
            ));
            events.push(Event::new(
                t,
                Record::GateTrigger(GateTrigger {
                    lane: edge * 10 + car,
                    gate_time_ns: Some(t - 1000),
                }),
            ));
        }
        if i == telemetry_frames / 2 {
            events.push(Event::new(
                t,
                Record::Collision(Arc::new(Collision {
                    session_key: session.clone(),
                    car: 0,
                    other_car: Some(1),
                    impact_speed_kmh: 23.5,
                    ..Collision::default()
                })),
            ));
            events.push(Event::new(
                t,
                Record::Chat(Arc::new(Chat {
                    session_key: session.clone(),
                    car: Some(1),
                    driver_name: Some(format!("Driver {edge}-1")),
                    message: "sorry, my fault".into(),
                })),
            ));
            events.push(Event::new(
                t,
                Record::Connection(Arc::new(Connection {
                    session_key: session.clone(),
                    car: 1,
                    connected: false,
                    ..Connection::default()
                })),
            ));
        }
    }
    events
}

fn write_ndjson(path: &Path, events: &[Event]) {
    let mut text = String::new();
    for event in events {
        text.push_str(&serde_json::to_string(event).unwrap());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn read_ndjson(path: &Path) -> Vec<Event> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("the hub writes whole events"))
        .collect()
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

/// Which edge a record of [`recording`] came from.
fn edge_of(event: &Event) -> u32 {
    match &event.record {
        Record::CarTelemetry(c) => c.session[4..5].parse().unwrap(),
        Record::Json(v) => v["edge"].as_u64().unwrap() as u32,
        Record::TrackLayout(t) => t.track_path[0].x as u32,
        Record::GateTrigger(g) => g.lane / 10,
        other => other.session_key().expect("a session")[7..8]
            .parse()
            .unwrap(),
    }
}

/// An edge pipeline: replay `records.ndjson` as fast as possible into the MQTT sink with
/// the options of the shipped `edge.toml` (its topic and client id from EDGE_ID), and exit
/// once the broker has acknowledged everything.
fn edge_pipeline(dir: &Path) -> PathBuf {
    let shipped = std::fs::read_to_string("pipelines/edge-to-hub/edge.toml").unwrap();
    let sink = &shipped[shipped
        .find("[sinks.hub]")
        .expect("edge.toml has sinks.hub")..];
    let sink = sink
        .replace("inputs = [\"rigs\", \"race\"]", "inputs = [\"replay\"]")
        // Smaller messages than the shipped 256 KiB, so that batches split.
        .replace("max_message_bytes = 262144", "max_message_bytes = 65536");
    assert!(sink.contains("payload = \"protobuf\""));
    let text = format!(
        r#"
[sources.replay]
type = "file"
path = "records.ndjson"
speed = 0

{sink}

[runtime]
exit_when_done = true
"#
    );
    let path = dir.join("edge.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_publish_through_mosquitto_and_the_hub_records_exactly_what_they_read() {
    let broker_port = free_port();
    let _broker = Mosquitto::start(broker_port).await;
    let broker_url = format!("mqtt://127.0.0.1:{broker_port}");

    // The hub: the shipped hub's subscription, recording everything as NDJSON.
    let hub_dir = tempfile::tempdir().unwrap();
    let hub_file = hub_dir.path().join("received.ndjson");
    std::fs::write(
        hub_dir.path().join("hub.toml"),
        r#"
[sources.edges]
type = "mqtt"
url = "${MQTT_URL}"
topics = ["pitwall/edge/+/records"]
qos = 1
emit = "records"
payload = "protobuf"

[sinks.log]
type = "file"
inputs = ["edges"]
path = "received.ndjson"
flush_every_ms = 100
"#,
    )
    .unwrap();
    let hub = Instance::start(
        "hub",
        &hub_dir.path().join("hub.toml"),
        &[("MQTT_URL", broker_url.clone())],
    );
    hub.wait_for_log("mqtt: subscribed").await;

    // Two edges, each with its own recording, publishing at the same time.
    let mut sent = Vec::new();
    let mut edges = Vec::new();
    let mut dirs = Vec::new();
    for (edge, frames) in [(1u32, 3000u32), (2, 1800)] {
        let dir = tempfile::tempdir().unwrap();
        let events = recording(edge, frames);
        write_ndjson(&dir.path().join("records.ndjson"), &events);
        let pipeline = edge_pipeline(dir.path());
        edges.push(Instance::start(
            if edge == 1 { "edge 1" } else { "edge 2" },
            &pipeline,
            &[
                ("MQTT_URL", broker_url.clone()),
                ("EDGE_ID", format!("rig-room-{edge}")),
            ],
        ));
        sent.push(events);
        dirs.push(dir);
    }
    for edge in edges {
        edge.finishes().await;
    }
    let expected = sent.iter().map(Vec::len).sum::<usize>();
    wait_until(&format!("the hub has {expected} records"), || {
        line_count(&hub_file) >= expected
    })
    .await;
    // Nothing more arrives (no duplicates).
    tokio::time::sleep(Duration::from_millis(500)).await;
    hub.stop().await;

    let received = read_ndjson(&hub_file);
    assert_eq!(received.len(), expected);
    // Each edge's records arrive complete, in order, with the edge's own event times.
    for (i, events) in sent.iter().enumerate() {
        let from_edge: Vec<Event> = received
            .iter()
            .filter(|e| edge_of(e) == i as u32 + 1)
            .cloned()
            .collect();
        assert_eq!(from_edge.len(), events.len(), "edge {}", i + 1);
        for (n, (got, want)) in from_edge.iter().zip(events).enumerate() {
            assert_eq!(got, want, "edge {}, record {n}", i + 1);
        }
    }
    let kinds: BTreeMap<&str, usize> = received.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e.kind().name()).or_default() += 1;
        m
    });
    assert_eq!(kinds["car_telemetry"], 4800);
    assert_eq!(kinds.len(), 12, "{kinds:?}");
}

/// Rows per record kind in the Parquet files of a hub's archive directory.
fn parquet_rows(dir: &Path) -> BTreeMap<String, i64> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut rows = BTreeMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".parquet") else {
            continue;
        };
        // `{kind}-{yyyymmddThhmmss}-{n}`
        let kind = stem.rsplitn(3, '-').nth(2).unwrap().to_string();
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name} is a whole Parquet file: {e}"));
        *rows.entry(kind).or_default() += reader.metadata().file_metadata().num_rows();
    }
    rows
}

async fn get_json(port: u16, path: &str) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{port}{path}");
    let started = Instant::now();
    loop {
        if let Ok(response) = reqwest::get(&url).await {
            if response.status().is_success() {
                return response.json().await.expect("JSON");
            }
        }
        assert!(started.elapsed() < PATIENCE, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_hub_scales_out_with_a_shared_subscription() {
    let broker_port = free_port();
    let _broker = Mosquitto::start(broker_port).await;
    let broker_url = format!("mqtt://127.0.0.1:{broker_port}");

    // Two instances of the shipped hub.toml, unchanged, sharing the edges' topics.
    let hub_pipeline = std::fs::canonicalize("pipelines/edge-to-hub/hub.toml").unwrap();
    let archives = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ports = [free_port(), free_port()];
    let hubs: Vec<Instance> = (0..2)
        .map(|i| {
            Instance::start(
                if i == 0 { "hub A" } else { "hub B" },
                &hub_pipeline,
                &[
                    ("MQTT_URL", broker_url.clone()),
                    ("HUB_TOPIC", "$share/hub/pitwall/edge/+/records".to_string()),
                    ("HUB_LISTEN", format!("127.0.0.1:{}", ports[i])),
                    (
                        "HUB_ARCHIVE",
                        archives[i].path().to_string_lossy().to_string(),
                    ),
                ],
            )
        })
        .collect();
    for hub in &hubs {
        hub.wait_for_log("mqtt: subscribed").await;
    }

    let dir = tempfile::tempdir().unwrap();
    let events = recording(3, 2400);
    write_ndjson(&dir.path().join("records.ndjson"), &events);
    Instance::start(
        "edge",
        &edge_pipeline(dir.path()),
        &[
            ("MQTT_URL", broker_url.clone()),
            ("EDGE_ID", "solo".to_string()),
        ],
    )
    .finishes()
    .await;

    // The timing tower: between them the hubs know both cars' standings.
    let started = Instant::now();
    loop {
        let mut cars = Vec::new();
        for port in ports {
            for standing in get_json(port, "/api/standings").await.as_array().unwrap() {
                cars.push(standing["car"].as_u64().unwrap());
            }
        }
        cars.sort();
        cars.dedup();
        if cars == [0, 1] {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "standings of {cars:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give the last messages time to land, then stop: the archives are closed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for hub in hubs {
        hub.stop().await;
    }

    let [a, b] = [
        parquet_rows(archives[0].path()),
        parquet_rows(archives[1].path()),
    ];
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for event in &events {
        *expected.entry(event.kind().name().to_string()).or_default() += 1;
    }
    let mut together = a.clone();
    for (kind, rows) in &b {
        *together.entry(kind.clone()).or_default() += rows;
    }
    assert_eq!(together, expected, "every record reached exactly one hub");
    let (rows_a, rows_b) = (a.values().sum::<i64>(), b.values().sum::<i64>());
    assert!(
        rows_a > 0 && rows_b > 0,
        "the broker shared the messages: {rows_a} + {rows_b}"
    );
}
