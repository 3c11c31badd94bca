//! Sink `race_view`: pitwall-flow's own race page. A browser on a laptop or a phone shows a
//! live track map, the timing tower and race control, from whatever the sink is given:
//! OpenF1 (replay or live), Emperor / ACSM standings, simulator telemetry, a hub of rigs.
//!
//! - `GET {path}`: the page (HTML, CSS and script in one file embedded in the binary; it
//!   fetches nothing else but its socket).
//! - `GET {path}race/state`: the full state as JSON, the same as the socket's first message.
//! - `WS {path}race/socket`: one `state` message on connect, then `update` messages with
//!   what changed, at most every `interval_ms` (car positions at that rate while they move,
//!   timing, race control and weather when they change). The README's "Race view protocol"
//!   documents both.
//!
//! # Why it is shaped like this
//!
//! The sink owns one [`RaceModel`]. Records only change the model; a tick every
//! `interval_ms` turns what changed into one `update`, formatted once and published on the
//! shared [`Hub`] with the full state as its snapshot. A viewer that connects, or falls
//! more than [`CLIENT_BACKLOG`] updates behind, gets the full state and carries on from
//! there: it never slows the others or the pipeline. The page interpolates cars between
//! updates at the display's frame rate.
//!
//! ```toml
//! [sinks.view]
//! type = "race_view"
//! inputs = ["f1", "layout", "frames"]
//! address = "0.0.0.0:8000"   # shared with the cardputer sink on the same port
//! # path = "/"               # where the page is; the socket is {path}race/socket
//! # title = "Monza replay"   # the page's heading (default: the session's name)
//! # rotation = 95            # degrees to turn the map (MultiViewer's `rotation`);
//! #                          # default: the long side of the track along the screen's
//! # total_laps = 53          # shows "Lap N/53"
//! # interval_ms = 100        # updates at most this often (10 Hz)
//! # max_clients = 1024
//! # token = "${PITWALL_TOKEN}"
//! ```

mod model;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ws::{Utf8Bytes, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use pitwall_api::component::{parse_listen_address, OptionProblem};
use pitwall_api::http::{require_token, HttpServer};
use pitwall_api::Secret;
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentMetrics, ComponentSpec, Io,
    Kinds, Listener, RecordKind, Role, WhenFull,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use tokio::time::{Instant, MissedTickBehavior};

use crate::clients::ClientLimit;
use crate::hub::{listen, Hub, Latest};
pub use model::RaceModel;

/// The page, with `{{TITLE}}` and `{{CONFIG}}` filled in when served.
pub const PAGE: &str = include_str!("page.html");
/// How many updates a viewer may fall behind (3.2 s at 10 Hz) before it skips to the full
/// state.
pub const CLIENT_BACKLOG: usize = 32;
/// How long the end of `run` waits for viewers to finish their close handshakes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Options of the `race_view` sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RaceViewConfig {
    /// Address to listen on, `host:port`: `0.0.0.0:8000` for phones on the local network.
    /// Shared with other web sinks on the same address.
    #[serde(default = "default_address")]
    pub address: String,
    /// Where the page is served; it must start and end with `/`. The state is at
    /// `{path}race/state`, the socket at `{path}race/socket`.
    #[serde(default = "default_path")]
    pub path: String,
    /// The page's heading. Default: the session's name as the records give it.
    #[serde(default)]
    pub title: Option<String>,
    /// Degrees to turn the track map clockwise (MultiViewer's circuit `rotation`). Default:
    /// turned so the track's long side runs along the screen's.
    #[serde(default)]
    pub rotation: Option<f64>,
    /// The race's length in laps, for "Lap N/M". Default: "Lap N".
    #[serde(default)]
    pub total_laps: Option<u32>,
    /// Send viewers an update at most this often, in milliseconds (100 = 10 Hz).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Most viewers connected at once; further connections get HTTP 503.
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
    /// Require this token from every viewer (`Authorization: Bearer TOKEN` or
    /// `?access_token=TOKEN`, which the page passes on to its socket). Default: open to
    /// anyone who can reach the address.
    #[serde(default, deserialize_with = "pitwall_api::secret::non_empty_token")]
    pub token: Option<Secret>,
}

fn default_address() -> String {
    "127.0.0.1:8000".to_string()
}

fn default_path() -> String {
    "/".to_string()
}

fn default_interval_ms() -> u64 {
    100
}

fn default_max_clients() -> usize {
    1024
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<RaceViewConfig>(
        "race_view",
        Role::Sink,
        "Live race page for browsers: track map, timing tower and race control, from any source",
    )
    .when_full(WhenFull::DropOldest)
}

const ACCEPTS: &[RecordKind] = &[
    RecordKind::Session,
    RecordKind::Driver,
    RecordKind::Position,
    RecordKind::RacePosition,
    RecordKind::Lap,
    RecordKind::Interval,
    RecordKind::Stint,
    RecordKind::Pit,
    RecordKind::RaceControl,
    RecordKind::Weather,
    RecordKind::SessionResult,
    RecordKind::TrackLayout,
    RecordKind::RaceMetadata,
    RecordKind::Frame,
    RecordKind::Tick,
    RecordKind::SessionEnd,
    RecordKind::Standing,
    RecordKind::Connection,
    RecordKind::Collision,
    RecordKind::Chat,
    RecordKind::CarTelemetry,
];

impl RaceViewConfig {
    fn routes(&self) -> [String; 3] {
        [
            self.path.clone(),
            format!("{}race/state", self.path),
            format!("{}race/socket", self.path),
        ]
    }
}

impl ComponentConfig for RaceViewConfig {
    fn accepts(&self) -> Kinds {
        Kinds::of(ACCEPTS)
    }

    fn listeners(&self) -> Vec<Listener> {
        Listener::http("address", &self.address, self.routes().to_vec())
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if let Err(message) = parse_listen_address(&self.address) {
            problems.push(OptionProblem::new("address", message));
        }
        if !self.path.starts_with('/') || !self.path.ends_with('/') {
            problems.push(OptionProblem::new(
                "path",
                format!(
                    "`{}` must start and end with `/`, like \"/\" or \"/race/\"",
                    self.path
                ),
            ));
        } else if self.path.contains(['{', '}', '*', '?', '#']) {
            problems.push(OptionProblem::new(
                "path",
                "must be a plain path: no `{`, `}`, `*`, `?` or `#`",
            ));
        }
        if self.rotation.is_some_and(|r| !r.is_finite()) {
            problems.push(OptionProblem::new(
                "rotation",
                "must be a number of degrees",
            ));
        }
        if self.total_laps == Some(0) {
            problems.push(OptionProblem::new(
                "total_laps",
                "must be at least 1; leave it out when the length is not known",
            ));
        }
        if !(10..=10_000).contains(&self.interval_ms) {
            problems.push(OptionProblem::new(
                "interval_ms",
                "must be between 10 and 10000 milliseconds",
            ));
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
        let model = RaceModel::new(self.title.as_deref(), self.total_laps);
        let shared = Arc::new(Shared {
            hub: Hub::new(CLIENT_BACKLOG),
            clients: ClientLimit::new(self.max_clients),
            page: page_html(self),
        });
        Ok(Box::new(RaceViewSink {
            server,
            shared,
            model,
            routes: self.routes(),
            interval: Duration::from_millis(self.interval_ms.clamp(10, 10_000)),
            token: self.token.clone(),
        }))
    }
}

/// The page with this sink's settings written in.
fn page_html(config: &RaceViewConfig) -> String {
    let title = config.title.as_deref().unwrap_or("pitwall-flow race view");
    let settings = json!({
        "rotation": config.rotation,
        "socket": format!("{}race/socket", config.path),
        "interval_ms": config.interval_ms,
    });
    PAGE.replace("{{TITLE}}", &html_escape(title))
        // JSON inside a <script>: `<` escaped so no text can close the element.
        .replace("{{CONFIG}}", &settings.to_string().replace('<', "\\u003c"))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What the handlers share with the sink.
struct Shared {
    hub: Hub,
    clients: Arc<ClientLimit>,
    page: String,
}

struct RaceViewSink {
    server: HttpServer,
    shared: Arc<Shared>,
    model: RaceModel,
    routes: [String; 3],
    interval: Duration,
    token: Option<Secret>,
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    metrics: Arc<ComponentMetrics>,
}

#[async_trait]
impl Component for RaceViewSink {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let [page_route, state_route, socket_route] = &self.routes;
        let router = Router::new()
            .route(page_route, get(page))
            .route(state_route, get(state))
            .route(socket_route, get(open_socket))
            .with_state(AppState {
                shared: self.shared.clone(),
                metrics: io.metrics.clone(),
            });
        let router = require_token(router, self.token.clone());
        // Held until run returns: the routes are served exactly while this instance runs.
        let _mount = self.server.mount(&io.id, router)?;
        // After a restart of `run`: viewers that connect get what the model holds.
        self.publish_state();
        let Some(input) = io.input.as_mut() else {
            self.close_viewers().await;
            return Ok(());
        };
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = input.recv() => match batch {
                    Some(batch) => {
                        let now = wall_clock_ns();
                        for event in batch.iter() {
                            self.model.apply(event, now);
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => self.publish_update(),
            }
        }
        self.publish_update();
        self.close_viewers().await;
        Ok(())
    }
}

impl RaceViewSink {
    /// One `update` with what changed, if anything did.
    fn publish_update(&mut self) {
        let Some(update) = self.model.take_update() else {
            return;
        };
        let state = self.model.state();
        self.shared.hub.publish(
            Latest::Text(Utf8Bytes::from(update.to_string())),
            Latest::Text(Utf8Bytes::from(state.to_string())),
        );
    }

    /// The full state as the snapshot, with no update for viewers already connected.
    fn publish_state(&mut self) {
        let _ = self.model.take_update();
        let state = Utf8Bytes::from(self.model.state().to_string());
        self.shared
            .hub
            .publish(Latest::Nothing, Latest::Text(state));
    }

    /// Tell every viewer to close, and give them a moment to finish the handshake.
    async fn close_viewers(&mut self) {
        self.shared.hub.close();
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.shared.clients.connected() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn wall_clock_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

// ---------------------------------------------------------------------------------------
// HTTP handlers.
// ---------------------------------------------------------------------------------------

async fn page(State(app): State<AppState>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        app.shared.page.clone(),
    )
        .into_response()
}

async fn state(State(app): State<AppState>) -> Response {
    match app.shared.hub.snapshot() {
        Latest::Text(text) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            text.as_str().to_string(),
        )
            .into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "the race view is starting").into_response(),
    }
}

async fn open_socket(State(app): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    listen(upgrade, &app.shared.hub, &app.shared.clients, app.metrics)
}
