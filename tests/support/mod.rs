//! Shared helpers of the black-box tests: a temporary workspace with a pipeline file, the
//! real binary running it, and WebSocket/HTTP clients.
#![allow(dead_code)]

pub mod browser;
pub mod mqtt;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

/// How long any single wait may take before the test fails (the machine may be busy).
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < PATIENCE,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Everything `child` writes on its standard error (which must be piped), as it comes.
pub fn capture_stderr(child: &mut tokio::process::Child) -> Arc<Mutex<String>> {
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let sink = stderr.clone();
    tokio::spawn(async move {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });
    stderr
}

/// The main job (`pipelines/cardputer-replay.toml`) on free ports, reading the bundled
/// sample in place, at replay `speed`.
pub fn main_job(port: u16, admin: u16, speed: &str) -> String {
    let sample = std::fs::canonicalize("pipelines/sample").expect("the sample is bundled");
    std::fs::read_to_string("pipelines/cardputer-replay.toml")
        .expect("the main pipeline exists")
        .replace("0.0.0.0:8000", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:8686", &format!("127.0.0.1:{admin}"))
        .replace(
            "cache_dir = \"sample\"",
            &format!("cache_dir = \"{}\"", sample.display()),
        )
        .replace(
            "circuit_info = \"sample/",
            &format!("circuit_info = \"{}/", sample.display()),
        )
        .replace("speed = 1.0", &format!("speed = {speed}"))
}

/// GET a JSON document, waiting while it is not there yet (404 before the data arrives).
pub async fn get_json(url: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let response = reqwest::get(url).await.unwrap();
        if response.status().is_success() {
            return response.json().await.unwrap();
        }
        assert!(started.elapsed() < PATIENCE, "{url} never appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A temporary directory holding `pipeline.toml` and its data files.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A workspace with `frames.ndjson`: `count` frames of session "1", 100 ms apart, one
    /// car moving along x.
    pub fn with_frames(count: usize) -> Self {
        let workspace = Self::new();
        let mut text = String::new();
        for i in 0..count {
            text.push_str(&format!(
                "{{\"time_ns\":{},\"kind\":\"frame\",\"session_key\":\"1\",\"t_ms\":{},\"cars\":[{{\"car\":44,\"x\":{}.0,\"y\":5.0,\"position\":1}}]}}\n",
                i as i64 * 100_000_000,
                i * 100,
                i
            ));
        }
        std::fs::write(workspace.path("frames.ndjson"), text).unwrap();
        workspace
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replace the pipeline file the way editors that save by rename do.
    pub fn write_pipeline(&self, text: &str) {
        let temporary = self.path(".pipeline.toml.swp");
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(&temporary, self.path("pipeline.toml")).unwrap();
    }
}

/// The binary running `pipeline.toml` of a workspace.
pub struct Running {
    child: Mutex<Option<tokio::process::Child>>,
    stderr: Arc<Mutex<String>>,
    pid: u32,
}

impl Running {
    pub async fn start(workspace: &Workspace) -> Self {
        Self::spawn(workspace, &[]).await
    }

    pub async fn start_without_watch(workspace: &Workspace) -> Self {
        Self::spawn(workspace, &["--no-watch"]).await
    }

    async fn spawn(workspace: &Workspace, flags: &[&str]) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pitwall-flow"))
            .arg("run")
            .arg(workspace.path("pipeline.toml"))
            .args(flags)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        let pid = child.id().expect("running");
        let stderr = capture_stderr(&mut child);
        Self {
            child: Mutex::new(Some(child)),
            stderr,
            pid,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The process id of the binary.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Resident memory of the binary in kB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("the process is running");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    pub async fn health(&self, admin: u16) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{admin}/health");
        reqwest::get(&url)
            .await
            .expect("admin endpoint answers")
            .json()
            .await
            .expect("health is JSON")
    }

    pub async fn wait_healthy(&self, admin: u16) {
        let started = Instant::now();
        let url = format!("http://127.0.0.1:{admin}/health");
        loop {
            if let Ok(response) = reqwest::get(&url).await {
                if response.status().is_success() {
                    return;
                }
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the pipeline never became healthy; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until the admin endpoint counts these reload results.
    pub async fn wait_reloads(&self, admin: u16, succeeded: u64, failed: u64) {
        let started = Instant::now();
        loop {
            let health = self.health(admin).await;
            let reloads = &health["reloads"];
            if reloads["succeeded"] == succeeded && reloads["failed"] == failed {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "expected {succeeded} ok / {failed} failed reloads, have {reloads}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_exit(&self, limit: Duration) -> Option<i32> {
        let mut child = self.child.lock().unwrap().take().expect("still running");
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => panic!("did not exit within {limit:?}; stderr:\n{}", self.stderr()),
        }
    }

    pub async fn stop(self) {
        self.signal("TERM");
        let code = self.wait_exit(PATIENCE).await;
        assert_eq!(code, Some(0), "stderr:\n{}", self.stderr());
    }
}

/// A WebSocket client reading Cardputer frames in the background.
pub struct Client {
    frames: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
    pub last: Arc<Mutex<String>>,
    pub close_code: Arc<Mutex<Option<u16>>>,
}

impl Client {
    pub async fn connect(port: u16, session: &str) -> Self {
        let url = format!("ws://127.0.0.1:{port}/ws/{session}");
        let started = Instant::now();
        let (mut stream, _) = loop {
            match tokio_tungstenite::connect_async(&url).await {
                Ok(connected) => break connected,
                Err(error) => {
                    assert!(
                        started.elapsed() < PATIENCE,
                        "cannot connect to {url}: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let client = Client {
            frames: Arc::new(AtomicUsize::new(0)),
            closed: Arc::new(AtomicBool::new(false)),
            last: Arc::new(Mutex::new(String::new())),
            close_code: Arc::new(Mutex::new(None)),
        };
        let (frames, closed, last, code) = (
            client.frames.clone(),
            client.closed.clone(),
            client.last.clone(),
            client.close_code.clone(),
        );
        tokio::spawn(async move {
            use tokio_tungstenite::tungstenite::Message;
            while let Some(message) = stream.next().await {
                match message {
                    Ok(Message::Text(text)) => {
                        frames.fetch_add(1, Ordering::SeqCst);
                        *last.lock().unwrap() = text.to_string();
                    }
                    Ok(Message::Close(frame)) => {
                        *code.lock().unwrap() = frame.map(|f| u16::from(f.code));
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            closed.store(true, Ordering::SeqCst);
        });
        client
    }

    pub fn frames(&self) -> usize {
        self.frames.load(Ordering::SeqCst)
    }

    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub async fn wait_for_frames(&self, count: usize) {
        wait_until(&format!("the client has {count} frames"), || {
            self.frames() >= count
        })
        .await;
    }
}
