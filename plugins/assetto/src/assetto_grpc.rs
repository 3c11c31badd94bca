//! Source `assetto_grpc`: a gRPC server for the sim-rig bridges (FORMATS.md 5a).
//!
//! Each rig's bridge reads the game's shared memory and streams `telemetry.v1.TelemetryFrame`s
//! to `TelemetryIngest/StreamFrames`; the server answers every frame with a `StreamAck`
//! carrying its `monotonic_ns`. The contract this source keeps:
//!
//! - **An ack means the frame is in the pipeline.** A frame is acked only after the batch it
//!   belongs to was accepted by the output (`io.output.send` returned), so a client that
//!   disconnects mid-stream loses nothing it saw acked. One ack per frame, never coalesced:
//!   the deployed bridge counts them.
//! - **Many rigs at once.** Every stream is read by its own task; its records carry the
//!   frame's `session_id` as `session` (the peer's address when a bridge sends none).
//!   `max_streams` bounds how many rigs may stream at once; `sessions` optionally lists
//!   the session ids accepted.
//! - **Throughput.** Every frame already received on a stream (up to 512) is decoded into
//!   one batch, sent with one `send`, then acked; the acks of a batch go to the response
//!   stream in one channel message and tonic writes them out together.
//! - **Bad input stays on its stream.** A message over `max_message_bytes`, bytes that are
//!   not a `TelemetryFrame`, or a session not on the list: counted as an error, logged
//!   (the first few, then every 1000th), and that stream ends with a gRPC status. Other
//!   streams carry on.
//! - **Shutdown.** Every stream ends with `UNAVAILABLE`, the listening socket is closed at
//!   once and connections get a short grace period, so a restart can bind the port again.
//!   The port is bound when the component starts (not at build), so a reload that
//!   rebuilds this source hands the port from the old instance to the new one; a port
//!   held by another program is an error the engine retries with backoff.
//!
//! Event time is the wall clock when the frames arrived; `monotonic_ns` keeps the rig's.
//!
//! ```toml
//! [sources.rigs]
//! type = "assetto_grpc"
//! address = "127.0.0.1:50051"      # "0.0.0.0:50051" for bridges on other PCs
//! max_message_bytes = 16777216    # 16 MiB, as the reference server
//! max_streams = 64                # rigs streaming at once
//! # sessions = ["rig-1", "rig-2"] # accept only these session ids
//! ```

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{FutureExt, Stream};
use pitwall_api::component::{parse_listen_address, OptionProblem};
use pitwall_api::telemetry::proto::{StreamAck, TelemetryFrame};
use pitwall_api::telemetry::{from_frame, FrameStrings};
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentMetrics, ComponentSpec,
    Event, Io, Kinds, Listener, Output, Record, RecordKind, Role, Shutdown,
};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::sync::mpsc;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::service::telemetry_ingest_server::{TelemetryIngest, TelemetryIngestServer};
use crate::util::{now_ns, LogLimiter};

/// Options of the `assetto_grpc` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssettoGrpcConfig {
    /// Address the gRPC server listens on: `127.0.0.1:50051` for a bridge on this machine,
    /// `0.0.0.0:50051` for rigs on other PCs.
    #[serde(default = "default_address")]
    pub address: String,
    /// Largest message accepted, in bytes; a larger one ends its stream with
    /// `OUT_OF_RANGE`.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Session ids accepted; a stream sending any other ends with `PERMISSION_DENIED`.
    /// Every session id is accepted when this is not set.
    #[serde(default)]
    pub sessions: Option<Vec<String>>,
    /// Most streams (rigs) at once; one more is refused with `RESOURCE_EXHAUSTED`.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
}

fn default_address() -> String {
    "127.0.0.1:50051".into()
}
fn default_max_message_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_max_streams() -> usize {
    64
}

impl ComponentConfig for AssettoGrpcConfig {
    fn emits(&self) -> Kinds {
        Kinds::of(&[RecordKind::CarTelemetry])
    }

    fn listeners(&self) -> Vec<Listener> {
        // Not HTTP routes: gRPC claims the whole address.
        match parse_listen_address(&self.address) {
            Ok(address) => vec![Listener {
                option: "address",
                address,
                routes: Vec::new(),
            }],
            Err(_) => Vec::new(),
        }
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if let Err(message) = parse_listen_address(&self.address) {
            problems.push(OptionProblem::new("address", message));
        }
        if self.max_message_bytes < 1024 {
            problems.push(OptionProblem::new(
                "max_message_bytes",
                "must be at least 1024 (a frame is a few hundred bytes)",
            ));
        }
        if self.max_streams == 0 {
            problems.push(OptionProblem::new("max_streams", "must be at least 1"));
        }
        if let Some(sessions) = &self.sessions {
            if sessions.is_empty() {
                problems.push(OptionProblem::new(
                    "sessions",
                    "an empty list accepts nobody; leave the option out to accept every session",
                ));
            }
        }
        problems
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        let address = parse_listen_address(&self.address)?;
        Ok(Box::new(AssettoGrpcSource {
            config: self.clone(),
            address,
            errors: Arc::new(LogLimiter::default()),
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<AssettoGrpcConfig>(
        "assetto_grpc",
        Role::Source,
        "Assetto Corsa telemetry streamed by sim-rig bridges over gRPC (telemetry.v1), acked per frame",
    )
}

/// Most frames decoded into one batch (one `send`, then their acks).
pub const MAX_FRAMES_PER_BATCH: usize = 512;
/// Batches of acks a stream may have waiting for the client to read them.
const ACK_BATCHES: usize = 8;
/// How long connections get to close after shutdown before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

struct AssettoGrpcSource {
    config: AssettoGrpcConfig,
    address: SocketAddr,
    /// Survives restarts of `run`, so rate-limited logging keeps counting.
    errors: Arc<LogLimiter>,
}

#[async_trait]
impl Component for AssettoGrpcSource {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let listener = tokio::net::TcpListener::bind(self.address)
            .await
            .map_err(|error| format!("cannot listen on {}: {error}", self.address))?;
        let local = listener.local_addr()?;
        tracing::info!(component = %io.id, address = %local, "gRPC ingest listening");

        let ingest = Ingest {
            shared: Arc::new(Shared {
                id: io.id.clone(),
                output: io.output.clone(),
                metrics: io.metrics.clone(),
                shutdown: io.shutdown.clone(),
                sessions: self.config.sessions.clone(),
                max_streams: self.config.max_streams,
                active: AtomicUsize::new(0),
                errors: self.errors.clone(),
            }),
        };
        let service = TelemetryIngestServer::new(ingest)
            .max_decoding_message_size(self.config.max_message_bytes);
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let stop = io.shutdown.clone();
        let serve = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move { stop.triggered().await });
        tokio::pin!(serve);
        tokio::select! {
            result = &mut serve => {
                // The server ends by itself only on an error, or because shutdown was
                // triggered and it won the race with the branch below.
                result?;
                if io.shutdown.is_triggered() {
                    tracing::info!(component = %io.id, "gRPC ingest stopped");
                    return Ok(());
                }
                return Err("the gRPC server stopped on its own".into());
            }
            _ = io.shutdown.triggered() => {}
        }
        // The listening socket is already closed; streams end themselves on shutdown, so
        // connections close quickly. Whatever is left after the grace period is dropped.
        match tokio::time::timeout(SHUTDOWN_GRACE, serve).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(component = %io.id, %error, "gRPC server ended with an error")
            }
            Err(_) => {
                tracing::warn!(component = %io.id, "gRPC connections did not close in time; dropped")
            }
        }
        tracing::info!(component = %io.id, "gRPC ingest stopped");
        Ok(())
    }
}

/// What every stream's task needs.
struct Shared {
    id: Arc<str>,
    output: Output,
    metrics: Arc<ComponentMetrics>,
    shutdown: Shutdown,
    sessions: Option<Vec<String>>,
    max_streams: usize,
    active: AtomicUsize,
    errors: Arc<LogLimiter>,
}

impl Shared {
    fn allowed(&self, session: &str) -> bool {
        self.sessions
            .as_ref()
            .is_none_or(|list| list.iter().any(|s| s == session))
    }

    /// A refused or broken stream: counted, logged (rate-limited).
    fn bad_input(&self, peer: Option<SocketAddr>, status: &Status) {
        self.metrics.add_error();
        if let Some(count) = self.errors.note() {
            tracing::warn!(
                component = %self.id,
                peer = ?peer,
                code = ?status.code(),
                message = status.message(),
                count,
                "ended a gRPC stream on bad input"
            );
        }
    }
}

/// A stream's place under `max_streams`; given back when the stream's task ends.
struct StreamSlot(Arc<Shared>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Ingest {
    shared: Arc<Shared>,
}

#[async_trait]
impl TelemetryIngest for Ingest {
    type StreamFramesStream = AckStream;

    async fn stream_frames(
        &self,
        request: Request<Streaming<TelemetryFrame>>,
    ) -> Result<Response<AckStream>, Status> {
        let shared = &self.shared;
        let peer = request.remote_addr();
        let taken = shared.active.fetch_add(1, Ordering::AcqRel);
        let slot = StreamSlot(shared.clone());
        if taken >= shared.max_streams {
            let status = Status::resource_exhausted(format!(
                "this server takes at most {} streams at once",
                shared.max_streams
            ));
            shared.bad_input(peer, &status);
            return Err(status);
        }
        tracing::debug!(component = %shared.id, peer = ?peer, "rig stream opened");
        let (acks, receiver) = mpsc::channel(ACK_BATCHES);
        tokio::spawn(pump(shared.clone(), request.into_inner(), acks, peer, slot));
        Ok(Response::new(AckStream {
            receiver,
            pending: Vec::new().into_iter(),
        }))
    }
}

/// What the response stream gets from a stream's task: the `monotonic_ns` of every frame
/// of a batch the output accepted, or the status that ends the stream.
type AckBatch = Result<Vec<u64>, Status>;

/// Decode errors and limits are the client's fault; anything else is the connection going
/// away, which is not bad input.
fn is_bad_input(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Internal | Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
    )
}

/// Reads one rig's stream: batches, sends, acks, until the client finishes, the stream
/// breaks, or shutdown.
async fn pump(
    shared: Arc<Shared>,
    mut frames: Streaming<TelemetryFrame>,
    acks: mpsc::Sender<AckBatch>,
    peer: Option<SocketAddr>,
    _slot: StreamSlot,
) {
    let mut strings = FrameStrings::default();
    let fallback_session = peer.map_or_else(|| "unknown-rig".to_string(), |p| p.to_string());
    let mut batch: Vec<TelemetryFrame> = Vec::with_capacity(MAX_FRAMES_PER_BATCH);
    // The last session id found on the allow-list: frames of a stream repeat it.
    let mut allowed_session: Option<String> = None;
    loop {
        let first = tokio::select! {
            biased;
            _ = shared.shutdown.triggered() => {
                let _ = acks.send(Err(Status::unavailable("pitwall-flow is shutting down"))).await;
                return;
            }
            _ = acks.closed() => return,
            next = frames.message() => next,
        };
        let mut ending: Option<Status> = None;
        let mut finished = false;
        match first {
            Ok(Some(frame)) => batch.push(frame),
            Ok(None) => return,
            Err(status) => {
                end_on_error(&shared, peer, status, &acks).await;
                return;
            }
        }
        // Everything already received goes into the same batch.
        while batch.len() < MAX_FRAMES_PER_BATCH {
            match frames.message().now_or_never() {
                Some(Ok(Some(frame))) => batch.push(frame),
                Some(Ok(None)) => {
                    finished = true;
                    break;
                }
                Some(Err(status)) => {
                    ending = Some(status);
                    break;
                }
                None => break,
            }
        }
        if shared.sessions.is_some() {
            let refused = batch.iter().position(|frame| {
                if allowed_session.as_deref() == Some(frame.session_id.as_str()) {
                    return false;
                }
                if shared.allowed(&frame.session_id) {
                    allowed_session = Some(frame.session_id.clone());
                    false
                } else {
                    true
                }
            });
            if let Some(index) = refused {
                let status = Status::permission_denied(format!(
                    "session `{}` is not accepted by this server",
                    batch[index].session_id
                ));
                batch.truncate(index);
                ending = Some(status);
            }
        }

        let now = now_ns();
        let mut events = Vec::with_capacity(batch.len());
        let mut stamps = Vec::with_capacity(batch.len());
        for frame in batch.drain(..) {
            let mut car = from_frame(&frame, &mut strings);
            if frame.session_id.is_empty() {
                car.session = strings.session.get(&fallback_session);
            }
            stamps.push(frame.monotonic_ns);
            events.push(Event::new(now, Record::CarTelemetry(Arc::new(car))));
        }
        // Acks only once the output took the batch.
        shared.output.send(events).await;
        if !stamps.is_empty() && acks.send(Ok(stamps)).await.is_err() {
            // The client went away; what it sent is in the pipeline anyway.
            return;
        }
        if let Some(status) = ending {
            end_on_error(&shared, peer, status, &acks).await;
            return;
        }
        if finished {
            return;
        }
    }
}

async fn end_on_error(
    shared: &Shared,
    peer: Option<SocketAddr>,
    status: Status,
    acks: &mpsc::Sender<AckBatch>,
) {
    if is_bad_input(&status) || status.code() == Code::PermissionDenied {
        shared.bad_input(peer, &status);
    } else {
        tracing::debug!(component = %shared.id, peer = ?peer, %status, "rig stream broke off");
    }
    let _ = acks.send(Err(status)).await;
}

/// The response stream: one `StreamAck` per frame, in order, from the batches the stream's
/// task hands over.
pub struct AckStream {
    receiver: mpsc::Receiver<AckBatch>,
    pending: std::vec::IntoIter<u64>,
}

impl Stream for AckStream {
    type Item = Result<StreamAck, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(last_monotonic_ns) = this.pending.next() {
                return Poll::Ready(Some(Ok(StreamAck { last_monotonic_ns })));
            }
            match this.receiver.poll_recv(cx) {
                Poll::Ready(Some(Ok(stamps))) => this.pending = stamps.into_iter(),
                Poll::Ready(Some(Err(status))) => return Poll::Ready(Some(Err(status))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::testing::parse_config;

    #[test]
    fn defaults_listener_and_checks() {
        let config: AssettoGrpcConfig = parse_config("");
        assert_eq!(config.address, "127.0.0.1:50051");
        assert_eq!(config.max_message_bytes, 16 * 1024 * 1024);
        assert!(config.check().is_empty());
        let listeners = config.listeners();
        assert_eq!(listeners.len(), 1);
        assert_eq!(listeners[0].address.port(), 50051);
        assert!(listeners[0].routes.is_empty());
        assert!(config.emits().contains(RecordKind::CarTelemetry));

        let config: AssettoGrpcConfig =
            parse_config("address = \"nowhere\"\nmax_streams = 0\nsessions = []");
        let keys: Vec<String> = config.check().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["address", "max_streams", "sessions"]);
        assert!(config.listeners().is_empty());
    }

    #[test]
    fn only_listed_sessions_are_allowed() {
        let shared = Shared {
            id: "t".into(),
            output: Output::new(Arc::new(ComponentMetrics::default())),
            metrics: Arc::new(ComponentMetrics::default()),
            shutdown: Shutdown::new(),
            sessions: Some(vec!["rig-1".into()]),
            max_streams: 1,
            active: AtomicUsize::new(0),
            errors: Arc::new(LogLimiter::default()),
        };
        assert!(shared.allowed("rig-1"));
        assert!(!shared.allowed("rig-2"));
        assert!(is_bad_input(&Status::out_of_range("too large")));
        assert!(!is_bad_input(&Status::cancelled("gone")));
    }
}
