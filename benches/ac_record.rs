//! Sim rigs streaming over gRPC into recordings, end to end: the real `pitwall-flow` binary
//! runs an `ac-record`-shaped pipeline (`assetto_grpc` -> `proto_record` + `parquet`) and
//! this process plays the rigs' bridges with tonic clients on loopback.
//!
//!     cargo bench --bench ac_record                       # throughput
//!     SOAK_SECS=3600 cargo bench --bench ac_record        # an hour at a realistic rate
//!
//! The recording is compressed at `GZIP_LEVEL` (default 1, as `pipelines/ac-record.toml`:
//! level 6 costs a whole core at these rates; on the development machine it gave 204 k
//! frames/s against 318 k at level 1).
//!
//! Throughput mode: `RIGS` rigs (default 8) send `FRAMES` frames each (default 100,000) as
//! fast as acks allow; the clock stops when the process has exited after SIGTERM, i.e.
//! when every acked frame is in a finished `.pb.gz` file and a closed Parquet file. Prints
//! frames/s and the server's peak RSS, then checks the files hold every frame.
//!
//! Soak mode: `RIGS` rigs (default 20) at `RATE` frames/s each (default 333, the bridge's
//! rate) for `SOAK_SECS`; the server's RSS is sampled every 10 s and printed, and the run
//! fails if the last quarter's RSS grew by more than 10% over the second quarter's.

use std::path::Path;
use std::time::{Duration, Instant};

use pitwall_api::telemetry::proto::{Graphics, Physics, Static, TelemetryFrame, Vec3f, Wheel4f};
use pitwall_assetto::service::telemetry_ingest_client::TelemetryIngestClient;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wheels(base: f32) -> Option<Wheel4f> {
    Some(Wheel4f {
        fl: base,
        fr: base + 1.0,
        rl: base + 2.0,
        rr: base + 3.0,
    })
}

/// A frame as the bridge sends it: all three pages, about 300 bytes encoded.
fn frame(session: &str, i: u64) -> TelemetryFrame {
    let f = (i % 100_000) as f32;
    TelemetryFrame {
        monotonic_ns: i * 3_003_003,
        game: "assetto_corsa".into(),
        session_id: session.into(),
        physics: Some(Physics {
            speed_kmh: 120.0 + (f * 0.01).sin() * 100.0,
            gas: 0.9,
            brake: 0.0,
            clutch: 0.0,
            gear: 5,
            steer: (f * 0.003).sin(),
            engine_rpm: 7000.0 + f * 1e-2,
            tyre_slip: wheels(0.1),
            tyre_load: wheels(3000.0),
            tyre_temp_c: wheels(85.0),
            suspension_travel: wheels(0.02),
            acc_g: Some(Vec3f {
                x: 0.3,
                y: 1.0,
                z: 0.1,
            }),
            velocity: Some(Vec3f {
                x: 12.0,
                y: 0.0,
                z: 48.0,
            }),
            angular_velocity: Some(Vec3f {
                x: 0.0,
                y: 0.2,
                z: 0.0,
            }),
        }),
        graphics: Some(Graphics {
            status: 2,
            completed_laps: (i / 30_000) as i32,
            position: 2,
            i_current_time_s: (i % 30_000) as f32 * 0.003,
            i_last_time_s: 108.3,
            i_best_time_s: 107.9,
            lap_time_s: (i % 30_000) as f32 * 0.003,
            delta_lap_s: 0.2,
            normalized_car_pos: (i % 30_000) as f32 / 30_000.0,
        }),
        stat: Some(Static {
            car_model: "ks_ferrari_sf15t".into(),
            track: "monza".into(),
            track_configuration: String::new(),
            max_rpm: 15000,
        }),
    }
}

fn pipeline(port: u16, dir: &Path) -> String {
    format!(
        r#"
[sources.rigs]
type = "assetto_grpc"
address = "127.0.0.1:{port}"

[sinks.recording]
type = "proto_record"
inputs = ["rigs"]
path = "{dir}/pbgz/"
gzip_level = {gzip_level}

[sinks.parquet]
type = "parquet"
inputs = ["rigs"]
path = "{dir}/parquet"
"#,
        dir = dir.display(),
        gzip_level = env_or("GZIP_LEVEL", 1),
    )
}

/// Resident set size of `pid` in KiB (Linux), and its peak.
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

async fn connect(port: u16) -> TelemetryIngestClient<tonic::transport::Channel> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match TelemetryIngestClient::connect(format!("http://127.0.0.1:{port}")).await {
            Ok(client) => return client,
            Err(error) => {
                assert!(Instant::now() < deadline, "server never came up: {error}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Streams `frames` frames of `session` at `rate` frames/s (0 = as fast as acks allow);
/// returns how many were acked.
async fn rig(port: u16, session: String, frames: u64, rate: u64) -> u64 {
    let mut client = connect(port).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<TelemetryFrame>(1024);
    let producer = tokio::spawn(async move {
        let started = Instant::now();
        for i in 0..frames {
            if let Some(offset_ns) = (i * 1_000_000_000).checked_div(rate) {
                let due = started + Duration::from_nanos(offset_ns);
                tokio::time::sleep_until(due.into()).await;
            }
            if tx.send(frame(&session, i)).await.is_err() {
                return;
            }
        }
    });
    let mut acks = client
        .stream_frames(tokio_stream_from(rx))
        .await
        .expect("stream accepted")
        .into_inner();
    let mut acked = 0;
    while let Ok(Some(_)) = acks.message().await {
        acked += 1;
    }
    producer.abort();
    acked
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<TelemetryFrame>,
) -> impl futures_util::Stream<Item = TelemetryFrame> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn count_pbgz_frames(dir: &Path) -> u64 {
    let mut frames = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let mut reader = pitwall_files::pbgz::open_path(&entry.unwrap().path()).unwrap();
        while let pitwall_files::pbgz::Next::Frame(_) = reader.next_frame() {
            frames += 1;
        }
    }
    frames
}

fn count_parquet_rows(dir: &Path) -> u64 {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let file = std::fs::File::open(entry.unwrap().path()).unwrap();
            let reader = SerializedFileReader::new(file).unwrap();
            reader.metadata().file_metadata().num_rows() as u64
        })
        .sum()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let soak_secs = env_or("SOAK_SECS", 0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let file = dir.path().join("ac-record.toml");
        std::fs::write(&file, pipeline(port, dir.path())).unwrap();
        let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_pitwall-flow"))
            .args(["run", "--no-watch"])
            .arg(&file)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = server.id().unwrap();
        let soak = soak_secs > 0;
        let rigs = env_or("RIGS", if soak { 20 } else { 8 });
        let rate = if soak { env_or("RATE", 333) } else { 0 };
        let per_rig = if soak {
            soak_secs * rate
        } else {
            env_or("FRAMES", 100_000)
        };
        connect(port).await;
        let started = Instant::now();
        let tasks: Vec<_> = (0..rigs)
            .map(|r| tokio::spawn(rig(port, format!("rig-{r}"), per_rig, rate)))
            .collect();
        let mut samples = Vec::new();
        if soak {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            while !tasks.iter().all(|t| t.is_finished()) {
                tick.tick().await;
                if let Some((rss, _)) = rss_kib(pid) {
                    samples.push(rss);
                    println!(
                        "soak t={:>5}s rss={:>7.1} MiB",
                        started.elapsed().as_secs(),
                        rss as f64 / 1024.0
                    );
                }
            }
        }
        let mut acked = 0;
        for task in tasks {
            acked += task.await.unwrap();
        }
        let ingest = started.elapsed();
        let peak = rss_kib(pid).map_or(0, |(_, hwm)| hwm);
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let status = server.wait().await.unwrap();
        let total = started.elapsed();
        assert!(status.success(), "pitwall-flow exited with {status}");
        let sent = rigs * per_rig;
        let recorded = count_pbgz_frames(&dir.path().join("pbgz"));
        let rows = count_parquet_rows(&dir.path().join("parquet"));
        println!(
            "ac_record: {rigs} rigs x {per_rig} frames: {acked} acked, {recorded} in .pb.gz, {rows} Parquet rows"
        );
        println!(
            "ac_record: acked {:.0} frames/s; recorded and closed {:.0} frames/s; server peak RSS {:.1} MiB",
            acked as f64 / ingest.as_secs_f64(),
            acked as f64 / total.as_secs_f64(),
            peak as f64 / 1024.0
        );
        assert_eq!(acked, sent, "every frame acked");
        assert_eq!(recorded, acked, "every acked frame is in the recording");
        assert_eq!(rows, acked, "every acked frame is in Parquet");
        if soak && samples.len() >= 8 {
            let quarter = samples.len() / 4;
            let mean = |s: &[u64]| s.iter().sum::<u64>() as f64 / s.len() as f64;
            let second = mean(&samples[quarter..2 * quarter]);
            let last = mean(&samples[3 * quarter..]);
            println!(
                "soak: mean RSS second quarter {:.1} MiB, last quarter {:.1} MiB",
                second / 1024.0,
                last / 1024.0
            );
            assert!(last <= second * 1.10, "memory grew during the soak");
        }
    });
}
