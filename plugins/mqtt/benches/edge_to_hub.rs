//! Edge to hub through a real broker: how many records per second the `mqtt` sink (edge)
//! gets through a local Mosquitto to the `mqtt` source (hub), with the protobuf batches of
//! `payload = "protobuf"` against one JSON message per record; and how many bytes each
//! record kind takes on the wire in both encodings. The numbers are written down in
//! `pipelines/edge-to-hub/README.md`.
//!
//! `cargo bench -p pitwall-mqtt --bench edge_to_hub` (needs Debian's `mosquitto`; set
//! `MOSQUITTO` to use another binary). Both components run in this process on a 2-worker
//! runtime; the broker is a separate process, as it would be.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pitwall_api::record::{CarPosition, GateTrigger, Lap, RaceControlMessage, Session, Standing};
use pitwall_api::testing::{build_context, parse_config};
use pitwall_api::wire;
use pitwall_api::{CarTelemetry, ComponentConfig, Event, Record, WhenFull};
use pitwall_mqtt::sink::MqttSinkConfig;
use pitwall_mqtt::source::MqttSourceConfig;

const BATCH: usize = 1000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Mosquitto on `port`, killed on drop.
struct Broker(Child, std::path::PathBuf);

impl Broker {
    fn start(port: u16) -> Broker {
        let config = std::env::temp_dir().join(format!("pitwall-bench-mosquitto-{port}.conf"));
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n"
            ),
        )
        .unwrap();
        let binary = std::env::var("MOSQUITTO").unwrap_or_else(|_| "/usr/sbin/mosquitto".into());
        let broker = Broker(
            Command::new(binary)
                .arg("-c")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mosquitto is installed (Debian package `mosquitto`)"),
            config,
        );
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return broker;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("mosquitto did not start");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_file(&self.1);
    }
}

fn telemetry(i: u32) -> Event {
    let f = i as f32;
    Event::new(
        1_760_000_000_000_000_000 + i64::from(i) * 1_000_000,
        Record::CarTelemetry(Arc::new(CarTelemetry {
            game: "assetto_corsa".into(),
            session: format!("rig-{}", i % 8).into(),
            car_id: (i % 8) as i32,
            is_player: true,
            monotonic_ns: u64::from(i) * 16_666_667,
            car_model: Some("ks_mazda_mx5_cup".into()),
            track: Some("magione".into()),
            speed_kmh: 80.0 + (f * 0.37) % 90.0,
            throttle: (f * 0.013) % 1.0,
            brake: (f * 0.007) % 1.0,
            steering: ((f * 0.01) % 2.0) - 1.0,
            gear: (i % 6) as i32,
            rpm: 3000.0 + (f * 7.0) % 4000.0,
            max_rpm: 7500.0,
            acc_g: [0.1 * (f % 7.0), 1.01, -0.2],
            velocity: [f % 30.0, 0.01, 20.0],
            angular_velocity: [0.01, 0.2 + f % 1.0, 0.003],
            tyre_slip: [0.01, 0.02, 0.03, 0.04 + f % 0.5],
            tyre_temp_c: [70.0 + f % 10.0, 71.0, 72.0, 73.0],
            tyre_load: [2500.0, 2600.0, 2700.0, 2800.0 + f],
            suspension_travel: [0.05, 0.051, 0.052, 0.053],
            position: [f * 0.5, 1.0, -f * 0.25],
            status: 2,
            completed_laps: (i / 600) as i32,
            place: 1 + (i % 8) as i32,
            spline: (f / 600.0) % 1.0,
            current_lap_s: Some((i % 600) as f32 / 60.0),
            last_lap_s: Some(61.25),
            best_lap_s: Some(60.5),
            lap_time_s: Some((i % 600) as f32 / 60.0),
            delta_lap_s: -0.125,
            ..CarTelemetry::default()
        })),
    )
}

/// One typical record of the kinds that matter for sizes.
fn samples() -> Vec<(&'static str, Event)> {
    let session: Arc<str> = "ac.server1.20251009T190000".into();
    vec![
        ("car_telemetry", telemetry(12_345)),
        (
            "position",
            Event::new(
                1_760_000_000_123_000_000,
                Record::Position(CarPosition {
                    session_key: session.clone(),
                    car: 7,
                    x: -512.25,
                    y: 1024.5,
                    z: 3.125,
                    spline: Some(0.4375),
                }),
            ),
        ),
        (
            "standing",
            Event::new(
                1_760_000_000_123_000_000,
                Record::Standing(Arc::new(Standing {
                    session_key: session.clone(),
                    car: 7,
                    position: 3,
                    driver_name: Some("Ana Lima".into()),
                    driver_guid: Some("76561198000000000".into()),
                    car_model: Some("ks_mazda_mx5_cup".into()),
                    gap: Some("+1.234".into()),
                    laps: 12,
                    best_lap_s: Some(101.523),
                    last_lap_s: Some(102.001),
                })),
            ),
        ),
        (
            "lap",
            Event::new(
                1_760_000_000_123_000_000,
                Record::Lap(Arc::new(Lap {
                    session_key: session.clone(),
                    driver_number: 7,
                    lap_number: 12,
                    lap_duration: Some(101.523),
                    duration_sector_1: Some(33.1),
                    duration_sector_2: Some(34.2),
                    duration_sector_3: Some(34.223),
                    ..Lap::default()
                })),
            ),
        ),
        (
            "gate_trigger",
            Event::new(
                1_760_000_000_123_000_000,
                Record::GateTrigger(GateTrigger {
                    lane: 2,
                    gate_time_ns: Some(1_760_000_000_122_990_000),
                }),
            ),
        ),
        (
            "race_control (JSON body)",
            Event::new(
                1_760_000_000_123_000_000,
                Record::RaceControl(Arc::new(RaceControlMessage {
                    session_key: session.clone(),
                    category: Some("Flag".into()),
                    flag: Some("YELLOW".into()),
                    scope: Some("Sector".into()),
                    sector: Some(3),
                    message: Some("YELLOW IN TRACK SECTOR 3".into()),
                    ..RaceControlMessage::default()
                })),
            ),
        ),
        (
            "session (JSON body)",
            Event::new(
                1_760_000_000_123_000_000,
                Record::Session(Arc::new(Session {
                    session_key: session,
                    session_name: Some("Race".into()),
                    location: Some("Magione".into()),
                    ..Session::default()
                })),
            ),
        ),
    ]
}

fn print_sizes() {
    println!("\nBytes per record (protobuf: one envelope in a batch; JSON: the sink's payload = \"json\" message)");
    println!(
        "{:<26} {:>9} {:>9} {:>7}",
        "kind", "protobuf", "JSON", "ratio"
    );
    for (name, event) in samples() {
        let protobuf = wire::encode_batch(std::slice::from_ref(&event)).len();
        let json = serde_json::to_vec(&event.record).unwrap().len();
        println!(
            "{name:<26} {protobuf:>9} {json:>9} {:>6.1}x",
            json as f64 / protobuf as f64
        );
    }
}

/// Encode and decode speed of the wire format on one core (what an edge and a hub spend).
fn print_codec_speed() {
    let events: Vec<Event> = (0..100_000).map(telemetry).collect();
    let started = Instant::now();
    let messages: Vec<Vec<u8>> = events.chunks(BATCH).map(wire::encode_batch).collect();
    let encode = started.elapsed();
    let bytes: usize = messages.iter().map(Vec::len).sum();
    let started = Instant::now();
    let mut decoder = wire::Decoder::default();
    let mut out = Vec::with_capacity(BATCH);
    let mut count = 0;
    for message in &messages {
        out.clear();
        count += decoder.decode_into(message, &mut out).unwrap().events;
    }
    let decode = started.elapsed();
    assert_eq!(count, events.len());
    let started = Instant::now();
    let json: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(&e.record).unwrap())
        .collect();
    let json_encode = started.elapsed();
    let started = Instant::now();
    for message in &json {
        let _: Record = serde_json::from_slice(message).unwrap();
    }
    let json_decode = started.elapsed();
    let rate = |d: Duration| events.len() as f64 / d.as_secs_f64();
    println!(
        "\nCodec on one core, car_telemetry ({} records)",
        events.len()
    );
    println!(
        "  protobuf: encode {:>10.0} records/s, decode {:>10.0} records/s, {:.0} bytes/record",
        rate(encode),
        rate(decode),
        bytes as f64 / events.len() as f64
    );
    println!(
        "  JSON:     encode {:>10.0} records/s, decode {:>10.0} records/s, {:.0} bytes/record",
        rate(json_encode),
        rate(json_decode),
        json.iter().map(Vec::len).sum::<usize>() as f64 / events.len() as f64
    );
}

/// How many messages the sink makes of `events` fed in batches of BATCH (protobuf).
fn protobuf_messages(events: &[Event], cap: usize) -> (usize, usize) {
    let mut messages = 0;
    let mut bytes = 0;
    for batch in events.chunks(BATCH) {
        let mut current = 0;
        for event in batch {
            let size = wire::append_event(&mut Vec::new(), event).unwrap();
            if current > 0 && current + size > cap {
                messages += 1;
                current = 0;
            }
            current += size;
            bytes += size;
        }
        if current > 0 {
            messages += 1;
        }
    }
    (messages, bytes)
}

/// Edge sink -> broker -> hub source for `count` telemetry records; returns records/s.
async fn through_broker(port: u16, payload: &str, count: u32, cap: usize) -> f64 {
    let topic = format!("bench/{payload}/records");
    let source: MqttSourceConfig = parse_config(&format!(
        "url = \"mqtt://127.0.0.1:{port}\"\ntopics = [\"{topic}\"]\nemit = \"records\"\npayload = \"{payload}\""
    ));
    let sink: MqttSinkConfig = parse_config(&format!(
        "url = \"mqtt://127.0.0.1:{port}\"\ntopic = \"{topic}\"\npayload = \"{payload}\"\nmax_message_bytes = {cap}\nmax_buffered = 1000000\nflush_timeout_ms = 60000"
    ));
    let mut hub = source.build(&build_context("hub", ".")).unwrap();
    let mut hub_wiring = pitwall_api::testing::wire("hub", false);
    let hub_output = hub_wiring.output.clone();
    let hub_shutdown = hub_wiring.io.shutdown.clone();
    let hub_task = tokio::spawn(async move { hub.run(&mut hub_wiring.io).await.is_ok() });
    tokio::time::sleep(Duration::from_millis(1000)).await; // connected and subscribed

    let events: Vec<Event> = (0..count).map(telemetry).collect();
    let mut edge = sink.build(&build_context("edge", ".")).unwrap();
    let mut edge_wiring = pitwall_api::testing::wire("edge", true);
    let edge_input = edge_wiring.input.clone().unwrap();
    let edge_task = tokio::spawn(async move { edge.run(&mut edge_wiring.io).await.is_ok() });
    tokio::time::sleep(Duration::from_millis(300)).await; // connected

    let started = Instant::now();
    let feeder = tokio::spawn(async move {
        for batch in events.chunks(BATCH) {
            edge_input
                .push(Arc::new(batch.to_vec()), WhenFull::Block)
                .await;
        }
        edge_input.close();
    });
    let mut received = 0usize;
    while received < count as usize {
        match tokio::time::timeout(Duration::from_secs(60), hub_output.pop()).await {
            Ok(Some(batch)) => received += batch.len(),
            _ => panic!("{payload}: only {received} of {count} arrived"),
        }
    }
    let elapsed = started.elapsed();
    feeder.await.unwrap();
    assert!(edge_task.await.unwrap());
    hub_shutdown.trigger();
    assert!(hub_task.await.unwrap());
    count as f64 / elapsed.as_secs_f64()
}

/// Messages a plain subscriber counts on `filter` until `stop` is set: (messages, bytes).
fn count_messages(
    port: u16,
    filter: &str,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(usize, usize)> {
    use std::sync::atomic::Ordering;
    let mut options =
        rumqttc::MqttOptions::new(format!("bench-{}", fastrand::u32(..)), "127.0.0.1", port);
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    let filter = filter.to_string();
    tokio::spawn(async move {
        client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .await
            .unwrap();
        let (mut messages, mut bytes) = (0, 0);
        while !stop.load(Ordering::SeqCst) {
            if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) =
                tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await
            {
                messages += 1;
                bytes += p.payload.len();
            }
        }
        (messages, bytes)
    })
}

/// A live edge: `rigs` streams at 60 Hz, each frame its own input batch (as `assetto_grpc`
/// sends them), for `seconds`; returns the messages per second the broker sees.
async fn live_edge(port: u16, rigs: u32, seconds: u32, linger_ms: u64) -> (f64, f64) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let topic = format!("live/{linger_ms}");
    let stop = Arc::new(AtomicBool::new(false));
    let counter = count_messages(port, &topic, stop.clone());
    let sink: MqttSinkConfig = parse_config(&format!(
        "url = \"mqtt://127.0.0.1:{port}\"\ntopic = \"{topic}\"\npayload = \"protobuf\"\nlinger_ms = {linger_ms}"
    ));
    let mut edge = sink.build(&build_context("edge", ".")).unwrap();
    let mut wiring = pitwall_api::testing::wire("edge", true);
    let input = wiring.input.clone().unwrap();
    let task = tokio::spawn(async move { edge.run(&mut wiring.io).await.is_ok() });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frames = rigs * 60 * seconds;
    let period = Duration::from_secs_f64(1.0 / f64::from(rigs * 60));
    let started = tokio::time::Instant::now();
    for i in 0..frames {
        tokio::time::sleep_until(started + period * i).await;
        input
            .push(Arc::new(vec![telemetry(i)]), WhenFull::Block)
            .await;
    }
    input.close();
    assert!(task.await.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let (messages, _bytes) = counter.await.unwrap();
    (
        messages as f64 / f64::from(seconds),
        f64::from(frames) / messages.max(1) as f64,
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    print_sizes();
    print_codec_speed();

    let port = free_port();
    let _broker = Broker::start(port);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("\nThrough Mosquitto on loopback, QoS 1, car_telemetry, input batches of {BATCH}");
    let cap = 256 * 1024;
    let count = 300_000;
    let rate = runtime.block_on(through_broker(port, "protobuf", count, cap));
    let events: Vec<Event> = (0..count).map(telemetry).collect();
    let (messages, bytes) = protobuf_messages(&events, cap);
    let seconds = f64::from(count) / rate;
    println!(
        "  protobuf batches (max_message_bytes = {cap}): {rate:>9.0} records/s, {:>7.0} messages/s, {:.1} MB/s, {:.0} records/message",
        messages as f64 / seconds,
        bytes as f64 / seconds / 1e6,
        f64::from(count) / messages as f64
    );
    let count = 60_000;
    let rate = runtime.block_on(through_broker(port, "json", count, cap));
    let bytes: usize = events[..count as usize]
        .iter()
        .map(|e| serde_json::to_vec(&e.record).unwrap().len())
        .sum();
    println!(
        "  JSON, one record per message:               {rate:>9.0} records/s, {rate:>7.0} messages/s, {:.1} MB/s",
        bytes as f64 / (f64::from(count) / rate) / 1e6
    );

    let rigs = 24;
    println!(
        "\nA live edge: {rigs} rigs at 60 Hz ({} records/s), each frame its own input batch",
        rigs * 60
    );
    for linger_ms in [0, 20, 50] {
        let (per_second, records) = runtime.block_on(live_edge(port, rigs, 5, linger_ms));
        println!(
            "  linger_ms = {linger_ms:>2}: {per_second:>6.0} messages/s, {records:>5.1} records/message"
        );
    }
}
