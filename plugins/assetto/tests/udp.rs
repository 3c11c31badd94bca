//! `assetto_udp` against a fake game on loopback that speaks the documented byte layouts:
//! handshake, updates, garbage, a game restart (re-handshake), spot laps, dismiss on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pitwall_api::channel::Queue;
use pitwall_api::testing::{build_context, drain, parse_config, wire};
use pitwall_api::{ComponentConfig, ComponentMetrics, Event, Record, Shutdown};
use pitwall_assetto::assetto_udp::{
    parse_request, AssettoUdpConfig, CAR_INFO_BYTES, HANDSHAKE_REPLY_BYTES, LAP_BYTES,
};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

const HANDSHAKE: i32 = 0;
const UPDATE: i32 = 1;
const SPOT: i32 = 2;
const DISMISS: i32 = 3;

fn put_i32(bytes: &mut [u8], offset: usize, value: i32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}
fn put_f32(bytes: &mut [u8], offset: usize, value: f32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}
fn put_utf16(bytes: &mut [u8], offset: usize, text: &str) {
    for (i, unit) in text.encode_utf16().enumerate() {
        bytes[offset + 2 * i..offset + 2 * i + 2].copy_from_slice(&unit.to_le_bytes());
    }
}

fn handshake_reply(driver: &str, track: &str) -> Vec<u8> {
    let mut bytes = vec![0u8; HANDSHAKE_REPLY_BYTES];
    put_utf16(&mut bytes, 0, "ks_ferrari_sf15t");
    put_utf16(&mut bytes, 100, driver);
    put_i32(&mut bytes, 200, 1);
    put_i32(&mut bytes, 204, 1);
    put_utf16(&mut bytes, 208, track);
    bytes
}

fn car_info(i: i32) -> Vec<u8> {
    let mut bytes = vec![0u8; CAR_INFO_BYTES];
    bytes[0] = b'a';
    put_i32(&mut bytes, 4, CAR_INFO_BYTES as i32);
    put_f32(&mut bytes, 8, 100.0 + i as f32);
    put_i32(&mut bytes, 40, 1000 + i);
    put_i32(&mut bytes, 52, 2);
    put_f32(&mut bytes, 56, 0.5);
    put_f32(&mut bytes, 68, 5000.0 + i as f32);
    put_i32(&mut bytes, 76, 3);
    put_f32(&mut bytes, 308, 0.25);
    bytes
}

fn rt_lap(car: i32, lap: i32, driver: &str, time_ms: i32) -> Vec<u8> {
    let mut bytes = vec![0u8; LAP_BYTES];
    put_i32(&mut bytes, 0, car);
    put_i32(&mut bytes, 4, lap);
    put_utf16(&mut bytes, 8, driver);
    put_utf16(&mut bytes, 108, "ks_car");
    put_i32(&mut bytes, 208, time_ms);
    bytes
}

/// The fake game: a UDP socket on loopback.
struct Game {
    socket: UdpSocket,
}

impl Game {
    async fn new() -> Self {
        Self {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn address(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// The next request from the source: its operation and where it came from.
    async fn request(&self) -> (i32, SocketAddr) {
        let mut buf = [0u8; 64];
        let (len, from) =
            tokio::time::timeout(Duration::from_secs(5), self.socket.recv_from(&mut buf))
                .await
                .expect("the source sent a request")
                .unwrap();
        (parse_request(&buf[..len]).expect("a 12-byte request"), from)
    }

    /// Wait for a request of `operation`, skipping repeated handshakes.
    async fn expect(&self, operation: i32) -> SocketAddr {
        loop {
            let (op, from) = self.request().await;
            if op == operation {
                return from;
            }
            assert_eq!(
                op, HANDSHAKE,
                "unexpected request {op} while waiting for {operation}"
            );
        }
    }

    async fn send(&self, bytes: &[u8], to: SocketAddr) {
        self.socket.send_to(bytes, to).await.unwrap();
    }
}

struct Running {
    task: JoinHandle<()>,
    output: Arc<Queue>,
    shutdown: Shutdown,
    metrics: Arc<ComponentMetrics>,
}

fn start(options: &str) -> Running {
    let config: AssettoUdpConfig = parse_config(options);
    assert!(config.check().is_empty(), "{:?}", config.check());
    let mut component = config.build(&build_context("ac", ".")).unwrap();
    let mut wiring = wire("ac", false);
    let output = wiring.output.clone();
    let shutdown = wiring.io.shutdown.clone();
    let metrics = wiring.io.metrics.clone();
    let task = tokio::spawn(async move {
        component
            .run(&mut wiring.io)
            .await
            .expect("source ran cleanly");
    });
    Running {
        task,
        output,
        shutdown,
        metrics,
    }
}

/// Wait until the source has emitted something.
async fn wait_for_output(output: &Queue) {
    for _ in 0..500 {
        if !output.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the source emitted nothing");
}

fn cars(events: &[Event]) -> Vec<Arc<pitwall_api::CarTelemetry>> {
    events
        .iter()
        .map(|e| match &e.record {
            Record::CarTelemetry(car) => car.clone(),
            other => panic!("unexpected {:?}", other.kind()),
        })
        .collect()
}

#[tokio::test]
async fn handshake_updates_garbage_restart_and_dismiss() {
    let game = Game::new().await;
    let running = start(&format!(
        "game_address = \"{}\"\nbind = \"127.0.0.1:0\"\nsilence_timeout_ms = 300\nhandshake_retry_ms = 100",
        game.address()
    ));

    // Ignore the first handshake: the source must ask again.
    let (op, _) = game.request().await;
    assert_eq!(op, HANDSHAKE);
    let client = game.expect(HANDSHAKE).await;
    game.send(&handshake_reply("Mario Rossi", "monza"), client)
        .await;
    assert_eq!(game.expect(UPDATE).await, client);

    for i in 0..50 {
        game.send(&car_info(i), client).await;
    }
    // Garbage: a short packet, a long one, and 328 bytes not marked 'a'.
    game.send(&[1, 2, 3], client).await;
    game.send(&vec![0u8; 1000], client).await;
    let mut unmarked = car_info(0);
    unmarked[0] = b'z';
    game.send(&unmarked, client).await;
    // Someone else's packet is ignored, not counted.
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    stranger.send_to(&car_info(999), client).await.unwrap();
    game.send(&car_info(50), client).await;
    wait_for_output(&running.output).await;

    // The game restarts: silence, then the source dismisses and handshakes again.
    assert_eq!(game.expect(DISMISS).await, client);
    let client = game.expect(HANDSHAKE).await;
    game.send(&handshake_reply("Mario Rossi", "spa"), client)
        .await;
    game.expect(UPDATE).await;
    for i in 100..110 {
        game.send(&car_info(i), client).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    running.shutdown.trigger();
    assert_eq!(game.expect(DISMISS).await, client, "dismissed on shutdown");
    tokio::time::timeout(Duration::from_secs(5), running.task)
        .await
        .expect("stops on shutdown")
        .unwrap();

    assert_eq!(running.metrics.snapshot().errors, 3);
    let cars = cars(&drain(&running.output));
    assert_eq!(cars.len(), 61);
    let speeds: Vec<f32> = cars.iter().map(|c| c.speed_kmh).collect();
    let expected: Vec<f32> = (0..=50).chain(100..110).map(|i| 100.0 + i as f32).collect();
    assert_eq!(
        speeds, expected,
        "every update in order, garbage and strangers skipped"
    );
    let first = &cars[0];
    assert_eq!(&*first.session, "Mario Rossi@monza");
    assert_eq!(first.driver.as_deref(), Some("Mario Rossi"));
    assert_eq!(first.car_model.as_deref(), Some("ks_ferrari_sf15t"));
    assert_eq!(first.gear, 2, "the game's 3 is second gear");
    assert_eq!(first.current_lap_s, Some(1.0));
    assert_eq!(first.completed_laps, 2);
    assert_eq!(first.throttle, 0.5);
    assert_eq!(first.rpm, 5000.0);
    assert_eq!(first.spline, 0.25);
    assert_eq!(
        &*cars[51].session, "Mario Rossi@spa",
        "new handshake, new tag"
    );
    assert!(cars
        .windows(2)
        .all(|w| w[0].monotonic_ns <= w[1].monotonic_ns));
}

#[tokio::test]
async fn spot_mode_emits_laps_and_drivers() {
    let game = Game::new().await;
    let running = start(&format!(
        "game_address = \"{}\"\nbind = \"127.0.0.1:0\"\nmode = \"spot\"\nsession = \"league\"\nhandshake_retry_ms = 100",
        game.address()
    ));
    let client = game.expect(HANDSHAKE).await;
    game.send(&handshake_reply("Host", "imola"), client).await;
    game.expect(SPOT).await;
    game.send(&rt_lap(0, 1, "Ayrton", 90_500), client).await;
    game.send(&rt_lap(4, 1, "Alain", 91_000), client).await;
    game.send(&rt_lap(0, 2, "Ayrton", 89_750), client).await;
    game.send(&car_info(1), client).await; // not a lap: counted
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.shutdown.trigger();
    game.expect(DISMISS).await;
    running.task.await.unwrap();

    assert_eq!(running.metrics.snapshot().errors, 1);
    let events = drain(&running.output);
    let mut laps = Vec::new();
    let mut drivers = Vec::new();
    for event in &events {
        match &event.record {
            Record::Lap(lap) => {
                assert_eq!(&*lap.session_key, "league");
                laps.push((lap.driver_number, lap.lap_number, lap.lap_duration));
            }
            Record::Driver(driver) => {
                drivers.push((driver.driver_number, driver.full_name.clone().unwrap()))
            }
            other => panic!("unexpected {:?}", other.kind()),
        }
    }
    assert_eq!(
        laps,
        vec![(0, 1, Some(90.5)), (4, 1, Some(91.0)), (0, 2, Some(89.75))]
    );
    assert_eq!(
        drivers,
        vec![(0, "Ayrton".to_string()), (4, "Alain".to_string())],
        "a driver record the first time a car is seen"
    );
}

#[tokio::test]
async fn shutdown_while_the_game_never_answers() {
    let game = Game::new().await;
    let running = start(&format!(
        "game_address = \"{}\"\nbind = \"127.0.0.1:0\"\nhandshake_retry_ms = 50",
        game.address()
    ));
    game.expect(HANDSHAKE).await;
    game.expect(HANDSHAKE).await;
    running.shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), running.task)
        .await
        .expect("stops while handshaking")
        .unwrap();
    assert!(drain(&running.output).is_empty());
    assert_eq!(running.metrics.snapshot().errors, 0);
}
