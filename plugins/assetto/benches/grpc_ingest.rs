//! Ingest throughput of `assetto_grpc`: N rigs stream frames over loopback into the source
//! (tonic clients in the same process, so client and server share the machine's cores),
//! every frame is acked, and a consumer drains what the source emits. Prints frames/s.
//!
//!     cargo bench -p pitwall-assetto --bench grpc_ingest
//!
//! `RIGS` (default 8) and `FRAMES` per rig (default 100000) change the load.
//!
//! On the 2-core development machine, with other builds running: about 410,000 frames/s
//! (8 x 100,000 frames, one ack each). Before the service used `crate::codec` (prost
//! reading and writing field by field through tonic's buffers) it was about 260,000.

use std::time::{Duration, Instant};

use pitwall_api::telemetry::proto::{Graphics, Physics, Static, TelemetryFrame, Vec3f, Wheel4f};
use pitwall_api::testing::{build_context, parse_config, wire};
use pitwall_api::ComponentConfig;
use pitwall_assetto::assetto_grpc::AssettoGrpcConfig;
use pitwall_assetto::service::telemetry_ingest_client::TelemetryIngestClient;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wheels(base: f32) -> Option<Wheel4f> {
    Some(Wheel4f {
        fl: base,
        fr: base + 1.0,
        rl: base + 2.0,
        rr: base + 3.0,
    })
}

/// A full frame, as the bridge sends it (all three pages), about 300 bytes encoded.
fn frame(session: &str, i: u64) -> TelemetryFrame {
    let f = i as f32;
    TelemetryFrame {
        monotonic_ns: i * 3_003_003,
        game: "assetto_corsa".into(),
        session_id: session.into(),
        physics: Some(Physics {
            speed_kmh: 180.0 + f * 1e-3,
            gas: 0.9,
            brake: 0.0,
            clutch: 0.0,
            gear: 5,
            steer: 0.05,
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
            completed_laps: 4,
            position: 2,
            i_current_time_s: 12.5,
            i_last_time_s: 108.3,
            i_best_time_s: 107.9,
            lap_time_s: 12.5,
            delta_lap_s: 0.2,
            normalized_car_pos: 0.3,
        }),
        stat: Some(Static {
            car_model: "ks_ferrari_sf15t".into(),
            track: "monza".into(),
            track_configuration: String::new(),
            max_rpm: 15000,
        }),
    }
}

fn main() {
    let rigs = env_or("RIGS", 8);
    let per_rig = env_or("FRAMES", 100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config: AssettoGrpcConfig = parse_config(&format!("address = \"127.0.0.1:{port}\""));
        let mut component = config.build(&build_context("rigs", ".")).unwrap();
        let mut wiring = wire("rigs", false);
        let output = wiring.output.clone();
        let queue = wiring.output.clone();
        let shutdown = wiring.io.shutdown.clone();
        let server = tokio::spawn(async move { component.run(&mut wiring.io).await.unwrap() });
        // The pipeline behind the source: take every batch as it comes.
        let consumer = tokio::spawn(async move {
            let mut events = 0usize;
            while let Some(batch) = output.pop().await {
                events += batch.len();
            }
            events
        });

        let mut clients = Vec::new();
        for rig in 0..rigs {
            let client = loop {
                match TelemetryIngestClient::connect(format!("http://127.0.0.1:{port}")).await {
                    Ok(client) => break client,
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            };
            let frames: Vec<TelemetryFrame> = (0..per_rig as u64)
                .map(|i| frame(&format!("rig-{rig}"), i))
                .collect();
            clients.push((client, frames));
        }

        let started = Instant::now();
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|(mut client, frames)| {
                tokio::spawn(async move {
                    let mut acks = client
                        .stream_frames(futures_util::stream::iter(frames))
                        .await
                        .unwrap()
                        .into_inner();
                    let mut count = 0usize;
                    while let Some(_ack) = acks.message().await.unwrap() {
                        count += 1;
                    }
                    count
                })
            })
            .collect();
        let mut acked = 0;
        for task in tasks {
            acked += task.await.unwrap();
        }
        let elapsed = started.elapsed();

        shutdown.trigger();
        server.await.unwrap();
        let total = rigs * per_rig;
        assert_eq!(acked, total, "every frame acked");
        // The source is done: close its output so the consumer sees the end.
        queue.close();
        assert_eq!(consumer.await.unwrap(), total, "every frame emitted");
        let rate = total as f64 / elapsed.as_secs_f64();
        println!(
            "grpc_ingest: {rigs} rigs x {per_rig} frames = {total} frames acked in {:.3} s: {:.0} frames/s",
            elapsed.as_secs_f64(),
            rate
        );
    });
}
