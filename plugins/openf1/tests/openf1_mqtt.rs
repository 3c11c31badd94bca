//! End-to-end tests of the `openf1` source's MQTT transport against a real MQTT broker
//! (rumqttd, in-process on a loopback port), fed by a real MQTT client (rumqttc) with
//! OpenF1-shaped messages; the token test also runs the OpenF1 look-alike HTTP server.

mod fake_openf1;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_openf1::{Db, Server};
use pitwall_api::channel::Queue;
use pitwall_api::metrics::ComponentMetrics;
use pitwall_api::record::{format_iso8601_ns, Gap};
use pitwall_api::testing::{build_context, parse_config, wire};
use pitwall_api::{ComponentConfig, Event, Record, RecordKind};
use pitwall_openf1::source::mqtt::{parse_broker_url, BrokerUrl};
use pitwall_openf1::source::OpenF1Config;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

const S: i64 = 1_000_000_000;
/// 2024-05-26T13:00:00Z.
const T0: i64 = 1_716_728_400 * S;

fn iso(t: i64) -> String {
    format_iso8601_ns(t)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A rumqttd broker on a free loopback port (it cannot report a port it picked itself),
/// optionally requiring a username/password. It runs on its own threads until the test
/// process ends.
fn start_broker(auth: Option<(&str, &str)>) -> SocketAddr {
    start_broker_with(|connections| {
        connections.auth =
            auth.map(|(user, password)| HashMap::from([(user.into(), password.into())]));
    })
}

fn start_broker_with(setup: impl FnOnce(&mut rumqttd::ConnectionSettings)) -> SocketAddr {
    let port = free_port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 5000,
        max_payload_size: 1 << 20,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    setup(&mut connections);
    let server = rumqttd::ServerSettings {
        name: "v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 200,
            max_segment_size: 1 << 20,
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
    // Wait until it listens.
    for _ in 0..200 {
        if std::net::TcpStream::connect(listen).is_ok() {
            return listen;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("rumqttd did not start on {listen}");
}

/// The test's publishing client.
struct Publisher {
    client: AsyncClient,
    task: JoinHandle<()>,
}

impl Publisher {
    fn connect(broker: SocketAddr, auth: Option<(&str, &str)>) -> Publisher {
        let mut options = MqttOptions::new(
            format!("publisher-{}", fastrand::u32(..)),
            broker.ip().to_string(),
            broker.port(),
        );
        options.set_max_packet_size(1 << 20, 1 << 20);
        if let Some((user, password)) = auth {
            options.set_credentials(user, password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let task = tokio::spawn(async move {
            loop {
                if eventloop.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        Publisher { client, task }
    }

    async fn send(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .unwrap();
    }

    async fn json(&self, topic: &str, value: Value) {
        self.send(topic, value.to_string()).await;
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The source under test, running in a task; its output is read while it runs.
struct Running {
    output: Arc<Queue>,
    metrics: Arc<ComponentMetrics>,
    shutdown: pitwall_api::shutdown::Shutdown,
    task: JoinHandle<Result<(), String>>,
    seen: Vec<Event>,
}

impl Running {
    fn start(config: OpenF1Config) -> Running {
        assert!(config.check().is_empty(), "{:?}", config.check());
        let mut component = config.build(&build_context("f1", ".")).unwrap();
        let mut wiring = wire("f1", false);
        let output = wiring.output.clone();
        let metrics = wiring.io.metrics.clone();
        let shutdown = wiring.io.shutdown.clone();
        let task = tokio::spawn(async move {
            component
                .run(&mut wiring.io)
                .await
                .map_err(|e| e.to_string())
        });
        Running {
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
                Err(_) => panic!(
                    "timed out; seen: {:#?}",
                    self.seen
                        .iter()
                        .filter(|e| e.kind() != RecordKind::Tick)
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Stop the source; it must return promptly and without error.
    async fn stop(self) -> Vec<Event> {
        let started = std::time::Instant::now();
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .expect("stops promptly on shutdown")
            .unwrap()
            .expect("ends without error");
        assert!(started.elapsed() < Duration::from_secs(1));
        let mut seen = self.seen;
        seen.extend(pitwall_api::testing::drain(&self.output));
        seen
    }
}

fn mqtt_config(broker: SocketAddr, extra: &str) -> OpenF1Config {
    mqtt_config_for("9999", broker, extra)
}

fn mqtt_config_for(session_key: &str, broker: SocketAddr, extra: &str) -> OpenF1Config {
    parse_config(&format!(
        "session_key = {session_key}\nmode = \"live\"\ntransport = \"mqtt\"\nmqtt_url = \"mqtt://{broker}\"\ntick_ms = 100\n{extra}"
    ))
}

/// Publish messages of another session until the source has discarded one: it is then
/// connected and subscribed.
async fn wait_until_subscribed(publisher: &Publisher, running: &Running) {
    for probe in 0..100u64 {
        publisher
            .json(
                "v1/weather",
                json!({"_id": 1_000_000 + probe, "_key": "probe", "session_key": 8888, "date": iso(T0), "air_temperature": 1.0}),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if running.metrics.snapshot().discarded > 0 {
            return;
        }
    }
    panic!("the source never subscribed");
}

fn not_ticks(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.kind() != RecordKind::Tick)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_openf1_messages_as_records_in_id_order() {
    let broker = start_broker(None);
    let publisher = Publisher::connect(broker, None);
    // Everything under v1/, so that collections without records arrive too.
    let mut running = Running::start(mqtt_config(broker, "mqtt_topics = [\"v1/#\"]"));
    wait_until_subscribed(&publisher, &running).await;
    let discarded_before = running.metrics.snapshot().discarded;

    let k = 9999;
    // One burst. Note the car_data (_id 4) published after the location (_id 5).
    publisher.json("v1/sessions", json!({"_id": 1, "_key": "s", "session_key": k, "meeting_key": 1, "session_name": "Race", "date_start": iso(T0)})).await;
    publisher.json("v1/drivers", json!({"_id": 2, "_key": "d1", "session_key": k, "driver_number": 1, "name_acronym": "VER", "team_colour": "3671C6"})).await;
    publisher.json("v1/location", json!({"_id": 5, "_key": "l5", "session_key": k, "driver_number": 1, "date": iso(T0 + S), "x": 100, "y": 200, "z": 3})).await;
    publisher.json("v1/car_data", json!({"_id": 4, "_key": "c4", "session_key": k, "driver_number": 1, "date": iso(T0 + 900_000_000), "speed": 250, "rpm": 11000, "n_gear": 7, "throttle": 99, "brake": 0, "drs": 12})).await;
    publisher.json("v1/location", json!({"_id": 6, "_key": "l6", "session_key": k, "driver_number": 16, "date": iso(T0 + 1_100_000_000), "x": 0, "y": 0, "z": 0})).await;
    publisher.json("v1/laps", json!({"_id": 7, "_key": "lap-1-3", "session_key": k, "driver_number": 1, "lap_number": 3, "date_start": iso(T0), "lap_duration": null})).await;
    publisher.send("v1/laps", "not json {").await;
    publisher.json("v1/location", json!({"_id": 3, "_key": "l3", "session_key": k, "driver_number": 1, "date": iso(T0), "x": "far", "y": 1})).await;
    publisher.json("v1/intervals", json!({"_id": 8, "_key": "i8", "session_key": k, "driver_number": 16, "date": iso(T0 + 1_200_000_000), "gap_to_leader": "+1 LAP", "interval": null})).await;
    publisher.json("v1/position", json!({"_id": 9, "_key": "p9", "session_key": k, "driver_number": 16, "date": iso(T0 + 1_200_000_000), "position": 2})).await;
    publisher.json("v1/race_control", json!({"_id": 10, "_key": "r10", "session_key": k, "date": iso(T0 + 1_300_000_000), "category": "Flag", "flag": "YELLOW", "message": "YELLOW IN TRACK SECTOR 4"})).await;
    publisher.json("v1/weather", json!({"_id": 11, "_key": "w11", "session_key": k, "date": iso(T0 + 1_300_000_000), "air_temperature": 25.5, "rainfall": 0})).await;
    publisher.json("v1/weather", json!({"_id": 12, "_key": "w12", "session_key": 1234, "date": iso(T0 + 1_300_000_000), "air_temperature": 3.0})).await;
    publisher.json("v1/stints", json!({"_id": 13, "_key": "st", "session_key": k, "driver_number": 1, "stint_number": 1, "compound": "SOFT", "lap_start": 1, "lap_end": null})).await;
    publisher.json("v1/pit", json!({"_id": 14, "_key": "pit", "session_key": k, "driver_number": 16, "date": iso(T0 + 1_400_000_000), "lap_number": 3, "pit_duration": 22.5})).await;
    publisher
        .json(
            "v1/session_result",
            json!({"_id": 15, "_key": "res", "session_key": k, "driver_number": 1, "position": 1}),
        )
        .await;
    publisher
        .json(
            "v1/meetings",
            json!({"_id": 16, "_key": "m", "meeting_key": 1}),
        )
        .await;

    running
        .until(Duration::from_secs(10), |seen| {
            seen.iter().any(|e| e.kind() == RecordKind::SessionResult)
        })
        .await;
    let first_burst = not_ticks(&running.seen).len();

    // Later: the lap completes (same `_key`), the car moves on, a redelivered duplicate.
    tokio::time::sleep(Duration::from_millis(300)).await;
    publisher.json("v1/laps", json!({"_id": 20, "_key": "lap-1-3", "session_key": k, "driver_number": 1, "lap_number": 3, "date_start": iso(T0), "lap_duration": 91.5})).await;
    publisher.json("v1/location", json!({"_id": 21, "_key": "l21", "session_key": k, "driver_number": 1, "date": iso(T0 + 2 * S), "x": 110, "y": 205, "z": 3})).await;
    publisher.json("v1/location", json!({"_id": 21, "_key": "l21", "session_key": k, "driver_number": 1, "date": iso(T0 + 2 * S), "x": 110, "y": 205, "z": 3})).await;
    running
        .until(Duration::from_secs(10), |seen| {
            seen.iter()
                .any(|e| matches!(&e.record, Record::Position(p) if p.x == 110.0))
        })
        .await;
    // Time for the duplicate to show up if it were passed on, and for a few ticks.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let metrics = running.metrics.clone();
    let events = running.stop().await;

    let records = not_ticks(&events);
    let kinds: Vec<RecordKind> = records.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds,
        vec![
            RecordKind::Session,
            RecordKind::Driver,
            RecordKind::CarData,
            RecordKind::Position,
            RecordKind::Lap,
            RecordKind::Interval,
            RecordKind::RacePosition,
            RecordKind::RaceControl,
            RecordKind::Weather,
            RecordKind::Stint,
            RecordKind::Pit,
            RecordKind::SessionResult,
            RecordKind::Lap,
            RecordKind::Position,
        ],
        "in _id order, 0,0 / malformed / other session / duplicate / meetings left out: {records:#?}"
    );
    assert_eq!(
        first_burst, 12,
        "the first burst, before the second was sent"
    );
    for event in &records {
        let key = match &event.record {
            Record::Session(r) => r.session_key.clone(),
            Record::Driver(r) => r.session_key.clone(),
            Record::CarData(r) => r.session_key.clone(),
            Record::Position(r) => r.session_key.clone(),
            Record::Lap(r) => r.session_key.clone(),
            Record::Interval(r) => r.session_key.clone(),
            Record::RacePosition(r) => r.session_key.clone(),
            Record::RaceControl(r) => r.session_key.clone(),
            Record::Weather(r) => r.session_key.clone(),
            Record::Stint(r) => r.session_key.clone(),
            Record::Pit(r) => r.session_key.clone(),
            Record::SessionResult(r) => r.session_key.clone(),
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(&*key, "9999");
    }

    let Record::Session(session) = &records[0].record else {
        unreachable!()
    };
    assert_eq!(session.session_name.as_deref(), Some("Race"));
    assert_eq!(records[0].time_ns, T0, "a session at its date_start");
    let Record::Driver(driver) = &records[1].record else {
        unreachable!()
    };
    assert_eq!(
        (driver.driver_number, driver.name_acronym.as_deref()),
        (1, Some("VER"))
    );
    let Record::CarData(car) = &records[2].record else {
        unreachable!()
    };
    assert_eq!(records[2].time_ns, T0 + 900_000_000);
    assert_eq!(
        (
            car.car,
            car.speed_kmh,
            car.rpm,
            car.gear,
            car.throttle_pct,
            car.brake_pct,
            car.drs
        ),
        (
            1,
            Some(250.0),
            Some(11000.0),
            Some(7),
            Some(99.0),
            Some(0.0),
            Some(12)
        )
    );
    let Record::Position(position) = &records[3].record else {
        unreachable!()
    };
    assert_eq!(records[3].time_ns, T0 + S);
    assert_eq!(
        (position.car, position.x, position.y, position.z),
        (1, 100.0, 200.0, 3.0)
    );
    let Record::Lap(lap) = &records[4].record else {
        unreachable!()
    };
    assert_eq!(
        (lap.driver_number, lap.lap_number, lap.lap_duration),
        (1, 3, None)
    );
    assert_eq!(records[4].time_ns, T0, "a lap at its date_start");
    let Record::Interval(interval) = &records[5].record else {
        unreachable!()
    };
    assert_eq!(interval.driver_number, 16);
    assert_eq!(interval.gap_to_leader, Some(Gap::Text("+1 LAP".into())));
    assert_eq!(interval.interval, None);
    assert_eq!(records[5].time_ns, T0 + 1_200_000_000);
    let Record::RacePosition(race_position) = &records[6].record else {
        unreachable!()
    };
    assert_eq!((race_position.car, race_position.position), (16, 2));
    let Record::RaceControl(message) = &records[7].record else {
        unreachable!()
    };
    assert_eq!(message.flag.as_deref(), Some("YELLOW"));
    assert_eq!(records[7].time_ns, T0 + 1_300_000_000);
    let Record::Weather(weather) = &records[8].record else {
        unreachable!()
    };
    assert_eq!(
        weather.air_temperature,
        Some(25.5),
        "not the other session's"
    );
    let Record::Stint(stint) = &records[9].record else {
        unreachable!()
    };
    assert_eq!(stint.compound.as_deref(), Some("SOFT"));
    let Record::Pit(pit) = &records[10].record else {
        unreachable!()
    };
    assert_eq!((pit.driver_number, pit.lap_number), (16, Some(3)));
    assert_eq!(records[10].time_ns, T0 + 1_400_000_000);
    let Record::SessionResult(result) = &records[11].record else {
        unreachable!()
    };
    assert_eq!(result.driver_number, 1);
    let Record::Lap(completed) = &records[12].record else {
        unreachable!()
    };
    assert_eq!(
        (completed.lap_number, completed.lap_duration),
        (3, Some(91.5)),
        "the same _key again: the lap's update"
    );
    let Record::Position(moved) = &records[13].record else {
        unreachable!()
    };
    assert_eq!((records[13].time_ns, moved.x), (T0 + 2 * S, 110.0));

    // Ticks on a 100 ms grid, never going back.
    let ticks: Vec<i64> = events
        .iter()
        .filter(|e| e.kind() == RecordKind::Tick)
        .map(|e| e.time_ns)
        .collect();
    assert!(ticks.len() >= 3, "{ticks:?}");
    assert!(
        ticks.windows(2).all(|w| w[1] - w[0] == 100_000_000),
        "{ticks:?}"
    );
    assert!(
        ticks.iter().any(|t| *t >= T0 + 2 * S),
        "ticks follow the data: {ticks:?}"
    );

    let snapshot = metrics.snapshot();
    assert_eq!(
        snapshot.errors, 2,
        "the non-JSON lap and the location with x = \"far\""
    );
    assert_eq!(
        snapshot.discarded - discarded_before,
        3,
        "the other session's weather, the duplicate, the meetings message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_latest_session_without_credentials() {
    let broker = start_broker(None);
    let publisher = Publisher::connect(broker, None);
    let config: OpenF1Config = parse_config(&format!(
        "session_key = \"latest\"\nmode = \"live\"\ntransport = \"mqtt\"\nmqtt_url = \"mqtt://{broker}\"\ntick_ms = 100"
    ));
    let mut running = Running::start(config);
    // Until the stream names a session, messages without a key have no home: discarded.
    for probe in 0..100u64 {
        publisher
            .json("v1/weather", json!({"_id": probe, "date": iso(T0)}))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if running.metrics.snapshot().discarded > 0 {
            break;
        }
    }
    let location = |id: u64, key: u64, x: i64| json!({"_id": 1000 + id, "_key": format!("l{id}"), "session_key": key, "driver_number": 1, "date": iso(T0 + id as i64 * S), "x": x, "y": 1});
    publisher.json("v1/location", location(1, 100, 1)).await;
    publisher.json("v1/location", location(2, 101, 2)).await;
    publisher.json("v1/location", location(3, 100, 3)).await;
    running
        .until(Duration::from_secs(10), |seen| {
            seen.iter()
                .any(|e| matches!(&e.record, Record::Position(p) if p.x == 2.0))
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = running.stop().await;
    let records: Vec<String> = not_ticks(&events)
        .iter()
        .map(|e| match &e.record {
            Record::Position(p) => format!("{}:{}", p.session_key, p.x),
            Record::SessionEnd(end) => format!("end {}", end.session_key),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        records,
        vec!["100:1", "end 100", "101:2"],
        "the newer session takes over; the older one's late message is dropped"
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
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_connection_is_cut() {
    let broker = start_broker(None);
    let proxy = Proxy::start(broker).await;
    let publisher = Publisher::connect(broker, None);
    let mut running = Running::start(mqtt_config(proxy.address, ""));
    wait_until_subscribed(&publisher, &running).await;
    let location = |id: i64| json!({"_id": id, "_key": format!("l{id}"), "session_key": 9999, "driver_number": 44, "date": iso(T0 + id * S), "x": id, "y": 7});
    publisher.json("v1/location", location(1)).await;
    running
        .until(Duration::from_secs(10), |seen| {
            seen.iter().any(|e| e.kind() == RecordKind::Position)
        })
        .await;
    let errors_before = running.metrics.snapshot().errors;
    let accepted_before = proxy.accepted.load(Ordering::SeqCst);

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        running.metrics.snapshot().errors > errors_before,
        "the loss is counted"
    );
    proxy.restore();
    // Wait for the reconnect, then a moment for the subscription.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while proxy.accepted.load(Ordering::SeqCst) == accepted_before {
        assert!(tokio::time::Instant::now() < deadline, "no reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    publisher.json("v1/location", location(2)).await;
    publisher.json("v1/location", location(3)).await;
    running
        .until(Duration::from_secs(15), |seen| {
            seen.iter()
                .any(|e| matches!(&e.record, Record::Position(p) if p.x == 3.0))
        })
        .await;
    let events = running.stop().await;
    let xs: Vec<f64> = events
        .iter()
        .filter_map(|e| match &e.record {
            Record::Position(p) => Some(p.x),
            _ => None,
        })
        .collect();
    assert_eq!(xs, vec![1.0, 2.0, 3.0], "each once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_in_with_the_openf1_token_and_seeds_from_rest() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let mut db = Db {
        credentials: Some(("fan@example.com".into(), "s3cret".into())),
        ..Db::default()
    };
    db.push("sessions", json!({"session_key": 9999, "meeting_key": 1, "session_name": "Race", "date_start": iso(now - 600 * S), "date_end": iso(now + 3600 * S)}));
    db.push(
        "meetings",
        json!({"meeting_key": 1, "meeting_name": "Live Grand Prix"}),
    );
    db.push(
        "drivers",
        json!({"session_key": 9999, "driver_number": 1, "name_acronym": "VER"}),
    );
    let server = Server::start(db).await;
    // The broker only lets in the token the fake server hands out first.
    let broker = start_broker(Some(("fan@example.com", "token-1")));
    let publisher = Publisher::connect(broker, Some(("fan@example.com", "token-1")));
    let config = mqtt_config_for(
        "\"latest\"",
        broker,
        &format!(
            "base_url = \"{}\"\nusername = \"fan@example.com\"\npassword = \"s3cret\"",
            server.base_url()
        ),
    );
    let mut running = Running::start(config);
    running
        .until(Duration::from_secs(10), |seen| {
            seen.iter().any(|e| e.kind() == RecordKind::Driver)
        })
        .await;
    wait_until_subscribed(&publisher, &running).await;
    publisher
        .json("v1/location", json!({"_id": 1, "_key": "l1", "session_key": 9999, "driver_number": 1, "date": iso(now), "x": 5, "y": 6}))
        .await;
    running
        .until(Duration::from_secs(10), |seen| {
            seen.iter().any(|e| e.kind() == RecordKind::Position)
        })
        .await;
    let events = running.stop().await;
    let Record::Session(session) = &events[0].record else {
        panic!("the seed's session first: {:?}", events[0]);
    };
    assert_eq!(
        &*session.session_key, "9999",
        "\"latest\" resolved over REST"
    );
    assert_eq!(session.meeting_name.as_deref(), Some("Live Grand Prix"));
    assert_eq!(
        server.db.lock().unwrap().tokens,
        vec!["token-1".to_string()]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_with_a_new_token_before_the_old_one_expires() {
    let mut db = Db {
        credentials: Some(("fan@example.com".into(), "s3cret".into())),
        token_lifetime: Some("2".into()),
        ..Db::default()
    };
    db.push(
        "sessions",
        json!({"session_key": 9999, "session_name": "Race", "date_start": iso(T0)}),
    );
    let server = Server::start(db).await;
    // Logins seen by the broker: (client id, password).
    let logins: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let broker = {
        let logins = logins.clone();
        start_broker_with(move |connections| {
            connections.set_auth_handler(move |client: String, _user: String, password: String| {
                let logins = logins.clone();
                async move {
                    let ok = password.starts_with("token-") || password == "publisher";
                    logins.lock().unwrap().push((client, password));
                    ok
                }
            });
        })
    };
    let publisher = Publisher::connect(broker, Some(("test", "publisher")));
    let config = mqtt_config(
        broker,
        &format!(
            "base_url = \"{}\"\nusername = \"fan@example.com\"\npassword = \"s3cret\"",
            server.base_url()
        ),
    );
    let mut running = Running::start(config);
    wait_until_subscribed(&publisher, &running).await;
    let source_logins = || -> Vec<String> {
        logins
            .lock()
            .unwrap()
            .iter()
            .filter(|(client, _)| client.starts_with("pitwall-flow-"))
            .map(|(_, password)| password.clone())
            .collect()
    };
    assert_eq!(source_logins()[0], "token-1");
    // The token lives 2 s and is renewed 0.2 s early: a new login with a new token.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !source_logins().iter().any(|p| p == "token-2") {
        assert!(tokio::time::Instant::now() < deadline, "no renewal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(source_logins(), ["token-1", "token-2"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    publisher
        .json("v1/location", json!({"_id": 1, "_key": "l1", "session_key": 9999, "driver_number": 1, "date": iso(T0 + S), "x": 5, "y": 6}))
        .await;
    running
        .until(Duration::from_secs(10), |seen| {
            seen.iter().any(|e| e.kind() == RecordKind::Position)
        })
        .await;
    let events = running.stop().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind() == RecordKind::Session)
            .count(),
        1,
        "the REST seed runs once, not at every reconnect"
    );
    server.stop().await;
}

#[test]
fn broker_urls_and_option_checks() {
    assert_eq!(
        parse_broker_url("mqtts://mqtt.openf1.org:8883").unwrap(),
        BrokerUrl {
            tls: true,
            host: "mqtt.openf1.org".into(),
            port: 8883
        }
    );
    assert_eq!(
        parse_broker_url("mqtt://127.0.0.1").unwrap(),
        BrokerUrl {
            tls: false,
            host: "127.0.0.1".into(),
            port: 1883
        }
    );
    assert_eq!(parse_broker_url("mqtt://[::1]:1884/").unwrap().host, "::1");
    for bad in [
        "https://mqtt.openf1.org",
        "mqtt://",
        "mqtt://host:0",
        "mqtt://host:99999",
        "mqtts://user@host:8883",
        "mqtt://host:1883/topic",
    ] {
        assert!(parse_broker_url(bad).is_err(), "{bad}");
    }

    let config = |extra: &str| -> OpenF1Config {
        parse_config(&format!("session_key = 9999\nmode = \"live\"\n{extra}"))
    };
    let keys = |c: OpenF1Config| -> Vec<String> { c.check().into_iter().map(|p| p.key).collect() };
    assert!(keys(config("")).is_empty(), "rest stays the default");
    assert_eq!(
        keys(config("transport = \"mqtt\"")),
        vec!["transport"],
        "OpenF1's broker needs credentials"
    );
    assert!(keys(config(
        "transport = \"mqtt\"\nusername = \"a\"\npassword = \"b\""
    ))
    .is_empty());
    assert!(keys(config(
        "transport = \"mqtt\"\nmqtt_url = \"mqtt://127.0.0.1:1883\""
    ))
    .is_empty());
    assert_eq!(
        keys(config("transport = \"mqtt\"\nmqtt_url = \"ws://x\"")),
        vec!["mqtt_url"]
    );
    assert_eq!(
        keys(config(
            "transport = \"mqtt\"\nmqtt_url = \"mqtt://x\"\nmqtt_topics = []"
        )),
        vec!["mqtt_topics"]
    );
    let defaults = config("");
    assert_eq!(defaults.mqtt_url, "mqtts://mqtt.openf1.org:8883");
    assert!(defaults.mqtt_topics.iter().any(|t| t == "v1/location"));
}
