//! A recording survives the process being killed: rigs stream over gRPC into `proto_record`,
//! the process gets SIGKILL (no shutdown, no flush, no gzip trailer), and every frame that
//! was acknowledged before the last periodic flush reads back from the cut file.
//!
//! What is lost, stated: frames acknowledged after the last flush (at most
//! `flush_interval_ms` of them). Parquet files of a killed process have no footer and are
//! not readable; that is why recordings that must survive a crash go to `.pb.gz` too.

#[path = "support/rig.rs"]
mod rig;
mod support;

use std::time::Duration;

use pitwall_files::pbgz::{self, End, Next};
use rig::{connect, send};
use support::{free_port, Running, Workspace, PATIENCE};

#[tokio::test]
async fn sigkill_keeps_every_flushed_frame_readable() {
    let workspace = Workspace::new();
    let port = free_port();
    workspace.write_pipeline(&format!(
        r#"
[sources.rigs]
type = "assetto_grpc"
address = "127.0.0.1:{port}"

[sinks.recording]
type = "proto_record"
inputs = ["rigs"]
path = "recordings/"
flush_interval_ms = 100
"#
    ));
    let running = Running::start_without_watch(&workspace).await;
    let mut client = connect(port).await;

    let frames = 5_000u64;
    let last_acked = send(&mut client, 0, frames).await;
    assert_eq!(last_acked, Some(1_000 + frames - 1));

    // Several flush intervals pass, then the process dies without any chance to clean up.
    tokio::time::sleep(Duration::from_millis(600)).await;
    running.signal("KILL");
    assert_eq!(
        running.wait_exit(PATIENCE).await,
        None,
        "killed by a signal"
    );

    let dir = workspace.path("recordings");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the recording directory exists")
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one recording: {files:?}");
    let mut reader = pbgz::open_path(&files[0]).unwrap();
    let mut strings = Default::default();
    let mut read = Vec::new();
    let end = loop {
        match reader.next_frame() {
            Next::Frame(bytes) => read.push(pbgz::decode_car(bytes, &mut strings).unwrap()),
            Next::End(end) => break end,
        }
    };
    assert!(
        !matches!(end, End::TooLarge(_)),
        "a cut file ends like a cut file, not as corrupt: {end}"
    );
    assert_eq!(
        read.len() as u64,
        frames,
        "every acknowledged frame was flushed before the kill (end: {end})"
    );
    for (i, car) in read.iter().enumerate() {
        assert_eq!(car.monotonic_ns, 1_000 + i as u64, "in order, none twice");
        assert_eq!(car.gear, 2, "AC gear 3 is second gear");
    }
}

/// A `file` sink whose path is a FIFO that nobody reads blocks in the kernel opening it.
/// Ctrl-C must still end the process, with the documented exit code 2 (a sink aborted at
/// the shutdown deadline), instead of hanging until SIGKILL.
#[cfg(unix)]
#[tokio::test]
async fn a_sink_stuck_on_a_fifo_nobody_reads_does_not_hold_the_exit() {
    let workspace = Workspace::new();
    let fifo = workspace.path("out.ndjson");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    std::fs::write(
        workspace.path("in.ndjson"),
        "{\"time_ns\":1,\"kind\":\"command\",\"name\":\"start\"}\n",
    )
    .unwrap();
    workspace.write_pipeline(
        r#"
[sources.replay]
type = "file"
path = "in.ndjson"
speed = 0

[sinks.out]
type = "file"
inputs = ["replay"]
path = "out.ndjson"

[runtime]
shutdown_timeout_ms = 500
"#,
    );
    let running = Running::start_without_watch(&workspace).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    running.signal("INT");
    let code = running.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(code, Some(2), "{}", running.stderr());
}
