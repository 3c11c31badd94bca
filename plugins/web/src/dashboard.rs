//! Sink `dashboard`: the slot-car race-control web page and its WebSocket, speaking exactly
//! the protocol of the original Carrera race server (FORMATS.md section 7), so the original
//! browser page works unchanged against it.
//!
//! - `GET /`: our race-control page (one self-contained HTML file: start lights, live lap
//!   timers per lane, last and recent laps, race summary with the fastest lap, START / STOP /
//!   NEW RACE buttons; it reconnects by itself).
//! - `WS /ws`: on connect, `{"type":"full_state","status":..,"track_1_laps":[..],..,
//!   "track_1_last_lap":s|0,..}` built from the latest `race_state` record (with keys for
//!   every lane it has); then every `race_event` record's message, as a JSON text frame, to
//!   every client. While racing, `full_state` also carries `track_N_current_lap_s`, how long
//!   each lane's current lap has run when the client connects: a phone that reconnects
//!   mid-race keeps its live lap timer. (The original page ignores keys it does not know.) The text frames `start`, `stop` and `reset` a browser sends become
//!   `command` records on this sink's output (wire it back into `race_control`: the graph's
//!   one loop, closed by a dropping edge). Other text is ignored.
//!
//! Status mapping: `race_control` has a `lights` status that the original does not; the
//! original already says `running` from the start command on (lights included), so
//! `lights` is sent as `running`.
//!
//! # Why it is shaped like this
//!
//! Every message matters here (a missed `lap_finish` is a missing lap on that screen), so
//! unlike the `cardputer` sink (which skips a client that fell far behind to the newest
//! frame) there is one bounded queue per client (256 messages). The sink never waits on a
//! client: a client whose queue is full has
//! stopped reading and is disconnected (counted as an error); reloading the page gets it a
//! fresh `full_state`. A client that accepts nothing for 10 s is dropped too. A new client is
//! registered and given its `full_state` under the same lock the sink holds while applying a
//! batch, so it sees every message after its snapshot and none twice.
//!
//! Routes are mounted when `run` starts and unmounted when it returns; when the input ends
//! every client gets a close frame.
//!
//! ```toml
//! [sinks.dashboard]
//! type = "dashboard"
//! inputs = ["race_control"]
//! # when_full = "drop_oldest"       # default
//! address = "127.0.0.1:8000"        # the original serves on port 8000; 0.0.0.0:8000 for phones
//! max_clients = 64                  # WebSocket clients at once; more get HTTP 503
//! ```

use crate::clients::{close, configure, origin_allowed, send_text, ClientLimit, Sent};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use pitwall_api::component::{parse_listen_address, OptionProblem};
use pitwall_api::http::{require_token, HttpServer};
use pitwall_api::record::{Command, RaceState};
use pitwall_api::Secret;
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentMetrics, ComponentSpec,
    Event, Io, Kinds, Listener, Record, RecordKind, Role, WhenFull,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The page.
pub const PAGE_ROUTE: &str = "/";
/// The race WebSocket.
pub const WS_ROUTE: &str = "/ws";
/// The page served at `/`.
pub const PAGE: &str = include_str!("dashboard.html");
/// Messages queued for one client before it counts as stalled and is disconnected.
pub const CLIENT_QUEUE: usize = 256;
/// Commands from browsers waiting for the sink; more are dropped (a button-mashing crowd).
const COMMAND_QUEUE: usize = 64;
/// The commands a browser may send.
pub const COMMANDS: &[&str] = &["start", "stop", "reset"];
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Options of the `dashboard` sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    /// Address to listen on, `host:port`: `0.0.0.0:8000` for phones on the local network.
    /// Shared with other web sinks on the same address.
    #[serde(default = "default_address")]
    pub address: String,
    /// Most WebSocket clients connected at once; further connections get HTTP 503.
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
    /// Require this token from every client (`Authorization: Bearer TOKEN` or
    /// `?access_token=TOKEN`); usually `"${PITWALL_TOKEN}"`. Default: open to anyone who
    /// can reach the address.
    #[serde(default, deserialize_with = "pitwall_api::secret::non_empty_token")]
    pub token: Option<Secret>,
    /// Web origins besides the page's own whose pages may open the socket (it takes
    /// start, stop and reset), e.g. `["http://pit.local:8000"]`; `["*"]` allows any.
    /// Default: only the dashboard's own page (and clients that are not browsers).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

fn default_address() -> String {
    "127.0.0.1:8000".to_string()
}

fn default_max_clients() -> usize {
    64
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<DashboardConfig>(
        "dashboard",
        Role::Sink,
        "Slot-car race-control page and WebSocket (the Carrera dashboard protocol); browser buttons become commands",
    )
    .when_full(WhenFull::DropOldest)
}

impl ComponentConfig for DashboardConfig {
    fn emits(&self) -> Kinds {
        Kinds::of(&[RecordKind::Command])
    }

    fn accepts(&self) -> Kinds {
        Kinds::of(&[RecordKind::RaceEvent, RecordKind::RaceState])
    }

    fn listeners(&self) -> Vec<Listener> {
        Listener::http(
            "address",
            &self.address,
            vec![PAGE_ROUTE.to_string(), WS_ROUTE.to_string()],
        )
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if let Err(message) = parse_listen_address(&self.address) {
            problems.push(OptionProblem::new("address", message));
        }
        if self.max_clients == 0 {
            problems.push(OptionProblem::new(
                "max_clients",
                "must be at least 1, or no browser could connect",
            ));
        }
        problems
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        let address: SocketAddr = parse_listen_address(&self.address)?;
        let server = ctx.http.acquire(address)?;
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let shared = Arc::new(Shared {
            hub: Mutex::new(Hub {
                clients: HashMap::new(),
                next_id: 0,
                state: RaceState {
                    status: "idle".into(),
                    lanes: Vec::new(),
                },
                closed: false,
            }),
            slots: ClientLimit::new(self.max_clients),
            commands,
            allowed_origins: self.allowed_origins.clone(),
        });
        Ok(Box::new(DashboardSink {
            server,
            shared,
            command_rx,
            token: self.token.clone(),
        }))
    }
}

/// The `full_state` message for `state` at `now_ns` (always with at least tracks 1 and 2,
/// as the original page expects them).
pub fn full_state(state: &RaceState, now_ns: i64) -> Value {
    let status = match state.status.as_str() {
        "lights" => "running",
        other => other,
    };
    let lanes = state
        .lanes
        .iter()
        .map(|lane| lane.lane)
        .max()
        .unwrap_or(0)
        .max(2);
    let laps_of = |n: u32| -> &[f64] {
        state
            .lanes
            .iter()
            .find(|lane| lane.lane == n)
            .map_or(&[], |lane| lane.laps.as_slice())
    };
    let mut message = Map::new();
    message.insert("type".into(), json!("full_state"));
    message.insert("status".into(), json!(status));
    for n in 1..=lanes {
        message.insert(format!("track_{n}_laps"), json!(laps_of(n)));
    }
    for n in 1..=lanes {
        let last = laps_of(n).last().map_or(json!(0), |s| json!(s));
        message.insert(format!("track_{n}_last_lap"), last);
    }
    if state.status == "running" {
        for lane in &state.lanes {
            if let Some(started) = lane.lap_started_ns {
                let running_ms = now_ns.saturating_sub(started).max(0) / 1_000_000;
                message.insert(
                    format!("track_{}_current_lap_s", lane.lane),
                    json!(running_ms as f64 / 1e3),
                );
            }
        }
    }
    Value::Object(message)
}

// ---------------------------------------------------------------------------------------
// State shared between the sink task and the HTTP handlers.
// ---------------------------------------------------------------------------------------

struct Hub {
    clients: HashMap<u64, mpsc::Sender<Utf8Bytes>>,
    next_id: u64,
    /// The race as the next client is told it, kept current by `race_state` records.
    state: RaceState,
    /// The sink is not running: new clients are closed at once.
    closed: bool,
}

struct Shared {
    hub: Mutex<Hub>,
    slots: Arc<ClientLimit>,
    commands: mpsc::Sender<String>,
    allowed_origins: Vec<String>,
}

impl Shared {
    fn hub(&self) -> std::sync::MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// ---------------------------------------------------------------------------------------
// The sink.
// ---------------------------------------------------------------------------------------

struct DashboardSink {
    server: HttpServer,
    shared: Arc<Shared>,
    command_rx: mpsc::Receiver<String>,
    token: Option<Secret>,
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    metrics: Arc<ComponentMetrics>,
}

#[async_trait]
impl Component for DashboardSink {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let router = Router::new()
            .route(PAGE_ROUTE, get(page))
            .route(WS_ROUTE, get(open_socket))
            .with_state(AppState {
                shared: self.shared.clone(),
                metrics: io.metrics.clone(),
            });
        let router = require_token(router, self.token.clone());
        let _mount = self.server.mount(&io.id, router)?;
        self.shared.hub().closed = false;
        let Some(input) = io.input.as_mut() else {
            self.close_clients().await;
            return Ok(());
        };
        loop {
            tokio::select! {
                batch = input.recv() => match batch {
                    Some(batch) => self.apply(&batch, &io.metrics),
                    None => break,
                },
                Some(name) = self.command_rx.recv() => {
                    let command = Event::new(
                        now_ns(),
                        Record::Command(Arc::new(Command { name })),
                    );
                    io.output.send(vec![command]).await;
                }
            }
        }
        self.close_clients().await;
        Ok(())
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl DashboardSink {
    /// Apply a batch under one lock, so a client connecting meanwhile gets a `full_state`
    /// that matches the messages it is sent afterwards.
    fn apply(&mut self, batch: &[Event], metrics: &ComponentMetrics) {
        let mut hub = self.shared.hub();
        for event in batch {
            match &event.record {
                Record::RaceEvent(race_event) => {
                    let text = Utf8Bytes::from(race_event.message.to_string());
                    hub.clients
                        .retain(|id, client| match client.try_send(text.clone()) {
                            Ok(()) => true,
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                metrics.add_error();
                                tracing::debug!(
                                    client = id,
                                    "disconnecting a dashboard client that stopped reading"
                                );
                                false
                            }
                            // Its task already ended.
                            Err(mpsc::error::TrySendError::Closed(_)) => false,
                        });
                }
                Record::RaceState(state) => hub.state = RaceState::clone(state),
                _ => {}
            }
        }
    }

    async fn close_clients(&mut self) {
        {
            let mut hub = self.shared.hub();
            hub.closed = true;
            // Dropping the senders tells every client task to close.
            hub.clients.clear();
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.shared.slots.connected() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP handlers.
// ---------------------------------------------------------------------------------------

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

async fn open_socket(
    State(app): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers, &app.shared.allowed_origins) {
        tracing::warn!(
            origin = ?headers.get(header::ORIGIN),
            "dashboard: refused a WebSocket from another site's page (allowed_origins)"
        );
        return (
            StatusCode::FORBIDDEN,
            "this page's origin may not command the race (see the dashboard's allowed_origins)\n",
        )
            .into_response();
    }
    let Some(slot) = app.shared.slots.take() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many clients (max_clients)",
        )
            .into_response();
    };
    configure(upgrade).on_upgrade(move |socket| async move {
        serve_client(socket, app).await;
        drop(slot);
    })
}

async fn serve_client(mut socket: WebSocket, app: AppState) {
    let (tx, mut rx) = mpsc::channel(CLIENT_QUEUE);
    let id = {
        let mut hub = app.shared.hub();
        if hub.closed {
            None
        } else {
            let text = Utf8Bytes::from(full_state(&hub.state, now_ns()).to_string());
            // Cannot fail: the queue is new and empty.
            let _ = tx.try_send(text);
            let id = hub.next_id;
            hub.next_id += 1;
            hub.clients.insert(id, tx);
            Some(id)
        }
    };
    let Some(id) = id else {
        close(&mut socket, 1001, "going away").await;
        return;
    };
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(text) => {
                    if send_text(&mut socket, text, &app.metrics).await != Sent::Ok {
                        break;
                    }
                }
                None => {
                    // The sink ended, or dropped us for falling behind.
                    close(&mut socket, 1001, "going away").await;
                    break;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => command(&app, text.as_str().trim()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    app.shared.hub().clients.remove(&id);
}

/// A browser pressed a button.
fn command(app: &AppState, text: &str) {
    let Some(name) = COMMANDS.iter().find(|name| **name == text) else {
        tracing::debug!(text, "ignoring a dashboard message that is no command");
        return;
    };
    if app.shared.commands.try_send(name.to_string()).is_err() {
        app.metrics.add_discarded(1);
        tracing::warn!(
            command = name,
            "dashboard command dropped: too many at once"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::record::LaneState;

    #[test]
    fn full_state_maps_lights_to_running_and_fills_lanes() {
        let state = RaceState {
            status: "lights".into(),
            lanes: vec![LaneState {
                lane: 1,
                laps: vec![5.2, 4.8],
                lap_started_ns: Some(7_000_000_000),
            }],
        };
        assert_eq!(
            full_state(&state, 9_500_000_000),
            json!({
                "type": "full_state",
                "status": "running",
                "track_1_laps": [5.2, 4.8],
                "track_2_laps": [],
                "track_1_last_lap": 4.8,
                "track_2_last_lap": 0
            })
        );
        let three = RaceState {
            status: "finished".into(),
            lanes: (1..=3)
                .map(|lane| LaneState {
                    lane,
                    laps: vec![],
                    lap_started_ns: Some(0),
                })
                .collect(),
        };
        let message = full_state(&three, 5);
        assert_eq!(message["status"], "finished");
        assert_eq!(message["track_3_laps"], json!([]));
        assert_eq!(message["track_3_last_lap"], 0);
        assert!(
            message.get("track_1_current_lap_s").is_none(),
            "no lap runs once the race is over"
        );
    }

    #[test]
    fn full_state_while_racing_says_how_long_each_current_lap_has_run() {
        let lane = |lane, started: Option<i64>| LaneState {
            lane,
            laps: vec![4.0],
            lap_started_ns: started,
        };
        let state = RaceState {
            status: "running".into(),
            lanes: vec![lane(1, Some(7_000_000_000)), lane(2, None)],
        };
        let message = full_state(&state, 9_512_345_678);
        assert_eq!(message["track_1_current_lap_s"], json!(2.512));
        assert!(message.get("track_2_current_lap_s").is_none());
        // A clock that went back shows a lap just begun, never a negative time.
        let message = full_state(&state, 6_000_000_000);
        assert_eq!(message["track_1_current_lap_s"], json!(0.0));
    }
}
