//! `assetto_grpc` against real tonic clients on loopback: several rigs at once, acks, a
//! client that drops mid-stream, bad input, limits, and shutdown releasing the port.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use pitwall_api::channel::Queue;
use pitwall_api::telemetry::proto::{
    Graphics, Physics, Static, StreamAck, TelemetryFrame, Vec3f, Wheel4f,
};
use pitwall_api::telemetry::to_frame;
use pitwall_api::testing::{build_context, drain, parse_config, wire};
use pitwall_api::{Component, ComponentConfig, Event, Io, Record};
use pitwall_assetto::assetto_grpc::AssettoGrpcConfig;
use pitwall_assetto::service::telemetry_ingest_client::TelemetryIngestClient;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::Code;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn frame(session: &str, i: u64) -> TelemetryFrame {
    let f = i as f32;
    TelemetryFrame {
        monotonic_ns: 1_000_000_000 + i * 3_000_000,
        game: "assetto_corsa".into(),
        session_id: session.into(),
        physics: Some(Physics {
            speed_kmh: 100.0 + f * 0.01,
            gas: 0.75,
            brake: 0.125,
            clutch: 0.0,
            gear: (i % 8) as i32,
            steer: -0.25,
            engine_rpm: 6000.0 + f,
            tyre_slip: Some(Wheel4f {
                fl: 0.1,
                fr: 0.2,
                rl: 0.3,
                rr: 0.4,
            }),
            tyre_load: Some(Wheel4f {
                fl: 3000.0,
                fr: 3100.0,
                rl: 3200.0,
                rr: 3300.0,
            }),
            tyre_temp_c: Some(Wheel4f {
                fl: 80.0,
                fr: 81.0,
                rl: 82.0,
                rr: 83.0,
            }),
            suspension_travel: Some(Wheel4f {
                fl: 0.01,
                fr: 0.02,
                rl: 0.03,
                rr: 0.04,
            }),
            acc_g: Some(Vec3f {
                x: 0.5,
                y: 1.0,
                z: -0.2,
            }),
            velocity: Some(Vec3f {
                x: 10.0,
                y: 0.0,
                z: f,
            }),
            angular_velocity: Some(Vec3f {
                x: 0.0,
                y: 0.1,
                z: 0.0,
            }),
        }),
        graphics: Some(Graphics {
            status: 2,
            completed_laps: (i / 1000) as i32,
            position: 3,
            i_current_time_s: 1.0 + f * 0.003,
            i_last_time_s: 108.25,
            i_best_time_s: 107.5,
            lap_time_s: 1.0 + f * 0.003,
            delta_lap_s: -0.5,
            normalized_car_pos: (i % 1000) as f32 / 1000.0,
        }),
        stat: Some(Static {
            car_model: "ks_ferrari_sf15t".into(),
            track: "monza".into(),
            track_configuration: "gp".into(),
            max_rpm: 15000,
        }),
    }
}

struct Running {
    port: u16,
    task: JoinHandle<(Box<dyn Component>, Io)>,
    output: Arc<Queue>,
    shutdown: pitwall_api::Shutdown,
    metrics: Arc<pitwall_api::ComponentMetrics>,
}

fn start(extra: &str) -> Running {
    let port = free_port();
    let config: AssettoGrpcConfig =
        parse_config(&format!("address = \"127.0.0.1:{port}\"\n{extra}"));
    assert!(config.check().is_empty());
    let component = config.build(&build_context("rigs", ".")).unwrap();
    let wiring = wire("rigs", false);
    launch(port, component, wiring.io, wiring.output)
}

fn launch(port: u16, mut component: Box<dyn Component>, mut io: Io, output: Arc<Queue>) -> Running {
    let shutdown = io.shutdown.clone();
    let metrics = io.metrics.clone();
    let task = tokio::spawn(async move {
        component.run(&mut io).await.expect("source ran cleanly");
        (component, io)
    });
    Running {
        port,
        task,
        output,
        shutdown,
        metrics,
    }
}

async fn connect(port: u16) -> TelemetryIngestClient<Channel> {
    for _ in 0..200 {
        if let Ok(client) = TelemetryIngestClient::connect(format!("http://127.0.0.1:{port}")).await
        {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the gRPC server never came up on port {port}");
}

/// Stream `frames`, return the acks and how the response stream ended.
async fn stream_all(
    mut client: TelemetryIngestClient<Channel>,
    frames: Vec<TelemetryFrame>,
) -> (Vec<u64>, Result<(), tonic::Status>) {
    let mut responses = client
        .stream_frames(futures_util::stream::iter(frames))
        .await
        .expect("stream accepted")
        .into_inner();
    let mut acks = Vec::new();
    loop {
        match responses.message().await {
            Ok(Some(StreamAck { last_monotonic_ns })) => acks.push(last_monotonic_ns),
            Ok(None) => return (acks, Ok(())),
            Err(status) => return (acks, Err(status)),
        }
    }
}

async fn stop(running: Running) -> (Vec<Event>, Box<dyn Component>, Io) {
    running.shutdown.trigger();
    let (component, io) = tokio::time::timeout(Duration::from_secs(10), running.task)
        .await
        .expect("source stops promptly on shutdown")
        .unwrap();
    (drain(&running.output), component, io)
}

fn by_session(events: &[Event]) -> HashMap<String, Vec<TelemetryFrame>> {
    let mut sessions: HashMap<String, Vec<TelemetryFrame>> = HashMap::new();
    for event in events {
        let Record::CarTelemetry(car) = &event.record else {
            panic!("only car_telemetry expected, got {:?}", event.kind());
        };
        sessions
            .entry(car.session.to_string())
            .or_default()
            .push(to_frame(car));
    }
    sessions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_rigs_at_once_every_frame_acked_and_emitted_unchanged() {
    let running = start("");
    let before = now_ns();
    let rigs = ["rig-1", "rig-2", "rig-3"];
    let mut clients = Vec::new();
    for rig in rigs {
        let client = connect(running.port).await;
        let frames: Vec<TelemetryFrame> = (0..2000).map(|i| frame(rig, i)).collect();
        clients.push(tokio::spawn(async move {
            let sent = frames.clone();
            let (acks, end) = stream_all(client, frames).await;
            (sent, acks, end)
        }));
    }
    let mut sent_by_rig = HashMap::new();
    for (rig, client) in rigs.iter().zip(clients) {
        let (sent, acks, end) = client.await.unwrap();
        assert!(end.is_ok(), "{rig}: stream ended with {end:?}");
        let expected: Vec<u64> = sent.iter().map(|f| f.monotonic_ns).collect();
        assert_eq!(acks, expected, "{rig}: one ack per frame, in order");
        sent_by_rig.insert(rig.to_string(), sent);
    }
    let after = now_ns();
    let (events, _, _) = stop(running).await;
    assert_eq!(events.len(), 6000);
    assert!(events
        .iter()
        .all(|e| e.time_ns >= before && e.time_ns <= after));
    let emitted = by_session(&events);
    assert_eq!(emitted.len(), 3);
    for (rig, sent) in sent_by_rig {
        assert!(
            emitted[&rig] == sent,
            "{rig}: records equal the frames sent"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_drops_mid_stream_loses_nothing_it_saw_acked() {
    let running = start("");
    let mut client = connect(running.port).await;
    let frames: Vec<TelemetryFrame> = (0..3000).map(|i| frame("rig-drop", i)).collect();
    // Send everything, keep the request open, read some acks, then vanish.
    let request = futures_util::stream::iter(frames.clone()).chain(futures_util::stream::pending());
    let mut responses = client.stream_frames(request).await.unwrap().into_inner();
    let mut acked = Vec::new();
    while acked.len() < 1234 {
        let ack = responses
            .message()
            .await
            .unwrap()
            .expect("acks keep coming");
        acked.push(ack.last_monotonic_ns);
    }
    drop(responses);
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The server is still up for the next rig.
    let (acks, end) = stream_all(connect(running.port).await, vec![frame("rig-next", 0)]).await;
    assert_eq!(acks.len(), 1);
    assert!(end.is_ok());

    let (events, _, _) = stop(running).await;
    let emitted = by_session(&events);
    let dropped = &emitted["rig-drop"];
    assert!(
        dropped.len() >= acked.len(),
        "every acked frame was emitted"
    );
    assert!(
        dropped[..] == frames[..dropped.len()],
        "what was emitted is the frames sent, in order"
    );
    let acked_expected: Vec<u64> = frames[..acked.len()]
        .iter()
        .map(|f| f.monotonic_ns)
        .collect();
    assert_eq!(acked, acked_expected);
}

/// A client whose messages are raw bytes: to send what is not a `TelemetryFrame`.
mod raw {
    use prost::bytes::BufMut;
    use prost::Message;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    #[derive(Default)]
    pub struct RawCodec;

    pub struct RawEncoder;
    pub struct AckDecoder;

    impl Encoder for RawEncoder {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for AckDecoder {
        type Item = super::StreamAck;
        type Error = tonic::Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
            super::StreamAck::decode(src)
                .map(Some)
                .map_err(|e| tonic::Status::internal(e.to_string()))
        }
    }

    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = super::StreamAck;
        type Encoder = RawEncoder;
        type Decoder = AckDecoder;
        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }
        fn decoder(&mut self) -> AckDecoder {
            AckDecoder
        }
    }

    /// Stream raw messages; the acks and how it ended.
    pub async fn stream_raw(
        port: u16,
        messages: Vec<Vec<u8>>,
    ) -> (Vec<u64>, Result<(), tonic::Status>) {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/telemetry.v1.TelemetryIngest/StreamFrames",
        );
        let request = tonic::Request::new(futures_util::stream::iter(messages));
        let mut responses = grpc
            .streaming(request, path, RawCodec)
            .await
            .unwrap()
            .into_inner();
        let mut acks = Vec::new();
        loop {
            match responses.message().await {
                Ok(Some(ack)) => acks.push(ack.last_monotonic_ns),
                Ok(None) => return (acks, Ok(())),
                Err(status) => return (acks, Err(status)),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_garbage_end_only_their_own_stream() {
    use prost::Message;
    let running = start("max_message_bytes = 65536");

    // A healthy rig streams across the whole test.
    let mut healthy = connect(running.port).await;
    let (feed, rx) = tokio::sync::mpsc::unbounded_channel::<TelemetryFrame>();
    let request = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (frame, rx))
    });
    let mut healthy_acks = healthy.stream_frames(request).await.unwrap().into_inner();
    feed.send(frame("healthy", 0)).unwrap();
    assert_eq!(
        healthy_acks
            .message()
            .await
            .unwrap()
            .unwrap()
            .last_monotonic_ns,
        frame("healthy", 0).monotonic_ns
    );

    // Ten good frames, then one of 100 KiB: ten acks, then OUT_OF_RANGE.
    let mut frames: Vec<TelemetryFrame> = (0..10).map(|i| frame("big", i)).collect();
    let mut huge = frame("big", 10);
    huge.stat.as_mut().unwrap().car_model = "x".repeat(100 * 1024);
    frames.push(huge);
    frames.push(frame("big", 11));
    let (acks, end) = stream_all(connect(running.port).await, frames).await;
    assert_eq!(acks.len(), 10);
    assert_eq!(end.unwrap_err().code(), Code::OutOfRange);

    // Bytes that are not a TelemetryFrame: refused with INTERNAL after the good one.
    let good = frame("garbage", 0).encode_to_vec();
    let (acks, end) = raw::stream_raw(running.port, vec![good, vec![0xff; 40]]).await;
    assert_eq!(acks, vec![frame("garbage", 0).monotonic_ns]);
    assert_eq!(end.unwrap_err().code(), Code::Internal);

    // The healthy rig never noticed.
    for i in 1..100 {
        feed.send(frame("healthy", i)).unwrap();
    }
    for i in 1..100 {
        let ack = healthy_acks.message().await.unwrap().unwrap();
        assert_eq!(ack.last_monotonic_ns, frame("healthy", i).monotonic_ns);
    }
    drop(feed);
    assert!(healthy_acks.message().await.unwrap().is_none());

    assert_eq!(running.metrics.snapshot().errors, 2);
    let (events, _, _) = stop(running).await;
    let emitted = by_session(&events);
    assert_eq!(emitted["healthy"].len(), 100);
    assert_eq!(emitted["big"].len(), 10);
    assert_eq!(emitted["garbage"].len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_stream_limits_are_enforced() {
    let running = start("sessions = [\"rig-1\"]\nmax_streams = 1");
    // A session not on the list: PERMISSION_DENIED, nothing emitted for it.
    let (acks, end) = stream_all(connect(running.port).await, vec![frame("rig-9", 0)]).await;
    assert!(acks.is_empty());
    assert_eq!(end.unwrap_err().code(), Code::PermissionDenied);

    // One stream open; a second one at the same time is refused.
    let mut first = connect(running.port).await;
    let (feed, rx) = tokio::sync::mpsc::unbounded_channel::<TelemetryFrame>();
    let request = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (frame, rx))
    });
    let mut first_acks = first.stream_frames(request).await.unwrap().into_inner();
    feed.send(frame("rig-1", 0)).unwrap();
    assert!(first_acks.message().await.unwrap().is_some());
    let mut second = connect(running.port).await;
    let refused = second
        .stream_frames(futures_util::stream::iter(vec![frame("rig-1", 1)]))
        .await;
    let code = match refused {
        Err(status) => status.code(),
        Ok(response) => response
            .into_inner()
            .message()
            .await
            .expect_err("second stream refused")
            .code(),
    };
    assert_eq!(code, Code::ResourceExhausted);
    drop(feed);
    assert!(first_acks.message().await.unwrap().is_none());

    // Once the first stream is gone, a new one is taken again.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (acks, end) = stream_all(connect(running.port).await, vec![frame("rig-1", 2)]).await;
    assert_eq!(acks.len(), 1);
    assert!(end.is_ok());

    assert_eq!(running.metrics.snapshot().errors, 2);
    let (events, _, _) = stop(running).await;
    let emitted = by_session(&events);
    assert_eq!(emitted.keys().collect::<Vec<_>>(), vec!["rig-1"]);
    assert_eq!(emitted["rig-1"].len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_streams_and_releases_the_port_for_a_restart() {
    let running = start("");
    let port = running.port;
    let mut client = connect(port).await;
    let request =
        futures_util::stream::iter(vec![frame("rig-1", 0)]).chain(futures_util::stream::pending());
    let mut acks = client.stream_frames(request).await.unwrap().into_inner();
    assert!(acks.message().await.unwrap().is_some());

    let output = running.output.clone();
    running.shutdown.trigger();
    // The open stream is told the server is going away.
    let status = tokio::time::timeout(Duration::from_secs(5), acks.message())
        .await
        .expect("stream ends on shutdown")
        .expect_err("with a status");
    assert_eq!(status.code(), Code::Unavailable);
    let (component, mut io) = tokio::time::timeout(Duration::from_secs(10), running.task)
        .await
        .expect("run returns after shutdown")
        .unwrap();
    assert_eq!(drain(&output).len(), 1);

    // The same instance runs again on the same port (as the engine restarts it).
    let fresh = wire("rigs", false);
    io.shutdown = fresh.io.shutdown.clone();
    io.output = fresh.io.output.clone();
    let running = launch(port, component, io, fresh.output);
    let (acks, end) = stream_all(connect(port).await, vec![frame("rig-1", 1)]).await;
    assert_eq!(acks.len(), 1);
    assert!(end.is_ok());
    let (events, _, _) = stop(running).await;
    assert_eq!(events.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_session_id_is_tagged_by_its_peer() {
    let running = start("");
    let (acks, end) = stream_all(
        connect(running.port).await,
        vec![frame("", 0), frame("", 1)],
    )
    .await;
    assert_eq!(acks.len(), 2);
    assert!(end.is_ok());
    let (events, _, _) = stop(running).await;
    let emitted = by_session(&events);
    assert_eq!(emitted.len(), 1);
    let (session, frames) = emitted.into_iter().next().unwrap();
    let peer: std::net::SocketAddr = session.parse().expect("the peer's address");
    assert!(peer.ip().is_loopback());
    assert_eq!(frames.len(), 2);
}
