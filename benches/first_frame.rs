//! First frame to the first Cardputer client: the shipped `cardputer-replay` pipeline is
//! started on free ports; as soon as its port accepts connections ("the server is ready")
//! a client opens `/ws/9999` and waits for its first frame. `cargo bench --bench first_frame`.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

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
    let mut results = Vec::new();
    for _ in 0..5 {
        results.push(runtime.block_on(once()));
    }
    results.sort();
    println!(
        "first_frame/cardputer_replay: server ready -> first frame: median {:.1} ms, max {:.1} ms (5 runs)",
        results[2].as_secs_f64() * 1000.0,
        results[4].as_secs_f64() * 1000.0
    );
}

async fn once() -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let sample = std::fs::canonicalize("pipelines/sample").unwrap();
    let (port, admin) = (free_port(), free_port());
    let text = std::fs::read_to_string("pipelines/cardputer-replay.toml")
        .unwrap()
        .replace("0.0.0.0:8000", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:8686", &format!("127.0.0.1:{admin}"))
        .replace(
            "cache_dir = \"sample\"",
            &format!("cache_dir = \"{}\"", sample.display()),
        )
        .replace(
            "circuit_info = \"sample/",
            &format!("circuit_info = \"{}/", sample.display()),
        );
    let file = dir.path().join("pipeline.toml");
    std::fs::write(&file, text).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pitwall-flow"))
        .arg("run")
        .arg("--no-watch")
        .arg(&file)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let address = format!("127.0.0.1:{port}");
    while tokio::net::TcpStream::connect(&address).await.is_err() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ready = Instant::now();
    let (mut stream, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws/9999"))
        .await
        .unwrap();
    loop {
        match stream.next().await {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_))) => break,
            Some(Ok(_)) => continue,
            other => panic!("no frame: {other:?}"),
        }
    }
    let elapsed = ready.elapsed();
    let _ = child.kill().await;
    elapsed
}
