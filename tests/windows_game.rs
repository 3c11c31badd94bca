//! The Windows build end to end, with the game's part played by the test (run here under
//! Wine by `scripts/windows-tests.sh`):
//!
//! - the shipped `pipelines/windows/ac-shm-live.toml` run by the real `pitwall-flow.exe`,
//!   reading `Local\acpmf_*` mappings this test creates and updates like Assetto Corsa,
//!   and serving the car on a WebSocket. An edit of the file adds a second WebSocket while
//!   the first client keeps receiving: hot reload on Windows.
//! - the shipped `pipelines/rf2-websocket.toml`, reading the `$rFactor2SMMP_*$` mappings
//!   as the rF2 plugin writes them, and sending the original server's exact messages.
#![cfg(windows)]

#[path = "../plugins/rfactor2/tests/common/mod.rs"]
mod rf2;

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pitwall_api::shared_memory::OwnedMapping;
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn put_i32(page: &mut [u8], at: usize, value: i32) {
    page[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_f32(page: &mut [u8], at: usize, value: f32) {
    page[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Physics step `packet`: third gear, 6,500 rpm, the speed counting up with the steps.
fn physics(packet: i32) -> Vec<u8> {
    let mut page = vec![0u8; 712];
    put_i32(&mut page, 0, packet);
    put_f32(&mut page, 4, 0.8); // gas
    put_i32(&mut page, 16, 4); // gear, as the game counts: 0 R, 1 N, 2 first
    put_i32(&mut page, 20, 6500); // rpms
    put_f32(&mut page, 28, 100.0 + packet as f32 / 100.0); // speedKmh
    page
}

fn graphics() -> Vec<u8> {
    let mut page = vec![0u8; 1500];
    put_i32(&mut page, 0, 1);
    put_i32(&mut page, 4, 2); // live
    put_i32(&mut page, 132, 7); // completedLaps
    put_f32(&mut page, 248, 0.5); // normalizedCarPosition
    page
}

/// `pitwall-flow.exe` with these arguments and environment, quiet.
fn run(args: &[&str], env: &[(&str, String)]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_pitwall-flow"))
        .args(args)
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("pitwall-flow.exe starts")
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Socket {
    let started = Instant::now();
    loop {
        match tokio_tungstenite::connect_async(url).await {
            Ok((socket, _)) => return socket,
            Err(error) => {
                assert!(started.elapsed() < PATIENCE, "{url} never came up: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn next_text(socket: &mut Socket) -> String {
    loop {
        match tokio::time::timeout(PATIENCE, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return text.to_string(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no message: {other:?}"),
        }
    }
}

async fn next_car(socket: &mut Socket) -> serde_json::Value {
    serde_json::from_str(&next_text(socket).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_windows_build_reads_the_games_memory_and_reloads_its_file() {
    // The game is running: its three pages are mapped, physics advancing every 3 ms.
    let _statics = OwnedMapping::create("Local\\acpmf_static", 2048).unwrap();
    let graphics_page = OwnedMapping::create("Local\\acpmf_graphics", 2048).unwrap();
    graphics_page.write(0, &graphics());
    let physics_page = OwnedMapping::create("Local\\acpmf_physics", 1024).unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let game = {
        let running = running.clone();
        std::thread::spawn(move || {
            let mut packet = 1;
            while running.load(Ordering::Relaxed) {
                physics_page.write(0, &physics(packet));
                packet += 1;
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ac-shm-live.toml");
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/windows/ac-shm-live.toml"),
    )
    .unwrap();
    std::fs::write(&file, &shipped).unwrap();
    let port = free_port();
    let parquet = dir.path().join("parquet").display().to_string();
    let mut child = run(
        &["run", &file.display().to_string()],
        &[
            ("AC_WS_ADDRESS", format!("127.0.0.1:{port}")),
            ("AC_PARQUET_DIR", parquet),
        ],
    );

    let mut first = connect(&format!("ws://127.0.0.1:{port}/ac")).await;
    let car = next_car(&mut first).await;
    assert_eq!(car["gear"], 3, "{car}");
    assert_eq!(car["rpm"], 6500.0, "{car}");
    assert_eq!(car["lap"], 7, "{car}");
    let speed = car["speed_kmh"].as_f64().unwrap();
    let later = next_car(&mut first).await["speed_kmh"].as_f64().unwrap();
    assert!(later > speed, "the car moves on: {speed} then {later}");

    // An edit adds a second WebSocket; the running graph changes, the first client stays.
    let second_port = free_port();
    let edited = format!(
        "{shipped}\n[sinks.pit_wall]\ntype = \"json_ws\"\ninputs = [\"ten_hz\"]\naddress = \"127.0.0.1:{second_port}\"\npath = \"/pit\"\nmode = \"each\"\n"
    );
    let temporary = dir.path().join("ac-shm-live.toml.tmp");
    std::fs::write(&temporary, edited).unwrap();
    std::fs::rename(&temporary, &file).unwrap();
    let mut second = connect(&format!("ws://127.0.0.1:{second_port}/pit")).await;
    let car = next_car(&mut second).await;
    assert!(car.get("speed_kmh").is_some(), "{car}");
    let after = next_car(&mut first).await["speed_kmh"].as_f64().unwrap();
    assert!(
        after > later,
        "the first client kept receiving: {later} then {after}"
    );

    running.store(false, Ordering::Relaxed);
    game.join().unwrap();
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_windows_build_serves_rfactor2_as_the_original_server_did() {
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/rf2-websocket.toml");
    let port = free_port();
    let mut child = run(
        &["run", "--no-watch", &shipped.display().to_string()],
        &[("RF2_WS_ADDRESS", format!("127.0.0.1:{port}"))],
    );

    // The game is not running yet: the original's status message.
    let mut client = connect(&format!("ws://127.0.0.1:{port}/")).await;
    let message = next_car(&mut client).await;
    assert_eq!(
        message,
        serde_json::json!({ "status": "no_player_vehicle_found" })
    );

    // The plugin maps its buffers; the player drives.
    let mut player = rf2::Scored::new(12, b"Player One", 2);
    player.is_player = true;
    let scoring = rf2::scoring(
        1,
        &rf2::Info::default(),
        &[rf2::Scored::new(30, b"AI Driver", 1), player],
    );
    let scoring_map = OwnedMapping::create("$rFactor2SMMP_Scoring$", scoring.len()).unwrap();
    scoring_map.write(0, &scoring);
    let telemetry = rf2::telemetry(1, &[rf2::Car::new(30), rf2::Car::new(12)]);
    let telemetry_map = OwnedMapping::create("$rFactor2SMMP_Telemetry$", telemetry.len()).unwrap();
    telemetry_map.write(0, &telemetry);
    let started = Instant::now();
    let text = loop {
        let text = next_text(&mut client).await;
        if text.contains("driverName") {
            break text;
        }
        assert!(started.elapsed() < PATIENCE, "no car: {text}");
    };
    // The original's keys, in its order (a parsed object would sort them).
    let keys = [
        "driverName",
        "vehicleName",
        "trackName",
        "place",
        "gear",
        "brake",
        "throttle",
        "session",
    ];
    let at: Vec<usize> = keys
        .iter()
        .map(|key| text.find(&format!("\"{key}\":")).expect(key))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    let car: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(car.as_object().unwrap().len(), keys.len(), "{text}");
    assert_eq!(car["driverName"], "Player One", "{car}");
    assert!(car["vehicleName"]
        .as_str()
        .unwrap()
        .starts_with("Dallara IR18"));
    assert!(car["trackName"].as_str().unwrap().starts_with("Sebring"));
    assert_eq!(car["place"], 2, "{car}");
    assert_eq!(car["gear"], 3, "{car}");
    assert_eq!(car["throttle"], 0.5, "{car}");
    child.kill().await.unwrap();
}
