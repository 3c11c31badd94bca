//! A recording survives the process being killed: rigs stream over gRPC into `proto_record`,
//! the process gets SIGKILL (no shutdown, no flush, no gzip trailer), and every frame that
//! was acknowledged before the last periodic flush reads back from the cut file.
//!
//! What is lost, stated: frames acknowledged after the last flush (at most
//! `flush_interval_ms` of them). Parquet files of a killed process have no footer and are
//! not readable; that is why recordings that must survive a crash go to `.pb.gz` too.

mod support;

use std::time::Duration;

use pitwall_api::telemetry::proto::{Physics, TelemetryFrame};
use pitwall_assetto::service::telemetry_ingest_client::TelemetryIngestClient;
use pitwall_files::pbgz::{self, End, Next};
use support::{free_port, Running, Workspace, PATIENCE};

fn frame(i: u64) -> TelemetryFrame {
    TelemetryFrame {
        monotonic_ns: 1_000 + i,
        game: "assetto_corsa".into(),
        session_id: "rig-1".into(),
        physics: Some(Physics {
            speed_kmh: i as f32,
            gear: 3,
            ..Default::default()
        }),
        graphics: None,
        stat: None,
    }
}

async fn connect(port: u16) -> TelemetryIngestClient<tonic::transport::Channel> {
    let started = std::time::Instant::now();
    loop {
        match TelemetryIngestClient::connect(format!("http://127.0.0.1:{port}")).await {
            Ok(client) => return client,
            Err(error) => {
                assert!(started.elapsed() < PATIENCE, "no gRPC server: {error}");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }
}

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
    let mut acks = client
        .stream_frames(futures_util::stream::iter((0..frames).map(frame)))
        .await
        .expect("stream accepted")
        .into_inner();
    let mut last_acked = None;
    let mut acked = 0u64;
    while let Some(ack) = acks.message().await.expect("acks") {
        last_acked = Some(ack.last_monotonic_ns);
        acked += 1;
    }
    assert_eq!(acked, frames, "every frame acknowledged");
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
