//! Sink `cardputer`: the Pocket Pitwall service that the M5Stack Cardputer firmware talks to
//! (FORMATS.md section 3), served unchanged so the device needs no new firmware.
//!
//! - `GET /session/{session_key}/{name}`: the session's JSON documents (`drivers`,
//!   `track_layout`, `race_metadata`, `session_info`, `session_result`, `laps`, `stints`,
//!   `intervals`, `positions`, `pit`, `starting_grid`, plus any `document` record), built from
//!   the records that arrive; see [`crate::documents`]. Unknown session or name: 404.
//! - `WS /ws/{session_key}`: one TEXT message per `frame` of the session,
//!   `{t_ms}|{car},{x},{y},{position}|...` with integer x and y; after the session's
//!   `session_end`, once frames have stopped for `finished_interval_ms`,
//!   `{last_t_ms}|FINISHED` every `finished_interval_ms`. An unknown session is accepted and
//!   closed at once with close code 4004, as the original does.
//!
//! # Why it is shaped like this
//!
//! One sink feeds up to `max_clients` sockets at 10 frames a second, so nothing is done per
//! client that can be done once: each frame is formatted once into shared bytes
//! ([`Utf8Bytes`], a reference-counted buffer) and published, in order, on the session's
//! [`Hub`] (the fan-out every web sink shares, see [`crate::hub`]), which keeps the last
//! [`CLIENT_BACKLOG`] texts. A client whose task runs late still gets every frame; one that
//! falls further behind skips straight to the newest, so it never holds up the sink or the
//! other clients, and the sink never waits on a
//! client. A client that connects gets the current frame at once, without waiting for the
//! next one. A client whose socket accepts nothing for 10 s is dropped without a close frame
//! (counted as an error of the sink). Until then the kernel's socket buffers hold what it did
//! not read (on loopback up to `net.ipv4.tcp_wmem`'s maximum, several MiB).
//!
//! Documents are serialized lazily and cached until the next change (see [`crate::documents`]).
//!
//! A server left running for a season sees session after session. At most `max_sessions`
//! are kept: when another one starts, the one that has gone longest without a record is
//! dropped, its documents with it (404 from then on) and its clients closed.
//!
//! Routes are mounted when `run` starts and unmounted when it returns, on the shared HTTP
//! server of `address`: during a reload the old instance unmounts before the new one mounts.
//! When the input ends, every client gets a normal close frame and `run` returns.
//!
//! ```toml
//! [sinks.cardputer]
//! type = "cardputer"
//! inputs = ["layout", "frames", "f1"]
//! # when_full = "drop_oldest"       # default: a live display wants the newest frames
//! address = "127.0.0.1:8000"        # the firmware expects port 8000
//! # session_key = "9158"            # serve only this session, known from the start
//! #                                 # (default: every session seen in the records)
//! # answers_to = ["9523"]           # keys that also get session_key's session (the
//! #                                 # public firmware asks for 9523)
//! max_clients = 1024                # WebSocket clients at once; more get HTTP 503
//! max_sessions = 8                  # sessions kept; the least recently fed one goes first
//! finished_interval_ms = 1000       # FINISHED cadence after the session's end
//! ```

use crate::clients::{close, configure, ClientLimit};
use crate::hub::{serve, Hub, Latest};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ws::{Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use pitwall_api::component::{parse_listen_address, OptionProblem};
use pitwall_api::http::{not_found, require_token, HttpServer};
use pitwall_api::record::{Frame, SessionKey};
use pitwall_api::Secret;
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentMetrics, ComponentSpec,
    Event, Io, Kinds, Listener, Record, RecordKind, Role, WhenFull,
};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::time::Instant;

use crate::documents::SessionDocuments;

/// Route of the documents.
pub const DOCUMENT_ROUTE: &str = "/session/{session_key}/{name}";
/// Route of the frame stream.
pub const WS_ROUTE: &str = "/ws/{session_key}";
/// Close code for a WebSocket asking for a session this sink does not serve.
pub const CLOSE_UNKNOWN_SESSION: u16 = 4004;
/// How long the end of `run` waits for clients to finish their close handshakes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// How many texts a client may fall behind (3.2 s of frames at 10 a second) before it skips
/// to the newest.
pub const CLIENT_BACKLOG: usize = 32;

/// Options of the `cardputer` sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CardputerConfig {
    /// Address to listen on, `host:port`. The firmware expects port 8000; use `0.0.0.0:8000`
    /// for a device on the local network. Shared with other web sinks on the same address.
    #[serde(default = "default_address")]
    pub address: String,
    /// Serve only this session, and know it from the start (clients may connect before its
    /// first record). Default: every session seen in the records.
    #[serde(default)]
    pub session_key: Option<String>,
    /// Other session keys that answer with `session_key`'s session: the public Pocket
    /// Pitwall firmware has its session key (9523) compiled in, so `answers_to = ["9523"]`
    /// shows it whatever session is served. Needs `session_key`.
    #[serde(default)]
    pub answers_to: Vec<String>,
    /// Most WebSocket clients connected at once; further connections get HTTP 503.
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
    /// Most sessions kept in memory. When another one starts, the one that has gone
    /// longest without a record is dropped: its documents answer 404 and its clients are
    /// closed. Eight covers a race weekend.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// After the session's `session_end`, once no frame has arrived for this long, send
    /// `{last_t_ms}|FINISHED` to every client, and again every this many milliseconds.
    #[serde(default = "default_finished_interval_ms")]
    pub finished_interval_ms: u64,
    /// Require this token from every client (`Authorization: Bearer TOKEN` or
    /// `?access_token=TOKEN`); usually `"${PITWALL_TOKEN}"`. Default: open to anyone who
    /// can reach the address.
    #[serde(default, deserialize_with = "pitwall_api::secret::non_empty_token")]
    pub token: Option<Secret>,
}

fn default_address() -> String {
    "127.0.0.1:8000".to_string()
}

fn default_max_clients() -> usize {
    1024
}

fn default_max_sessions() -> usize {
    8
}

fn default_finished_interval_ms() -> u64 {
    1000
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<CardputerConfig>(
        "cardputer",
        Role::Sink,
        "Pocket Pitwall service for the M5Stack Cardputer: session documents over HTTP and frames over WebSocket",
    )
    .when_full(WhenFull::DropOldest)
}

const ACCEPTS: &[RecordKind] = &[
    RecordKind::Session,
    RecordKind::Driver,
    RecordKind::Lap,
    RecordKind::Interval,
    RecordKind::Stint,
    RecordKind::Pit,
    RecordKind::RacePosition,
    RecordKind::SessionResult,
    RecordKind::StartingGrid,
    RecordKind::TrackLayout,
    RecordKind::RaceMetadata,
    RecordKind::Frame,
    RecordKind::Document,
    RecordKind::SessionEnd,
];

impl ComponentConfig for CardputerConfig {
    fn accepts(&self) -> Kinds {
        Kinds::of(ACCEPTS)
    }

    fn listeners(&self) -> Vec<Listener> {
        Listener::http(
            "address",
            &self.address,
            vec![DOCUMENT_ROUTE.to_string(), WS_ROUTE.to_string()],
        )
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if let Err(message) = parse_listen_address(&self.address) {
            problems.push(OptionProblem::new("address", message));
        }
        if self.session_key.as_deref() == Some("") {
            problems.push(OptionProblem::new(
                "session_key",
                "must not be empty; leave it out to serve every session",
            ));
        }
        if !self.answers_to.is_empty() && self.session_key.is_none() {
            problems.push(OptionProblem::new(
                "answers_to",
                "needs `session_key`: the session these keys answer with",
            ));
        }
        if self.answers_to.iter().any(|key| key.is_empty()) {
            problems.push(OptionProblem::new("answers_to", "a key must not be empty"));
        }
        if self.max_clients == 0 {
            problems.push(OptionProblem::new(
                "max_clients",
                "must be at least 1, or no device could connect",
            ));
        }
        if self.max_sessions == 0 {
            problems.push(OptionProblem::new(
                "max_sessions",
                "must be at least 1, or nothing could be served",
            ));
        }
        if self.finished_interval_ms == 0 {
            problems.push(OptionProblem::new(
                "finished_interval_ms",
                "must be at least 1",
            ));
        }
        problems
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        let address: SocketAddr = parse_listen_address(&self.address)?;
        let server = ctx.http.acquire(address)?;
        let shared = Arc::new(Shared {
            sessions: RwLock::new(HashMap::new()),
            clients: ClientLimit::new(self.max_clients),
            aliases: match &self.session_key {
                Some(served) => self
                    .answers_to
                    .iter()
                    .map(|alias| (alias.clone(), SessionKey::from(served.as_str())))
                    .collect(),
                None => HashMap::new(),
            },
        });
        let mut sink = CardputerSink {
            server,
            shared,
            only_session: self.session_key.as_deref().map(SessionKey::from),
            finished_interval: Duration::from_millis(self.finished_interval_ms.max(1)),
            max_sessions: self.max_sessions.max(1),
            sessions: HashMap::new(),
            token: self.token.clone(),
        };
        if let Some(key) = sink.only_session.clone() {
            sink.session(&key);
        }
        Ok(Box::new(sink))
    }
}

// ---------------------------------------------------------------------------------------
// State shared between the sink task and the HTTP handlers.
// ---------------------------------------------------------------------------------------

/// One session as the handlers see it.
struct SessionHub {
    documents: Mutex<SessionDocuments>,
    /// The session's frames and FINISHED lines, each its own snapshot.
    frames: Hub,
}

impl SessionHub {
    fn new() -> Self {
        Self {
            documents: Mutex::new(SessionDocuments::new()),
            frames: Hub::new(CLIENT_BACKLOG),
        }
    }
}

struct Shared {
    sessions: RwLock<HashMap<SessionKey, Arc<SessionHub>>>,
    clients: Arc<ClientLimit>,
    /// `answers_to`: a key the firmware asks for, and the session it gets.
    aliases: HashMap<String, SessionKey>,
}

impl Shared {
    fn hub(&self, session_key: &str) -> Option<Arc<SessionHub>> {
        let session_key = self
            .aliases
            .get(session_key)
            .map_or(session_key, |served| served.as_ref());
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(session_key)
            .cloned()
    }
}

// ---------------------------------------------------------------------------------------
// The sink.
// ---------------------------------------------------------------------------------------

/// What only the sink task knows about a session.
struct SessionState {
    hub: Arc<SessionHub>,
    last_t_ms: Option<i64>,
    last_frame_at: Option<Instant>,
    /// When the session's `session_end` arrived; `None` while it runs.
    ended_at: Option<Instant>,
    finished_sent_at: Option<Instant>,
    /// What was last published, to restore after a restart of `run`.
    last_text: Option<Utf8Bytes>,
    /// When a record of this session last arrived: the least recent goes first when
    /// `max_sessions` are kept.
    last_record_at: Instant,
}

impl SessionState {
    /// When the next FINISHED line is due, if the session has ended.
    fn finished_due(&self, interval: Duration) -> Option<Instant> {
        let ended_at = self.ended_at?;
        let quiet_since = self.last_frame_at.unwrap_or(ended_at);
        let mut due = quiet_since + interval;
        if let Some(sent) = self.finished_sent_at {
            due = due.max(sent + interval);
        }
        Some(due)
    }

    fn publish(&mut self, text: String) {
        let text = Utf8Bytes::from(text);
        self.last_text = Some(text.clone());
        self.hub.frames.publish_text(text);
    }
}

struct CardputerSink {
    server: HttpServer,
    shared: Arc<Shared>,
    only_session: Option<SessionKey>,
    finished_interval: Duration,
    max_sessions: usize,
    sessions: HashMap<SessionKey, SessionState>,
    token: Option<Secret>,
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    metrics: Arc<ComponentMetrics>,
}

#[async_trait]
impl Component for CardputerSink {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let router = Router::new()
            .route(DOCUMENT_ROUTE, get(get_document))
            .route(WS_ROUTE, get(open_socket))
            .with_state(AppState {
                shared: self.shared.clone(),
                metrics: io.metrics.clone(),
            });
        let router = require_token(router, self.token.clone());
        // Held until run returns: the routes are served exactly while this instance runs.
        let _mount = self.server.mount(&io.id, router)?;
        self.reopen();
        let Some(input) = io.input.as_mut() else {
            self.close_clients().await;
            return Ok(());
        };
        loop {
            let due = self
                .sessions
                .values()
                .filter_map(|session| session.finished_due(self.finished_interval))
                .min();
            tokio::select! {
                batch = input.recv() => match batch {
                    Some(batch) => self.apply(&batch),
                    None => break,
                },
                _ = sleep_until(due) => self.publish_finished(Instant::now()),
            }
        }
        self.close_clients().await;
        Ok(())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl CardputerSink {
    /// The state of `key`, creating it (and making it servable) on first sight, after
    /// dropping the least recently fed session if `max_sessions` are kept already.
    fn session(&mut self, key: &SessionKey) -> &mut SessionState {
        if !self.sessions.contains_key(key) && self.sessions.len() >= self.max_sessions {
            self.drop_stalest_session();
        }
        self.sessions.entry(key.clone()).or_insert_with(|| {
            let hub = Arc::new(SessionHub::new());
            self.shared
                .sessions
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), hub.clone());
            tracing::debug!(session_key = %key, "serving session");
            SessionState {
                hub,
                last_t_ms: None,
                last_frame_at: None,
                ended_at: None,
                finished_sent_at: None,
                last_text: None,
                last_record_at: Instant::now(),
            }
        })
    }

    fn drop_stalest_session(&mut self) {
        let Some(stalest) = self
            .sessions
            .iter()
            .min_by_key(|(_, session)| session.last_record_at)
            .map(|(key, _)| key.clone())
        else {
            return;
        };
        self.shared
            .sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&stalest);
        if let Some(session) = self.sessions.remove(&stalest) {
            session.hub.frames.close();
        }
        tracing::info!(
            session_key = %stalest,
            max_sessions = self.max_sessions,
            "cardputer: no longer serving the session fed longest ago (max_sessions)"
        );
    }

    fn apply(&mut self, batch: &[Event]) {
        let now = Instant::now();
        for event in batch {
            // Records of other kinds or sessions are simply not ours: ignoring them is not
            // a loss, so they are not counted as discarded.
            let Some(key) = session_of(&event.record) else {
                continue;
            };
            if self.only_session.as_ref().is_some_and(|only| only != key) {
                continue;
            }
            let session = self.session(key);
            session.last_record_at = now;
            match &event.record {
                Record::Frame(frame) => {
                    if session.last_t_ms.is_some_and(|last| frame.t_ms < last) {
                        // Time went back: a looping replay started over.
                        session.ended_at = None;
                        session.finished_sent_at = None;
                    }
                    session.last_t_ms = Some(frame.t_ms);
                    session.last_frame_at = Some(now);
                    // Every frame, in order: a client that keeps up misses none.
                    session.publish(frame_text(frame));
                }
                Record::SessionEnd(_) => {
                    if session.ended_at.is_none() {
                        session.ended_at = Some(now);
                    }
                }
                record => {
                    session
                        .hub
                        .documents
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .apply(event.time_ns, record);
                }
            }
        }
    }

    fn publish_finished(&mut self, now: Instant) {
        let interval = self.finished_interval;
        for session in self.sessions.values_mut() {
            if session.finished_due(interval).is_some_and(|due| due <= now) {
                session.finished_sent_at = Some(now);
                let text = format!("{}|FINISHED", session.last_t_ms.unwrap_or(0));
                session.publish(text);
            }
        }
    }

    /// After a restart of `run`: serve what was served before the stop.
    fn reopen(&mut self) {
        for session in self.sessions.values() {
            if !session.hub.frames.is_closed() {
                continue;
            }
            match &session.last_text {
                Some(text) => session.hub.frames.publish_text(text.clone()),
                None => {
                    session.hub.frames.publish(Latest::Nothing, Latest::Nothing);
                }
            }
        }
    }

    /// Tell every client to close, and give them a moment to finish the handshake.
    async fn close_clients(&mut self) {
        for session in self.sessions.values() {
            session.hub.frames.close();
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.shared.clients.connected() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The session a record belongs to; `None` for kinds without one.
fn session_of(record: &Record) -> Option<&SessionKey> {
    record.session_key()
}

/// Format a frame the way the firmware parses it:
/// `{t_ms}|{car},{x},{y},{position}|...`, x and y rounded to the nearest integer (halves away
/// from zero). Cars without a usable position (non-finite coordinates) are left out; a frame
/// with no usable car is just `{t_ms}`.
pub fn frame_text(frame: &Frame) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(16 + frame.cars.len() * 20);
    let _ = write!(text, "{}", frame.t_ms);
    for car in &frame.cars {
        if !car.x.is_finite() || !car.y.is_finite() {
            continue;
        }
        let _ = write!(
            text,
            "|{},{},{},{}",
            car.car,
            car.x.round() as i64,
            car.y.round() as i64,
            car.position
        );
    }
    text
}

// ---------------------------------------------------------------------------------------
// HTTP handlers.
// ---------------------------------------------------------------------------------------

async fn get_document(
    Path((session_key, name)): Path<(String, String)>,
    State(app): State<AppState>,
) -> Response {
    let Some(hub) = app.shared.hub(&session_key) else {
        return not_found(format!("unknown session `{session_key}`"));
    };
    let body = hub
        .documents
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&name);
    match body {
        Some(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        None => not_found(format!("no document `{name}` in session `{session_key}`")),
    }
}

async fn open_socket(
    Path(session_key): Path<String>,
    State(app): State<AppState>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(slot) = app.shared.clients.take() else {
        tracing::debug!("WebSocket client refused: max_clients reached");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many clients (max_clients)",
        )
            .into_response();
    };
    let hub = app.shared.hub(&session_key);
    configure(upgrade).on_upgrade(move |mut socket| async move {
        match hub {
            Some(hub) => serve_client(socket, hub, app.metrics).await,
            None => close(&mut socket, CLOSE_UNKNOWN_SESSION, "unknown session").await,
        }
        drop(slot);
    })
}

/// Send every frame in order (the current one at once, so a new device draws the cars
/// without waiting), until either side closes.
async fn serve_client(socket: WebSocket, hub: Arc<SessionHub>, metrics: Arc<ComponentMetrics>) {
    let subscriber = hub.frames.subscribe();
    // The hub's senders must not outlive the sink because of a client.
    drop(hub);
    serve(socket, subscriber, metrics).await;
}
