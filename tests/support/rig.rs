//! A sim rig for tests: the Assetto Corsa bridge's gRPC client streaming numbered frames
//! (frame `i` has `monotonic_ns = 1_000 + i` and `speed_kmh = i`) to `assetto_grpc`.

use std::time::{Duration, Instant};

use pitwall_api::telemetry::proto::{Physics, TelemetryFrame};
use pitwall_assetto::service::telemetry_ingest_client::TelemetryIngestClient;
use tonic::transport::Channel;

use crate::support::PATIENCE;

pub type Rig = TelemetryIngestClient<Channel>;

/// Frame number `i` of a rig.
pub fn frame(i: u64) -> TelemetryFrame {
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

/// Connect to the gRPC server on `port`, waiting for it to come up.
pub async fn connect(port: u16) -> Rig {
    let started = Instant::now();
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

/// Stream frames `from..to` and wait until every one is acknowledged (in the pipeline);
/// the last acknowledged `monotonic_ns`.
pub async fn send(client: &mut Rig, from: u64, to: u64) -> Option<u64> {
    let mut acks = client
        .stream_frames(futures_util::stream::iter((from..to).map(frame)))
        .await
        .expect("stream accepted")
        .into_inner();
    let (mut acked, mut last) = (0, None);
    while let Some(ack) = acks.message().await.expect("acks") {
        acked += 1;
        last = Some(ack.last_monotonic_ns);
    }
    assert_eq!(acked, to - from, "every frame acknowledged");
    last
}
