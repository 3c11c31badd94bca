//! A full-length race from the OpenF1 cache to 100 ms Cardputer frames at speed 0: the
//! real binary runs `openf1 -> track_layout -> resample -> cardputer` and exits when done.
//! Reports wall time and peak RSS of that process. `cargo bench --bench replay_race`.
//!
//! The race is the simulator's (`sample-session`), 85 laps of Monza with 20 cars: about two
//! hours, ~1.1 million `location` + `car_data` rows at OpenF1's 3.7 Hz, written uncompressed.

use std::process::Command;
use std::time::Instant;

use pitwall_openf1::sample::{generate, SampleOptions};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SampleOptions {
        session_key: 9999,
        laps: 85,
        cars: 20,
        seed: 7,
        gzip: false,
        out_dir: dir.path().join("cache"),
    };
    let summary = generate(&options).expect("the race is generated");
    let rows = summary.location_rows + summary.car_data_rows;
    let pipeline = format!(
        r#"
[sources.f1]
type = "openf1"
session_key = 9999
cache_dir = "{cache}"
speed = 0

[transforms.layout]
type = "track_layout"
inputs = ["f1"]

[transforms.frames]
type = "resample"
inputs = ["f1", "layout"]

[sinks.cardputer]
type = "cardputer"
inputs = ["f1", "layout", "frames"]
address = "127.0.0.1:0"

[runtime]
exit_when_done = true
"#,
        cache = options.out_dir.display()
    );
    let file = dir.path().join("race.toml");
    std::fs::write(&file, pipeline).unwrap();

    for run in 0..3 {
        let started = Instant::now();
        // Reaped by wait4 below, which also reports the peak memory `Child::wait` cannot.
        #[allow(clippy::zombie_processes)]
        let child = Command::new(env!("CARGO_BIN_EXE_pitwall-flow"))
            .arg("run")
            .arg("--no-watch")
            .arg(&file)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("the binary starts");
        let (status, peak_kib) = wait_with_peak_rss(child.id());
        let elapsed = started.elapsed();
        assert_eq!(status, 0, "the pipeline exits cleanly");
        println!(
            "replay_race/85_laps_20_cars run {run}: {rows} rows -> frames in {:.3} s, peak RSS {:.1} MiB",
            elapsed.as_secs_f64(),
            peak_kib as f64 / 1024.0
        );
    }
}

/// Wait for `pid` and return its exit code and peak resident set (KiB), from wait4(2).
fn wait_with_peak_rss(pid: u32) -> (i32, i64) {
    let mut status = 0;
    // SAFETY: rusage is plain data filled in by the kernel; pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid as libc::pid_t, "wait4 failed");
    (libc::WEXITSTATUS(status), usage.ru_maxrss)
}
