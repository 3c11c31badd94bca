//! `pitwall-flow convert`, whole process: the real binary turns a 2 M-frame `.pb.gz`
//! (294 MB, see `plugins/files/benches/recording/mod.rs`) into Parquet, five times.
//!
//!     cargo bench --bench convert
//!     FRAMES=500000 RUNS=9 cargo bench --bench convert
//!
//! Prints frames per second of the whole process (start to exit, as a user sees it: the
//! median run, and the fastest and slowest), its CPU time (user + system, all threads) and
//! its peak resident memory, from the kernel's accounting of the finished child. Wall-clock
//! figures need an otherwise idle machine; CPU seconds do not.

#[path = "../plugins/files/benches/recording/mod.rs"]
mod recording;

use std::process::Command;
use std::time::Instant;

struct Run {
    seconds: f64,
    cpu_seconds: f64,
    peak_mib: f64,
}

/// Run the binary once and wait for it with `wait4`, for its own resource usage.
fn convert_once(input: &std::path::Path, output: &std::path::Path) -> Run {
    let started = Instant::now();
    // Waited for below with wait4, which std's `wait` cannot do, to get its rusage.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_pitwall-flow"))
        .arg("convert")
        .arg(input)
        .arg("-o")
        .arg(output)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the binary starts");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; `status` and `usage` are valid.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(waited, pid, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "convert failed"
    );
    let time = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Run {
        seconds,
        cpu_seconds: time(usage.ru_utime) + time(usage.ru_stime),
        peak_mib: usage.ru_maxrss as f64 / 1024.0,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let frames = env("FRAMES", 2_000_000);
    let runs = env("RUNS", 5).max(1) as usize;
    let input = recording::recording(frames);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut results: Vec<Run> = (0..runs)
        .map(|n| {
            let output = dir.path().join(format!("run-{n}.parquet"));
            let run = convert_once(&input, &output);
            // Deleting a large file takes a while: not part of the next run.
            std::fs::remove_file(&output).expect("the output exists");
            run
        })
        .collect();
    results.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let median = &results[results.len() / 2];
    let rate = |run: &Run| frames as f64 / run.seconds;
    println!(
        "convert/{frames}_frames: {:.0} frames/s median of {runs} (whole process {:.2} s; \
         fastest {:.0}, slowest {:.0} frames/s), {:.2} CPU-s, peak {:.0} MiB",
        rate(median),
        median.seconds,
        rate(&results[0]),
        rate(&results[results.len() - 1]),
        median.cpu_seconds,
        results.iter().map(|r| r.peak_mib).fold(0.0, f64::max),
    );
}
