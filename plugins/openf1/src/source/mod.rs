//! Source `openf1`: a Formula 1 session from the OpenF1 REST API (FORMATS.md 1), replayed
//! from a local cache or polled live.
//!
//! **Replay** (the default) downloads the whole session once into a cache directory and then
//! replays it from there, paced by event time. The download honours OpenF1's limits: a token
//! bucket of `max_requests_per_10s`, retries with backoff on 429/5xx (respecting
//! `Retry-After`), on requests that take over `request_timeout_s`, on dropped connections and
//! on 200 answers that are not JSON arrays, and `location`/`car_data` fetched per driver in
//! windows of `window_minutes`, because a wider query fails server-side (see [`fetch`]). A
//! cache whose `manifest.json` says `complete: true` is replayed without touching the
//! network; an incomplete one is resumed (files already present are kept).
//!
//! The replay first emits a *preamble* stamped with the replay start: the session, every
//! driver, lap, stint, pit stop, result and grid slot, and two reference paths (the fastest
//! lap's and one pit-lane pass's location samples) from which `track_layout` draws the
//! circuit. A replay knows the whole session, so sinks can serve these documents from the
//! first frame on. Then come the time series merged in time order: car positions (0,0 = "car
//! not placed" is skipped), car telemetry, race positions, intervals, race-control messages
//! and weather, interleaved with a [`Record::Tick`] every `tick_ms` of event time so that
//! time-driven transforms (`resample`) advance smoothly, and a final `SessionEnd`.
//!
//! OpenF1 data often starts hours before the race, so by default the replay starts at the
//! reference start of the Pocket Pitwall service: the pole sitter's lap-1 start minus 20 s.
//!
//! **Live** polls the REST API: time series with a `date>` cursor each, `location` and
//! `car_data` for all drivers but only since the last poll, documents (drivers, laps, stints,
//! results) re-fetched every few seconds and emitted when a row is new or changed. Live data
//! needs OpenF1's paid tier: give `username`/`password` (from the environment) and a bearer
//! token is obtained from `POST {root}/token` and renewed before it expires.
//!
//! **Live over MQTT** (`transport = "mqtt"`, see [`mqtt`]) subscribes to OpenF1's MQTT stream
//! instead (`mqtts://mqtt.openf1.org:8883`, the access token as password) and turns each
//! message into the same records as REST polling, in `_id` order, batched every few tens of
//! ms, with ticks every `tick_ms` of wall time. It reconnects forever with backoff, and with
//! a new token before the old one expires. `mqtt://host:port` (no TLS, no credentials needed)
//! reaches a local broker.
//!
//! Cache layout (shared with the simulated sample generator), `{cache_dir}/race_data_{key}/`:
//! one JSON array per endpoint (`sessions.json`, `drivers.json`, `laps.json`, ...), one per
//! driver under `location/` and `car_data/`, any of them optionally gzipped (`.json.gz`), and
//! `manifest.json` written last.
//!
//! ```toml
//! [sources.f1]
//! type = "openf1"
//! session_key = 9158              # or "latest"
//! mode = "replay"                 # or "live"
//! speed = 1.0                     # 0 = as fast as possible
//! base_url = "https://api.openf1.org/v1"
//! cache_dir = "race_data"         # relative to the pipeline file
//! start = "race_start"            # "data_start", or an ISO 8601 time
//! loop = false
//! max_requests_per_10s = 30
//! window_minutes = 5.0
//! request_timeout_s = 90.0        # one request, body included; then retried
//! tick_ms = 100
//! poll_interval_ms = 1000
//! transport = "rest"              # live mode: or "mqtt"
//! mqtt_url = "mqtts://mqtt.openf1.org:8883"
//! mqtt_topics = ["v1/sessions", "v1/drivers", "v1/location", "v1/car_data", "v1/position",
//!   "v1/intervals", "v1/laps", "v1/stints", "v1/pit", "v1/race_control",
//!   "v1/session_result", "v1/weather", "v1/starting_grid"]
//! # username = "${OPENF1_USERNAME}"
//! # password = "${OPENF1_PASSWORD}"
//! ```

pub mod cache;
pub mod fetch;
pub mod live;
pub mod mqtt;
pub mod reference;
pub mod replay;
pub mod rows;

use std::path::PathBuf;

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::record::parse_iso8601_ns;
pub use pitwall_api::Secret;
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Io, Kinds, Record,
    RecordKind, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;

/// The component type.
pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<OpenF1Config>(
        "openf1",
        Role::Source,
        "A Formula 1 session from OpenF1: cached replay, live REST polling or the live MQTT stream",
    )
}

/// Options of the `openf1` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenF1Config {
    /// The OpenF1 session: its numeric `session_key`, or "latest". A replay of "latest"
    /// that cannot reach OpenF1 replays the newest session downloaded into `cache_dir`.
    pub session_key: SessionKeyOption,
    /// "replay" (download once into the cache, then replay it) or "live" (poll the API).
    #[serde(default)]
    pub mode: Mode,
    /// Replay speed: 1.0 real time, 10.0 ten times faster, 0 as fast as possible.
    #[serde(default = "default_speed")]
    pub speed: f64,
    /// The OpenF1 API root.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Where downloaded sessions are kept, relative to the pipeline file. Each session lives
    /// in `race_data_{session_key}/` below it.
    #[serde(default = "default_cache_dir")]
    pub cache_dir: PathBuf,
    /// Where the replay starts: "race_start" (the pole sitter's lap-1 start minus 20 s),
    /// "data_start" (the first sample), or an ISO 8601 UTC time.
    #[serde(default = "default_start")]
    pub start: String,
    /// Replay again from the start once the end is reached.
    #[serde(default, rename = "loop")]
    pub loop_replay: bool,
    /// Requests allowed per 10 s (OpenF1 publishes 30 for the free tier).
    #[serde(default = "default_max_requests")]
    pub max_requests_per_10s: u32,
    /// Width of the time windows in which `location` and `car_data` are downloaded per
    /// driver; OpenF1 fails queries that are too wide.
    #[serde(default = "default_window_minutes")]
    pub window_minutes: f64,
    /// Seconds one HTTP request may take, body included, before it is abandoned and retried
    /// with backoff (a `location`/`car_data` window that times out is split in two). OpenF1
    /// usually answers within a second or two; a stalled connection otherwise holds the
    /// download (or a live poll) this long. Lower it on a flaky network or in live mode so a
    /// stall costs seconds, not minutes; raise it if wide windows time out on a slow link.
    #[serde(default = "default_request_timeout_s")]
    pub request_timeout_s: f64,
    /// A `tick` record every this many ms of event time, so time-driven transforms advance.
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    /// Replay: release events this many ms of event time ahead of the replay clock. Match
    /// it to a downstream `resample`'s `lag_ms` and frames leave on time, the first one as
    /// the replay starts.
    #[serde(default = "default_lead_ms")]
    pub lead_ms: u64,
    /// OpenF1 account (paid tier, needed for live data), normally "${OPENF1_USERNAME}".
    #[serde(default)]
    pub username: Option<Secret>,
    /// OpenF1 password, normally "${OPENF1_PASSWORD}". Never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Live mode: how often the API is polled.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Live mode: "rest" (poll the REST API) or "mqtt" (OpenF1's MQTT stream; paid tier).
    #[serde(default)]
    pub transport: Transport,
    /// Live mode over MQTT: the broker, "mqtts://host:port" (TLS) or "mqtt://host:port"
    /// (plain TCP: local brokers and tests).
    #[serde(default = "default_mqtt_url")]
    pub mqtt_url: String,
    /// Live mode over MQTT: the topics subscribed (QoS 1). Each is an OpenF1 REST path.
    #[serde(default = "default_mqtt_topics")]
    pub mqtt_topics: Vec<String>,
}

fn default_speed() -> f64 {
    1.0
}
fn default_base_url() -> String {
    "https://api.openf1.org/v1".to_string()
}
fn default_cache_dir() -> PathBuf {
    PathBuf::from("race_data")
}
fn default_start() -> String {
    "race_start".to_string()
}
fn default_max_requests() -> u32 {
    30
}
fn default_window_minutes() -> f64 {
    5.0
}
fn default_request_timeout_s() -> f64 {
    90.0
}
fn default_tick_ms() -> u64 {
    100
}
fn default_lead_ms() -> u64 {
    300
}
fn default_poll_interval_ms() -> u64 {
    1000
}
fn default_mqtt_url() -> String {
    mqtt::DEFAULT_URL.to_string()
}
fn default_mqtt_topics() -> Vec<String> {
    mqtt::DEFAULT_TOPICS.iter().map(|t| t.to_string()).collect()
}

/// `session_key = 9158` or `session_key = "latest"`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SessionKeyOption {
    Number(u64),
    Text(String),
}

impl SessionKeyOption {
    /// The numeric key when it is known without asking the API.
    pub fn fixed(&self) -> Option<u64> {
        match self {
            Self::Number(key) => Some(*key),
            Self::Text(text) => text.trim().parse().ok(),
        }
    }

    /// How the API is asked for it (`9158` or `latest`).
    pub fn as_query(&self) -> String {
        match self.fixed() {
            Some(key) => key.to_string(),
            None => "latest".to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Replay,
    Live,
}

/// How live mode gets its data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Poll the REST API.
    #[default]
    Rest,
    /// Subscribe to OpenF1's MQTT stream.
    Mqtt,
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The pole sitter's lap-1 start minus 20 s (the data start when laps are missing).
    RaceStart,
    /// The first sample of any time series.
    DataStart,
    /// A fixed instant, ns since the epoch.
    At(i64),
}

impl StartAt {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "race_start" => Some(Self::RaceStart),
            "data_start" => Some(Self::DataStart),
            other => parse_iso8601_ns(other).map(Self::At),
        }
    }
}

impl OpenF1Config {
    /// Username and password, when both are given and not empty.
    pub fn credentials(&self) -> Option<(String, String)> {
        let user = self.username.as_ref()?.expose().trim();
        let password = self.password.as_ref()?.expose();
        (!user.is_empty() && !password.is_empty()).then(|| (user.to_string(), password.to_string()))
    }

    fn start_at(&self) -> StartAt {
        StartAt::parse(&self.start).unwrap_or(StartAt::RaceStart)
    }
}

/// Every record kind the source can emit.
pub fn emitted_kinds() -> Kinds {
    Kinds::of(&[
        RecordKind::Session,
        RecordKind::Driver,
        RecordKind::Lap,
        RecordKind::Stint,
        RecordKind::Pit,
        RecordKind::SessionResult,
        RecordKind::StartingGrid,
        RecordKind::ReferencePath,
        RecordKind::Position,
        RecordKind::CarData,
        RecordKind::RacePosition,
        RecordKind::Interval,
        RecordKind::RaceControl,
        RecordKind::Weather,
        RecordKind::Tick,
        RecordKind::SessionEnd,
    ])
}

impl ComponentConfig for OpenF1Config {
    fn emits(&self) -> Kinds {
        emitted_kinds()
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if let SessionKeyOption::Text(text) = &self.session_key {
            if self.session_key.fixed().is_none() && text.trim() != "latest" {
                problems.push(OptionProblem::new(
                    "session_key",
                    format!(
                        "`{text}` is not a session key; give a number such as 9158, or \"latest\""
                    ),
                ));
            }
        }
        if !(self.speed.is_finite() && self.speed >= 0.0) {
            problems.push(OptionProblem::new(
                "speed",
                "must be 0 (as fast as possible) or a positive factor such as 1.0",
            ));
        }
        if StartAt::parse(&self.start).is_none() {
            problems.push(OptionProblem::new(
                "start",
                format!(
                    "`{}` is neither \"race_start\", \"data_start\" nor an ISO 8601 time such as 2024-05-26T13:03:35Z",
                    self.start
                ),
            ));
        }
        if self.max_requests_per_10s == 0 {
            problems.push(OptionProblem::new(
                "max_requests_per_10s",
                "must be at least 1",
            ));
        }
        if !(self.window_minutes.is_finite() && self.window_minutes > 0.0) {
            problems.push(OptionProblem::new(
                "window_minutes",
                "must be a positive number of minutes (OpenF1 fails queries wider than ~10)",
            ));
        }
        if !(self.request_timeout_s.is_finite()
            && (0.1..=86_400.0).contains(&self.request_timeout_s))
        {
            problems.push(OptionProblem::new(
                "request_timeout_s",
                "must be a number of seconds between 0.1 and 86400 (default 90)",
            ));
        }
        if self.tick_ms == 0 {
            problems.push(OptionProblem::new("tick_ms", "must be at least 1"));
        }
        if self.poll_interval_ms == 0 {
            problems.push(OptionProblem::new("poll_interval_ms", "must be at least 1"));
        }
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            problems.push(OptionProblem::new(
                "base_url",
                format!("`{}` is not an http(s) URL", self.base_url),
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            problems.push(OptionProblem::new(
                if self.username.is_some() {
                    "password"
                } else {
                    "username"
                },
                "username and password go together",
            ));
        }
        if self.transport == Transport::Mqtt {
            match mqtt::parse_broker_url(&self.mqtt_url) {
                Ok(broker) => {
                    if broker.tls && self.credentials().is_none() {
                        problems.push(OptionProblem::new(
                            "transport",
                            "the OpenF1 MQTT stream needs `username` and `password` (paid tier): its password is an access token; only a plain mqtt:// broker can go without",
                        ));
                    }
                }
                Err(message) => problems.push(OptionProblem::new("mqtt_url", message)),
            }
            if self.mqtt_topics.is_empty() {
                problems.push(OptionProblem::new(
                    "mqtt_topics",
                    "give at least one topic, such as \"v1/location\"",
                ));
            }
            if let Some(topic) = self
                .mqtt_topics
                .iter()
                .find(|t| t.trim().is_empty() || t.contains('\0'))
            {
                problems.push(OptionProblem::new(
                    "mqtt_topics",
                    format!("`{topic}` is not a topic"),
                ));
            }
        }
        problems
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        if let Some(problem) = self.check().into_iter().next() {
            return Err(format!("option `{}`: {}", problem.key, problem.message).into());
        }
        Ok(Box::new(OpenF1Source {
            config: self.clone(),
            cache_root: ctx.resolve_path(&self.cache_dir),
        }))
    }
}

/// The running source.
pub struct OpenF1Source {
    config: OpenF1Config,
    cache_root: PathBuf,
}

#[async_trait]
impl Component for OpenF1Source {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        match self.config.mode {
            Mode::Replay => replay::run(&self.config, &self.cache_root, io).await,
            Mode::Live => match self.config.transport {
                Transport::Rest => live::run(&self.config, io).await,
                Transport::Mqtt => mqtt::run(&self.config, io).await,
            },
        }
    }
}

/// Log only the first few occurrences of something, then every 1000th.
pub(crate) fn worth_logging(count: u64) -> bool {
    count <= 5 || count.is_multiple_of(1000)
}

/// Whether a record belongs to the paced time series rather than the replay's preamble.
pub fn is_time_series(record: &Record) -> bool {
    matches!(
        record,
        Record::Position(_)
            | Record::CarData(_)
            | Record::RacePosition(_)
            | Record::Interval(_)
            | Record::RaceControl(_)
            | Record::Weather(_)
    )
}
