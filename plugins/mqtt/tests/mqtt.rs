//! End-to-end tests of the `mqtt` source and sink against a real MQTT broker (rumqttd,
//! in-process on a loopback port), with real rumqttc clients publishing and subscribing, and
//! a TCP proxy that can be cut to make the broker go away.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pitwall_api::channel::Queue;
use pitwall_api::metrics::ComponentMetrics;
use pitwall_api::record::{GateTrigger, Lap, RaceControlMessage};
use pitwall_api::telemetry::CarTelemetry;
use pitwall_api::testing::{build_context, parse_config, wire};
use pitwall_api::{ComponentConfig, Event, Record, WhenFull};
use pitwall_mqtt::sink::MqttSinkConfig;
use pitwall_mqtt::source::MqttSourceConfig;
use rumqttc::{AsyncClient, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A rumqttd broker on a free loopback port, on its own threads until the process ends.
fn start_broker() -> SocketAddr {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let server = rumqttd::ServerSettings {
        name: "v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: rumqttd::ConnectionSettings {
            connection_timeout_ms: 5000,
            // Above the components' 1 MiB, to send them messages they must skip.
            max_payload_size: 4 << 20,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 200,
            max_segment_size: 4 << 20,
            max_segment_count: 10,
            ..Default::default()
        },
        v4: Some(HashMap::from([("v4".to_string(), server)])),
        ..Default::default()
    };
    std::thread::spawn(move || {
        let mut broker = rumqttd::Broker::new(config);
        let _ = broker.start();
    });
    for _ in 0..200 {
        if std::net::TcpStream::connect(listen).is_ok() {
            return listen;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("rumqttd did not start on {listen}");
}

/// A message as a test client received it.
#[derive(Debug, Clone)]
struct Received {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

/// The test's own MQTT client: publishes, and collects what its subscriptions receive.
struct Client {
    client: AsyncClient,
    received: mpsc::UnboundedReceiver<Received>,
    subacks: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Client {
    fn connect(broker: SocketAddr) -> Client {
        let mut options = MqttOptions::new(
            format!("test-{}", fastrand::u32(..)),
            broker.ip().to_string(),
            broker.port(),
        );
        // Big enough to publish messages over the components' 1 MiB limit.
        options.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (tx, received) = mpsc::unbounded_channel();
        let subacks = Arc::new(AtomicUsize::new(0));
        let task = {
            let subacks = subacks.clone();
            tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(rumqttc::Event::Incoming(Packet::Publish(p))) => {
                            let _ = tx.send(Received {
                                topic: p.topic,
                                payload: p.payload.to_vec(),
                                retain: p.retain,
                            });
                        }
                        Ok(rumqttc::Event::Incoming(Packet::SubAck(_))) => {
                            subacks.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        };
        Client {
            client,
            received,
            subacks,
            task,
        }
    }

    async fn subscribe(&self, filter: &str) {
        let before = self.subacks.load(Ordering::SeqCst);
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        for _ in 0..200 {
            if self.subacks.load(Ordering::SeqCst) > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no SubAck for {filter}");
    }

    async fn send(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .unwrap();
    }

    /// The next `n` messages, failing after `within`.
    async fn next(&mut self, n: usize, within: Duration) -> Vec<Received> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        while out.len() < n {
            match tokio::time::timeout_at(deadline, self.received.recv()).await {
                Ok(Some(message)) => out.push(message),
                _ => panic!("timed out after {} of {n} messages: {out:?}", out.len()),
            }
        }
        out
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A component running in a task; its output is read while it runs.
struct Running {
    input: Option<Arc<Queue>>,
    output: Arc<Queue>,
    metrics: Arc<ComponentMetrics>,
    shutdown: pitwall_api::shutdown::Shutdown,
    task: JoinHandle<Result<(), String>>,
    seen: Vec<Event>,
}

impl Running {
    fn start(config: &dyn ComponentConfig, with_input: bool) -> Running {
        assert!(config.check().is_empty(), "{:?}", config.check());
        let mut component = config.build(&build_context("mqtt", ".")).unwrap();
        let mut wiring = wire("mqtt", with_input);
        let (input, output) = (wiring.input.clone(), wiring.output.clone());
        let metrics = wiring.io.metrics.clone();
        let shutdown = wiring.io.shutdown.clone();
        let task = tokio::spawn(async move {
            component
                .run(&mut wiring.io)
                .await
                .map_err(|e| e.to_string())
        });
        Running {
            input,
            output,
            metrics,
            shutdown,
            task,
            seen: Vec::new(),
        }
    }

    /// Read output until `done` holds for what was seen so far, or fail after `within`.
    async fn until(&mut self, within: Duration, done: impl Fn(&[Event]) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        while !done(&self.seen) {
            match tokio::time::timeout_at(deadline, self.output.pop()).await {
                Ok(Some(batch)) => self.seen.extend(batch.iter().cloned()),
                Ok(None) => panic!("the output closed"),
                Err(_) => panic!("timed out; seen: {:#?}", self.seen),
            }
        }
    }

    async fn feed(&self, events: Vec<Event>) {
        let input = self.input.as_ref().expect("wired with an input");
        input.push(Arc::new(events), WhenFull::Block).await;
    }

    /// Sources: trigger shutdown. Sinks: end the input. Either must then return promptly.
    async fn stop(self) -> Vec<Event> {
        match &self.input {
            Some(input) => input.close(),
            None => self.shutdown.trigger(),
        }
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("stops promptly")
            .unwrap()
            .expect("ends without error");
        let mut seen = self.seen;
        seen.extend(pitwall_api::testing::drain(&self.output));
        seen
    }
}

fn source(options: &str) -> MqttSourceConfig {
    parse_config(options)
}

fn sink(options: &str) -> MqttSinkConfig {
    parse_config(options)
}

fn gates(events: &[Event]) -> Vec<(i64, GateTrigger)> {
    events
        .iter()
        .filter_map(|e| match &e.record {
            Record::GateTrigger(g) => Some((e.time_ns, g.clone())),
            _ => None,
        })
        .collect()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Publish a probe until `subscribed` holds: the source is then connected and subscribed.
async fn probe_until(
    client: &Client,
    running: &mut Running,
    topic: &str,
    subscribed: impl Fn(&Running) -> bool,
) {
    for _ in 0..100 {
        client.send(topic, "probe").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        while !running.output.is_empty() {
            if let Some(batch) = running.output.pop().await {
                running.seen.extend(batch.iter().cloned());
            }
        }
        if subscribed(running) {
            return;
        }
    }
    panic!("the source never subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_topics_become_gate_triggers_with_lanes_and_gate_times() {
    let broker = start_broker();
    let client = Client::connect(broker);
    let mut running = Running::start(
        &source(&format!(
            "url = \"mqtt://{broker}\"\ntopics = [\"carrera/track{{lane}}/finish\"]\nemit = \"gate_trigger\""
        )),
        false,
    );
    // A non-numeric lane is counted as an error: that also tells the subscription is live.
    probe_until(&client, &mut running, "carrera/trackX/finish", |r| {
        r.metrics.snapshot().errors > 0
    })
    .await;
    assert!(running.seen.is_empty(), "no record for trackX");
    let before = now_ns();
    client.send("carrera/track1/finish", "").await;
    client
        .send(
            "carrera/track2/finish",
            json!({"timestamp_ms": 1_716_728_400_123i64}).to_string(),
        )
        .await;
    client.send("carrera/lane1/finish", "").await;
    client.send("carrera/track1/finish", "1").await;
    running
        .until(Duration::from_secs(10), |seen| gates(seen).len() >= 3)
        .await;
    let after = now_ns();
    let metrics = running.metrics.clone();
    let events = running.stop().await;
    let found = gates(&events);
    let lanes: Vec<(u32, Option<i64>)> = found
        .iter()
        .map(|(_, g)| (g.lane, g.gate_time_ns))
        .collect();
    assert_eq!(
        lanes,
        vec![(1, None), (2, Some(1_716_728_400_123_000_000)), (1, None)]
    );
    for (time_ns, _) in &found {
        assert!(*time_ns >= before && *time_ns <= after, "receive time");
    }
    assert_eq!(events.len(), 3, "only gate triggers: {events:?}");
    let snapshot = metrics.snapshot();
    assert!(
        snapshot.discarded >= 1,
        "carrera/lane1/finish fits no pattern"
    );
    let errors = snapshot.errors;
    assert!(errors >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_with_wildcards_json_and_text_payloads() {
    let broker = start_broker();
    let client = Client::connect(broker);
    let mut running = Running::start(
        &source(&format!(
            "url = \"mqtt://{broker}\"\ntopics = [\"pits/#\", \"carrera/track{{lane}}/{{event}}\"]\nqos = 2"
        )),
        false,
    );
    probe_until(&client, &mut running, "pits/probe", |r| !r.seen.is_empty()).await;
    let probes = running.seen.len();
    client
        .send(
            "pits/lane/1",
            json!({"fuel": 12.5, "tyres": ["S", "M"]}).to_string(),
        )
        .await;
    client.send("pits/status", "box box").await;
    client.send("pits/bytes", vec![0xff, 0xfe, 0x00]).await;
    client.send("pits/count", "42").await;
    client.send("carrera/track2/finish", "").await;
    running
        .until(Duration::from_secs(10), |seen| seen.len() >= probes + 4)
        .await;
    let metrics = running.metrics.clone();
    let events = running.stop().await;
    let messages: Vec<Seen> = events[probes..]
        .iter()
        .map(|e| match &e.record {
            Record::MqttMessage(m) => (
                m.topic.clone(),
                m.fields.clone().into_iter().collect(),
                m.payload.clone(),
            ),
            other => panic!("not a message: {other:?}"),
        })
        .collect();
    let field = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(
        messages,
        vec![
            (
                "pits/lane/1".into(),
                vec![],
                json!({"fuel": 12.5, "tyres": ["S", "M"]})
            ),
            ("pits/status".into(), vec![], json!("box box")),
            ("pits/count".into(), vec![], json!(42)),
            (
                "carrera/track2/finish".into(),
                vec![field("event", "finish"), field("lane", "2")],
                json!("")
            ),
        ]
    );
    assert_eq!(metrics.snapshot().errors, 1, "the non-UTF-8 payload");
}

/// One message over `max_message_bytes` (1 MiB by default, as Mosquitto's clients send up
/// to 256 MiB) is skipped and counted; the connection stays up and the messages before
/// and after it all arrive. With the client's old packet limit the connection dropped and
/// reconnected, and what was sent meanwhile was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_max_message_bytes_is_skipped_and_the_connection_survives() {
    let broker = start_broker();
    let client = Client::connect(broker);
    let mut running = Running::start(
        &source(&format!(
            "url = \"mqtt://{broker}\"\ntopics = [\"carrera/track{{lane}}/finish\", \"probe\"]\nemit = \"message\"\nqos = 1"
        )),
        false,
    );
    probe_until(&client, &mut running, "probe", |r| !r.seen.is_empty()).await;
    let probes = running.seen.len();
    for n in 0..20u32 {
        client.send("carrera/track1/finish", n.to_string()).await;
        if n == 5 {
            client
                .send("carrera/track2/finish", vec![b'x'; (1 << 20) + 100 * 1024])
                .await;
        }
    }
    running
        .until(Duration::from_secs(10), |seen| seen.len() >= probes + 20)
        .await;
    // Nothing after the big one is lost, and no reconnect happened.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = running.metrics.clone();
    let events = running.stop().await;
    let payloads: Vec<Value> = events[probes..]
        .iter()
        .filter_map(|e| match &e.record {
            Record::MqttMessage(m) if m.topic.starts_with("carrera/") => Some(m.payload.clone()),
            Record::LinkStatus(link) => panic!("the connection dropped: {}", link.message),
            _ => None,
        })
        .collect();
    assert_eq!(payloads, (0..20).map(|n| json!(n)).collect::<Vec<_>>());
    assert_eq!(metrics.snapshot().discarded, 1, "the big message, counted");
    assert_eq!(metrics.snapshot().errors, 0);
}

/// A message record as (topic, captured fields, payload).
type Seen = (String, Vec<(String, String)>, Value);

fn lap(car: u32, lap_number: u32) -> Event {
    Event::new(
        5,
        Record::Lap(Arc::new(Lap {
            session_key: "9158".into(),
            driver_number: car,
            lap_number,
            ..Lap::default()
        })),
    )
}

fn lights_out() -> Event {
    Event::new(
        7,
        Record::RaceControl(Arc::new(RaceControlMessage {
            session_key: "carrera".into(),
            message: Some("lights out".into()),
            ..RaceControlMessage::default()
        })),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_publishes_json_records_and_fixed_text() {
    let broker = start_broker();
    let mut early = Client::connect(broker);
    early.subscribe("carrera/#").await;
    early.subscribe("f1/#").await;

    let laps = Running::start(
        &sink(&format!(
            "url = \"mqtt://{broker}\"\ntopic = \"f1/{{session_key}}/{{kind}}/{{car}}\"\nkinds = [\"lap\"]\nretain = true"
        )),
        true,
    );
    let go = Running::start(
        &sink(&format!(
            "url = \"mqtt://{broker}\"\ntopic = \"carrera/race/start\"\nkinds = [\"race_control\"]\ntext = \"GO\"\nqos = 0"
        )),
        true,
    );
    let gate = Event::new(
        1,
        Record::GateTrigger(GateTrigger {
            lane: 1,
            gate_time_ns: None,
        }),
    );
    laps.feed(vec![lap(44, 1), gate.clone(), lights_out(), lap(1, 2)])
        .await;
    go.feed(vec![gate, lights_out()]).await;
    laps.stop().await;
    go.stop().await;

    let mut got = early.next(3, Duration::from_secs(10)).await;
    got.sort_by(|a, b| a.topic.cmp(&b.topic));
    let topics: Vec<&str> = got.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(
        topics,
        vec!["carrera/race/start", "f1/9158/lap/1", "f1/9158/lap/44"]
    );
    assert_eq!(got[0].payload, b"GO");
    assert!(!got[0].retain);
    let json: Value = serde_json::from_slice(&got[2].payload).unwrap();
    assert_eq!(json["kind"], "lap");
    assert_eq!(json["driver_number"], 44);
    assert_eq!(json["lap_number"], 1);

    // A subscriber that comes later gets the retained laps, flagged as retained.
    let mut late = Client::connect(broker);
    late.subscribe("f1/#").await;
    let mut retained = late.next(2, Duration::from_secs(10)).await;
    retained.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert!(retained.iter().all(|m| m.retain));
    assert_eq!(retained[1].topic, "f1/9158/lap/44");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        early.received.try_recv().is_err(),
        "nothing else was published"
    );
}

/// A TCP proxy the test can cut (dropping every connection and refusing new ones) and
/// restore.
struct Proxy {
    address: SocketAddr,
    refusing: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    task: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let refusing = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let task = {
            let (refusing, accepted, links) = (refusing.clone(), accepted.clone(), links.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    if refusing.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    accepted.fetch_add(1, Ordering::SeqCst);
                    links.lock().unwrap().push(tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    }));
                }
            })
        };
        Proxy {
            address,
            refusing,
            accepted,
            links,
            task,
        }
    }

    fn cut(&self) {
        self.refusing.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.refusing.store(false, Ordering::SeqCst);
    }

    async fn wait_for_reconnect(&self, accepted_before: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while self.accepted.load(Ordering::SeqCst) == accepted_before {
            assert!(tokio::time::Instant::now() < deadline, "no reconnect");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_reconnects_when_the_broker_goes_away() {
    let broker = start_broker();
    let proxy = Proxy::start(broker).await;
    let client = Client::connect(broker);
    let mut running = Running::start(
        &source(&format!(
            "url = \"mqtt://{}\"\ntopics = [\"carrera/track{{lane}}/finish\"]\nemit = \"gate_trigger\"",
            proxy.address
        )),
        false,
    );
    probe_until(&client, &mut running, "carrera/track1/finish", |r| {
        !r.seen.is_empty()
    })
    .await;
    let first = gates(&running.seen).len();
    let errors_before = running.metrics.snapshot().errors;
    let accepted_before = proxy.accepted.load(Ordering::SeqCst);

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        running.metrics.snapshot().errors > errors_before,
        "the loss is counted"
    );
    proxy.restore();
    proxy.wait_for_reconnect(accepted_before).await;
    // Probe on lane 9 until the new subscription is live, then the real triggers.
    probe_until(&client, &mut running, "carrera/track9/finish", |r| {
        gates(&r.seen).iter().any(|(_, g)| g.lane == 9)
    })
    .await;
    client.send("carrera/track2/finish", "").await;
    client.send("carrera/track1/finish", "").await;
    running
        .until(Duration::from_secs(10), |seen| {
            gates(seen).iter().filter(|(_, g)| g.lane != 9).count() >= first + 2
        })
        .await;
    let events = running.stop().await;
    let lanes: Vec<u32> = gates(&events)
        .into_iter()
        .map(|(_, g)| g.lane)
        .filter(|lane| *lane != 9)
        .collect();
    assert_eq!(&lanes[lanes.len() - 2..], &[2, 1], "after the reconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_buffers_while_the_broker_is_away_and_delivers_in_order() {
    let broker = start_broker();
    let proxy = Proxy::start(broker).await;
    let mut subscriber = Client::connect(broker);
    subscriber.subscribe("f1/#").await;
    let running = Running::start(
        &sink(&format!(
            "url = \"mqtt://{}\"\ntopic = \"f1/{{kind}}\"\nkinds = [\"lap\"]\nflush_timeout_ms = 10000",
            proxy.address
        )),
        true,
    );
    running.feed(vec![lap(44, 1)]).await;
    let first = subscriber.next(1, Duration::from_secs(10)).await;
    assert_eq!(first[0].topic, "f1/lap");
    let accepted_before = proxy.accepted.load(Ordering::SeqCst);

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.feed(vec![lap(44, 2), lap(44, 3), lap(44, 4)]).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        subscriber.received.try_recv().is_err(),
        "nothing gets through while the broker is away"
    );
    assert!(
        running.metrics.snapshot().errors >= 1,
        "the loss is counted"
    );
    proxy.restore();
    proxy.wait_for_reconnect(accepted_before).await;
    let later = subscriber.next(3, Duration::from_secs(15)).await;
    let laps: Vec<u64> = later
        .iter()
        .map(|m| {
            let json: Value = serde_json::from_slice(&m.payload).unwrap();
            json["lap_number"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(laps, vec![2, 3, 4], "buffered, then delivered in order");
    let metrics = running.metrics.clone();
    running.stop().await;
    assert_eq!(metrics.snapshot().discarded, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_keeps_at_most_max_buffered_and_gives_up_after_the_flush_timeout() {
    // Nothing listens on this port: the broker is away for good.
    let address = format!("127.0.0.1:{}", free_port());
    let running = Running::start(
        &sink(&format!(
            "url = \"mqtt://{address}\"\ntopic = \"f1/{{kind}}\"\nmax_buffered = 2\nflush_timeout_ms = 300"
        )),
        true,
    );
    running.feed((1..=5).map(|n| lap(44, n)).collect()).await;
    let metrics = running.metrics.clone();
    let started = std::time::Instant::now();
    running.stop().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        metrics.snapshot().discarded,
        5,
        "3 dropped for room, 2 left at the flush timeout"
    );
}

/// A car's telemetry frame `i` of a stream: every field differs from frame to frame.
fn telemetry(i: u32) -> Event {
    let f = i as f32;
    Event::new(
        1_716_728_615_000_000_000 + i64::from(i) * 16_666_667,
        Record::CarTelemetry(Arc::new(CarTelemetry {
            game: "assetto_corsa".into(),
            session: "rig-3".into(),
            car_id: (i % 4) as i32,
            is_player: i.is_multiple_of(4),
            monotonic_ns: u64::from(i) * 16_666_667,
            driver: Some(format!("driver {}", i % 4).into()),
            car_model: Some("ks_mazda_mx5_cup".into()),
            track: Some("magione".into()),
            track_configuration: None,
            speed_kmh: 100.0 + f * 0.5,
            throttle: (f * 0.01).fract(),
            gear: (i % 7) as i32 - 1,
            rpm: 4000.0 + f,
            acc_g: [f * 0.001, 1.0, -0.5],
            tyre_temp_c: [80.0 + f, 81.0, 82.0, 83.0],
            position: [f, 2.0, -f],
            spline: (f * 0.003).fract(),
            current_lap_s: Some(f * 0.016),
            best_lap_s: (i > 100).then_some(95.5),
            ..CarTelemetry::default()
        })),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_batches_go_out_split_at_the_cap_and_come_back_as_the_same_records() {
    let broker = start_broker();
    let mut watcher = Client::connect(broker);
    watcher.subscribe("edge/#").await;
    let mut hub = Running::start(
        &source(&format!(
            "url = \"mqtt://{broker}\"\ntopics = [\"edge/{{edge}}/records\"]\nemit = \"records\"\npayload = \"protobuf\""
        )),
        false,
    );
    // Garbage is counted as an error: that also tells the subscription is live.
    probe_until(&watcher, &mut hub, "edge/probe/records", |r| {
        r.metrics.snapshot().errors > 0
    })
    .await;
    assert!(hub.seen.is_empty());
    let _probes = watcher.next(1, Duration::from_secs(5)).await;
    while watcher.received.try_recv().is_ok() {}

    let edge = Running::start(
        &sink(&format!(
            "url = \"mqtt://{broker}\"\ntopic = \"edge/e1/records\"\npayload = \"protobuf\"\nmax_message_bytes = 8192"
        )),
        true,
    );
    let mut sent: Vec<Event> = (0..300).map(telemetry).collect();
    sent.insert(150, lap(44, 7));
    sent.insert(10, lights_out());
    edge.feed(sent[..200].to_vec()).await;
    edge.feed(sent[200..].to_vec()).await;
    hub.until(Duration::from_secs(15), |seen| seen.len() >= sent.len())
        .await;
    let edge_metrics = edge.metrics.clone();
    edge.stop().await;
    let hub_metrics = hub.metrics.clone();
    let got = hub.stop().await;
    assert_eq!(got.len(), sent.len());
    assert_eq!(
        got, sent,
        "the same records, in order, with the edge's event times"
    );
    assert_eq!(edge_metrics.snapshot().discarded, 0);
    assert_eq!(hub_metrics.snapshot().errors, 1, "only the probe");

    // On the wire: several messages, none beyond the cap, each a batch of its own.
    let mut messages = Vec::new();
    while let Ok(message) = watcher.received.try_recv() {
        messages.push(message);
    }
    assert!(messages.len() > 4, "{} messages", messages.len());
    let mut decoded = Vec::new();
    for message in &messages {
        assert_eq!(message.topic, "edge/e1/records");
        assert!(message.payload.len() <= 8192, "{}", message.payload.len());
        decoded.extend(pitwall_api::wire::decode_batch(&message.payload).unwrap());
    }
    assert_eq!(decoded, sent);
    // Messages are filled: all but the last of each input batch are close to the cap.
    let full = messages.iter().filter(|m| m.payload.len() > 7000).count();
    assert!(
        full + 2 >= messages.len(),
        "{full} of {} full",
        messages.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_per_car_makes_a_message_per_car_and_the_hub_keeps_chosen_kinds() {
    let broker = start_broker();
    let client = Client::connect(broker);
    let mut hub = Running::start(
        &source(&format!(
            "url = \"mqtt://{broker}\"\ntopics = [\"cars/#\"]\nemit = \"records\"\npayload = \"protobuf\"\nkinds = [\"car_telemetry\"]"
        )),
        false,
    );
    probe_until(&client, &mut hub, "cars/probe", |r| {
        r.metrics.snapshot().errors > 0
    })
    .await;
    let mut watcher = Client::connect(broker);
    watcher.subscribe("cars/#").await;
    let edge = Running::start(
        &sink(&format!(
            "url = \"mqtt://{broker}\"\ntopic = \"cars/{{car}}\"\npayload = \"protobuf\"\nkinds = [\"car_telemetry\", \"lap\"]"
        )),
        true,
    );
    let mut sent: Vec<Event> = (0..40).map(telemetry).collect();
    sent.push(lap(2, 1));
    sent.push(lights_out()); // not in the sink's kinds
    edge.feed(sent.clone()).await;
    hub.until(Duration::from_secs(15), |seen| seen.len() >= 40)
        .await;
    edge.stop().await;
    let got = hub.stop().await;
    let telemetry_sent: Vec<Event> = sent[..40].to_vec();
    let mut got_sorted = got.clone();
    got_sorted.sort_by_key(|e| e.time_ns);
    assert_eq!(
        got_sorted, telemetry_sent,
        "the lap is not among the hub's kinds"
    );
    // Each car's records arrive in order.
    for car in 0..4 {
        let times: Vec<i64> = got
            .iter()
            .filter(|e| e.record.car() == Some(car))
            .map(|e| e.time_ns)
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] < w[1]),
            "car {car}: {times:?}"
        );
    }
    // One message per car (the lap of car 2 rides with car 2's telemetry).
    let mut topics: Vec<String> = watcher
        .next(4, Duration::from_secs(10))
        .await
        .into_iter()
        .map(|m| m.topic)
        .collect();
    topics.sort();
    assert_eq!(topics, vec!["cars/0", "cars/1", "cars/2", "cars/3"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(watcher.received.try_recv().is_err(), "no more messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linger_gathers_small_batches_into_one_message() {
    let broker = start_broker();
    let mut watcher = Client::connect(broker);
    watcher.subscribe("live/#").await;
    let edge = Running::start(
        &sink(&format!(
            "url = \"mqtt://{broker}\"\ntopic = \"live/records\"\npayload = \"protobuf\"\nlinger_ms = 400"
        )),
        true,
    );
    // Let the sink connect, so the linger and not the connection holds the records back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent: Vec<Event> = (0..30).map(telemetry).collect();
    let started = std::time::Instant::now();
    for event in &sent {
        // A live source: one frame per batch.
        edge.feed(vec![event.clone()]).await;
    }
    let first = watcher.next(1, Duration::from_secs(10)).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(350),
        "held for the linger, published after {waited:?}"
    );
    assert_eq!(
        pitwall_api::wire::decode_batch(&first[0].payload).unwrap(),
        sent,
        "every frame in one message"
    );
    // The next frame starts a new message, which the end of the input publishes at once.
    edge.feed(vec![telemetry(99)]).await;
    let started = std::time::Instant::now();
    edge.stop().await;
    let last = watcher.next(1, Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_millis(350));
    assert_eq!(
        pitwall_api::wire::decode_batch(&last[0].payload).unwrap(),
        vec![telemetry(99)]
    );
}
