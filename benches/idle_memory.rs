//! Idle memory of a small pipeline: the release binary runs a file source, a filter, a file
//! sink and a Cardputer sink with the admin endpoint; after it settles, its resident set
//! (VmRSS) and peak (VmHWM) are read from /proc. `cargo bench --bench idle_memory`.

use std::process::{Command, Stdio};
use std::time::Duration;

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    if !std::path::Path::new("/proc/self/status").exists() {
        println!("idle_memory: needs Linux /proc; skipped");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut frames = String::new();
    for i in 0..100 {
        frames.push_str(&format!(
            "{{\"time_ns\":{},\"kind\":\"frame\",\"session_key\":\"1\",\"t_ms\":{},\"cars\":[{{\"car\":1,\"x\":{i}.0,\"y\":0.0,\"position\":1}}]}}\n",
            i * 100_000_000,
            i * 100
        ));
    }
    std::fs::write(dir.path().join("frames.ndjson"), frames).unwrap();
    let port = |l: std::net::TcpListener| l.local_addr().unwrap().port();
    let web = port(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let admin = port(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let pipeline = format!(
        r#"
[sources.replay]
type = "file"
path = "frames.ndjson"
loop = true

[transforms.only_frames]
type = "filter"
inputs = ["replay"]
include_kinds = ["frame"]

[sinks.recorder]
type = "file"
inputs = ["only_frames"]
path = "out.ndjson"

[sinks.screen]
type = "cardputer"
inputs = ["only_frames"]
address = "127.0.0.1:{web}"

[admin]
address = "127.0.0.1:{admin}"
"#
    );
    let file = dir.path().join("pipeline.toml");
    std::fs::write(&file, pipeline).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pitwall-flow"))
        .arg("run")
        .arg(&file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    std::thread::sleep(Duration::from_secs(5));
    let pid = child.id();
    let rss = status_kib(pid, "VmRSS:");
    let peak = status_kib(pid, "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    match (rss, peak) {
        (Some(rss), Some(peak)) => println!(
            "idle_memory/small_pipeline (5 components, 10 events/s): VmRSS {:.1} MiB, VmHWM {:.1} MiB",
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        ),
        _ => println!("idle_memory: the process exited early"),
    }
}
