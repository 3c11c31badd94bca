//! Sink `json_ws`: a generic JSON WebSocket broadcast of records, mapped to the JSON a
//! client expects.
//!
//! Every client connected to `ws://{address}{path}` gets the same text frames, in one of
//! three modes:
//!
//! - `latest`: every `interval_ms`, the newest matching record, mapped. Once no matching
//!   record has arrived for `stale_after_ms`, the `fallback` object is sent instead (or
//!   nothing, without one). This is the rF2 WebSocket server of the seed (FORMATS.md
//!   section 6): one object per tick, or `{"status":"no_player_vehicle_found"}`.
//! - `each`: every matching record as it arrives, mapped; no tick.
//! - `table`: every `interval_ms`, a JSON array of the newest matching record per `key`,
//!   sorted by `sort_by` (numbers ascending, then text, missing last; ties by key): a live
//!   timing tower from `standing` records. Rows stay until a record with the same key
//!   replaces them, or, with `stale_after_ms` set, until they are that old. An empty
//!   table is sent as `fallback` when there is one, else `[]`.
//!
//! A record's JSON is its own fields (`pitwall_api::record::write_payload`: what a `file`
//! sink writes, without `kind` and `time_ns`). `filter` keeps records whose fields equal the
//! given values (numbers compare by value: `1` matches `1.0`); `kinds` keeps only those
//! record kinds. `fields` maps output names to fields, in the order written; dotted paths
//! reach into objects and arrays (`acc_g.0`, `message.type`); a missing field is `null`.
//! Without `fields` the whole record is sent.
//!
//! # Why it is shaped like this
//!
//! The sink never waits on a client. Each tick (or record) is formatted once, into shared
//! bytes, and published on the shared [`Hub`] (see [`crate::hub`]), which every client task
//! sends from. The hub keeps one message in `latest` and `table` modes, so a slow client
//! skips straight to the newest tick, and [`EACH_QUEUE`] in `each` mode, where a client
//! that falls further behind skips to what comes next; a message overwritten before a
//! client read it is counted as discarded. A client whose socket takes nothing for 10 s is
//! dropped. A client that connects in `latest` or `table` mode gets the last tick's message
//! at once.
//!
//! Routes are mounted when `run` starts and unmounted when it returns; when the input ends,
//! every client gets a close frame.
//!
//! ```toml
//! [sinks.rf2_ws]
//! type = "json_ws"
//! inputs = ["rf2"]
//! # when_full = "drop_oldest"         # default
//! address = "127.0.0.1:8080"           # 0.0.0.0:8080 for other machines
//! path = "/"
//! mode = "latest"                     # "each" | "table"
//! interval_ms = 100                   # latest and table modes
//! # kinds = ["car_telemetry"]         # default: every kind
//! stale_after_ms = 1000               # latest: default 1000; table: rows never expire by default
//! # key = "car"                       # table mode: one row per value of this field
//! # sort_by = "position"              # table mode: row order (default: by key)
//! max_clients = 256
//! filter = { is_player = true }
//! fallback = { status = "no_player_vehicle_found" }
//! [sinks.rf2_ws.fields]               # output name = field (dotted paths reach inside)
//! driverName = "driver"
//! throttle = "throttle"
//! ```

use std::borrow::Cow;
use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ws::{Utf8Bytes, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use pitwall_api::component::{parse_listen_address, OptionProblem};
use pitwall_api::http::{require_token, HttpServer};
use pitwall_api::record::write_payload;
use pitwall_api::Secret;
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentMetrics, ComponentSpec,
    Event, Io, Kinds, Listener, Record, RecordKind, Role, WhenFull,
};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::{Instant, MissedTickBehavior};

use crate::clients::ClientLimit;
use crate::hub::{listen, Hub, Latest};

/// Messages queued per client in `each` mode before the oldest is dropped.
pub const EACH_QUEUE: usize = 1024;
/// Rows a table keeps at most; beyond, the least recently updated row goes.
pub const MAX_ROWS: usize = 4096;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_STALE_AFTER_MS: u64 = 1000;

/// Options of the `json_ws` sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonWsConfig {
    /// Address to listen on, `host:port` (`0.0.0.0:8080` for other machines). Shared with
    /// other web sinks on the same address. `address` is accepted as another name for it.
    #[serde(default = "default_address")]
    pub address: String,
    /// The WebSocket's path: literal, starting with `/`.
    #[serde(default = "default_path")]
    pub path: String,
    /// `latest`: the newest matching record every tick; `each`: every matching record as it
    /// arrives; `table`: every tick, an array of the newest record per `key`.
    #[serde(default)]
    pub mode: Mode,
    /// The tick of `latest` and `table` modes, in milliseconds.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Only records of these kinds (pipeline names, e.g. `car_telemetry`). Default: all.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Output name -> field of the record's JSON, in the order they are sent. Dotted paths
    /// reach inside objects and arrays (`acc_g.0`). Default: the whole record.
    #[serde(default)]
    pub fields: OrderedTable<String>,
    /// Only records whose fields equal these values, e.g. `{ is_player = true }`.
    #[serde(default)]
    pub filter: OrderedTable<Value>,
    /// A JSON object sent on a tick when there is no fresh matching record (`latest`), or
    /// no row (`table`), e.g. `{ status = "no_player_vehicle_found" }`.
    #[serde(default)]
    pub fallback: Option<OrderedTable<Value>>,
    /// `latest`: a record older than this is no longer sent (default 1000). `table`: rows
    /// older than this are dropped (default: rows never expire).
    #[serde(default)]
    pub stale_after_ms: Option<u64>,
    /// `table` mode: the field whose value identifies a row (e.g. `car`).
    #[serde(default)]
    pub key: Option<String>,
    /// `table` mode: the field rows are sorted by, ascending (e.g. `position`). Default:
    /// the key.
    #[serde(default)]
    pub sort_by: Option<String>,
    /// Most WebSocket clients connected at once; further connections get HTTP 503.
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
    /// Require this token from every client (`Authorization: Bearer TOKEN` or
    /// `?access_token=TOKEN`); usually `"${PITWALL_TOKEN}"`. Default: open to anyone who
    /// can reach the address.
    #[serde(default, deserialize_with = "pitwall_api::secret::non_empty_token")]
    pub token: Option<Secret>,
}

/// How records become messages.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every tick, the newest matching record (or the fallback once it is stale).
    #[default]
    Latest,
    /// Every matching record as it arrives.
    Each,
    /// Every tick, an array of the newest matching record per key.
    Table,
}

fn default_address() -> String {
    "127.0.0.1:8080".to_string()
}

fn default_path() -> String {
    "/".to_string()
}

fn default_interval_ms() -> u64 {
    100
}

fn default_max_clients() -> usize {
    256
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<JsonWsConfig>(
        "json_ws",
        Role::Sink,
        "Broadcasts records as JSON over a WebSocket: the newest per tick, each as it arrives, or a table per key; fields mapped and filtered",
    )
    .when_full(WhenFull::DropOldest)
}

/// A TOML table whose entries keep the order they were written in (output keys follow
/// the order of `fields`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrderedTable<V>(pub Vec<(String, V)>);

impl<V> OrderedTable<V> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedTable<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for Entries<V> {
            type Value = OrderedTable<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, V>()? {
                    entries.push(entry);
                }
                Ok(OrderedTable(entries))
            }
        }

        deserializer.deserialize_map(Entries(PhantomData))
    }
}

impl<V: JsonSchema> JsonSchema for OrderedTable<V> {
    fn schema_name() -> Cow<'static, str> {
        <BTreeMap<String, V>>::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        <BTreeMap<String, V>>::json_schema(generator)
    }
}

/// A dotted field path, split once.
#[derive(Clone, Debug, PartialEq)]
struct FieldPath(Vec<String>);

impl FieldPath {
    fn parse(text: &str) -> Result<Self, &'static str> {
        let text = text.trim();
        if text.is_empty() {
            return Err("a field path must not be empty");
        }
        let segments: Vec<String> = text.split('.').map(str::to_string).collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err("a field path must not have empty segments (`a..b`, `.a`, `a.`)");
        }
        Ok(Self(segments))
    }

    fn lookup<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.0.iter().try_fold(value, |value, segment| match value {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
    }
}

impl ComponentConfig for JsonWsConfig {
    fn accepts(&self) -> Kinds {
        if self.kinds.is_empty() {
            return Kinds::any();
        }
        let kinds: Vec<RecordKind> = self
            .kinds
            .iter()
            .filter_map(|name| RecordKind::from_name(name))
            .collect();
        Kinds::of(&kinds)
    }

    fn listeners(&self) -> Vec<Listener> {
        Listener::http("address", &self.address, vec![self.path.clone()])
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if let Err(message) = parse_listen_address(&self.address) {
            problems.push(OptionProblem::new("address", message));
        }
        if let Err(message) = check_path(&self.path) {
            problems.push(OptionProblem::new("path", message));
        }
        if self.interval_ms == 0 {
            problems.push(OptionProblem::new("interval_ms", "must be at least 1"));
        }
        if self.max_clients == 0 {
            problems.push(OptionProblem::new(
                "max_clients",
                "must be at least 1, or no client could connect",
            ));
        }
        if self.stale_after_ms == Some(0) {
            problems.push(OptionProblem::new(
                "stale_after_ms",
                "must be at least 1; leave it out for the default",
            ));
        }
        for (i, name) in self.kinds.iter().enumerate() {
            if RecordKind::from_name(name).is_none() {
                problems.push(OptionProblem::new(
                    format!("kinds.{i}"),
                    format!("unknown record kind `{name}`"),
                ));
            }
        }
        for (name, path) in self.fields.iter() {
            if let Err(message) = FieldPath::parse(path) {
                problems.push(OptionProblem::new(format!("fields.{name}"), message));
            }
        }
        for (path, _) in self.filter.iter() {
            if let Err(message) = FieldPath::parse(path) {
                problems.push(OptionProblem::new(format!("filter.{path}"), message));
            }
        }
        for (option, path) in [("key", &self.key), ("sort_by", &self.sort_by)] {
            if let Some(Err(message)) = path.as_deref().map(FieldPath::parse) {
                problems.push(OptionProblem::new(option, message));
            }
        }
        match self.mode {
            Mode::Table if self.key.is_none() => problems.push(OptionProblem::new(
                "key",
                "mode `table` needs the field that identifies a row, e.g. `key = \"car\"`",
            )),
            Mode::Latest | Mode::Each => {
                for (option, set) in [
                    ("key", self.key.is_some()),
                    ("sort_by", self.sort_by.is_some()),
                ] {
                    if set {
                        problems.push(OptionProblem::new(option, "only used in mode `table`"));
                    }
                }
            }
            Mode::Table => {}
        }
        if self.mode == Mode::Each && self.fallback.is_some() {
            problems.push(OptionProblem::new(
                "fallback",
                "sent on ticks, which mode `each` does not have",
            ));
        }
        problems
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        let address: SocketAddr = parse_listen_address(&self.address)?;
        let server = ctx.http.acquire(address)?;
        let mapping = Mapping::new(self)?;
        let capacity = match self.mode {
            Mode::Each => EACH_QUEUE,
            Mode::Latest | Mode::Table => 1,
        };
        let stale_after = match (self.mode, self.stale_after_ms) {
            (_, Some(ms)) => Some(Duration::from_millis(ms.max(1))),
            (Mode::Latest, None) => Some(Duration::from_millis(DEFAULT_STALE_AFTER_MS)),
            _ => None,
        };
        Ok(Box::new(JsonWsSink {
            server,
            path: self.path.clone(),
            shared: Arc::new(Shared {
                hub: Hub::new(capacity),
                slots: ClientLimit::new(self.max_clients),
                each: self.mode == Mode::Each,
            }),
            mode: self.mode,
            interval: Duration::from_millis(self.interval_ms.max(1)),
            stale_after,
            mapping,
            latest: None,
            rows: HashMap::new(),
            next_seq: 0,
            problems: 0,
            token: self.token.clone(),
        }))
    }
}

/// Whether `path` is a literal route.
fn check_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("the path must start with `/`");
    }
    if path.contains(['{', '}', '*', ':']) {
        return Err("the path is literal: parameters and wildcards are not allowed");
    }
    if path.len() > 1 && path.ends_with('/') {
        return Err("the path must not end with `/` (except `/` itself)");
    }
    Ok(())
}

/// What a record must be, and what of it is sent.
#[derive(Debug)]
struct Mapping {
    kinds: Option<Kinds>,
    fields: Vec<(String, FieldPath)>,
    filter: Vec<(FieldPath, Value)>,
    key: Option<FieldPath>,
    sort_by: Option<FieldPath>,
    fallback: Option<Utf8Bytes>,
}

impl Mapping {
    fn new(config: &JsonWsConfig) -> Result<Self, ComponentError> {
        let path = |text: &str| FieldPath::parse(text).map_err(|m| format!("`{text}`: {m}"));
        Ok(Self {
            kinds: (!config.kinds.is_empty()).then(|| config.accepts()),
            fields: config
                .fields
                .iter()
                .map(|(name, field)| Ok((name.to_string(), path(field)?)))
                .collect::<Result<_, String>>()?,
            filter: config
                .filter
                .iter()
                .map(|(field, value)| Ok((path(field)?, value.clone())))
                .collect::<Result<_, String>>()?,
            key: config.key.as_deref().map(path).transpose()?,
            sort_by: config.sort_by.as_deref().map(path).transpose()?,
            fallback: config
                .fallback
                .as_ref()
                .map(|table| Utf8Bytes::from(object_text(table.iter().map(|(k, v)| (k, Some(v)))))),
        })
    }

    /// Whether the records of `kind` are used at all.
    fn wants(&self, record: &Record) -> bool {
        self.kinds.is_none_or(|kinds| kinds.contains(record.kind()))
    }

    /// Needs the record's fields as a JSON value (not just its text).
    fn needs_value(&self) -> bool {
        !self.fields.is_empty() || !self.filter.is_empty() || self.key.is_some()
    }

    fn matches(&self, payload: &Value) -> bool {
        self.filter
            .iter()
            .all(|(path, want)| path.lookup(payload).is_some_and(|got| same(got, want)))
    }

    /// The message for a record whose fields are `payload`.
    fn message(&self, payload: &Value) -> String {
        if self.fields.is_empty() {
            return payload.to_string();
        }
        object_text(
            self.fields
                .iter()
                .map(|(name, path)| (name.as_str(), path.lookup(payload))),
        )
    }
}

/// A JSON object with keys in the given order (`serde_json`'s own map sorts them).
fn object_text<'a>(entries: impl Iterator<Item = (&'a str, Option<&'a Value>)>) -> String {
    let mut text = String::from("{");
    for (i, (name, value)) in entries.enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&Value::from(name).to_string());
        text.push(':');
        text.push_str(&value.unwrap_or(&Value::Null).to_string());
    }
    text.push('}');
    text
}

/// Filter equality: numbers by value (`1` equals `1.0`), everything else exactly.
fn same(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => got == want,
    }
}

/// Row order: numbers ascending, then text, then anything else; missing last.
fn compare(a: Option<&Value>, b: Option<&Value>) -> CmpOrdering {
    fn rank(value: Option<&Value>) -> u8 {
        match value {
            Some(Value::Number(_)) => 0,
            Some(Value::String(_)) => 1,
            Some(Value::Null) | None => 3,
            Some(_) => 2,
        }
    }
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(CmpOrdering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

// ---------------------------------------------------------------------------------------
// Clients.
// ---------------------------------------------------------------------------------------

struct Shared {
    hub: Hub,
    slots: Arc<ClientLimit>,
    /// `each` mode: a client that connects or falls behind waits for the next record.
    each: bool,
}

impl Shared {
    /// Publish `messages` for every client, in order. Never waits.
    fn broadcast(&self, messages: &[Utf8Bytes], metrics: &ComponentMetrics) {
        for text in messages {
            let snapshot = if self.each {
                Latest::Nothing
            } else {
                Latest::Text(text.clone())
            };
            if self.hub.publish(Latest::Text(text.clone()), snapshot) {
                metrics.add_discarded(1);
            }
        }
    }
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    metrics: Arc<ComponentMetrics>,
}

// ---------------------------------------------------------------------------------------
// The sink.
// ---------------------------------------------------------------------------------------

struct Row {
    sort: Option<Value>,
    key: Value,
    text: String,
    at: Instant,
    /// Insertion order, to evict the least recently updated row.
    seq: u64,
}

struct JsonWsSink {
    server: HttpServer,
    path: String,
    shared: Arc<Shared>,
    mode: Mode,
    interval: Duration,
    stale_after: Option<Duration>,
    mapping: Mapping,
    /// `latest` mode: the newest matching record's message and when it arrived.
    latest: Option<(Utf8Bytes, Instant)>,
    /// `table` mode: rows by the key's JSON text.
    rows: HashMap<String, Row>,
    next_seq: u64,
    /// Records whose JSON could not be made (counted as errors).
    problems: u64,
    token: Option<Secret>,
}

#[async_trait]
impl Component for JsonWsSink {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let router = Router::new()
            .route(&self.path, get(open_socket))
            .with_state(AppState {
                shared: self.shared.clone(),
                metrics: io.metrics.clone(),
            });
        let router = require_token(router, self.token.clone());
        let _mount = self.server.mount(&io.id, router)?;
        if self.shared.hub.is_closed() {
            // Restarted: clients may connect again.
            self.shared.hub.publish(Latest::Nothing, Latest::Nothing);
        }
        let Some(input) = io.input.as_mut() else {
            self.close_clients().await;
            return Ok(());
        };
        let ticking = self.mode != Mode::Each;
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                batch = input.recv() => match batch {
                    Some(batch) => self.apply(&batch, &io.metrics),
                    None => break,
                },
                _ = ticker.tick(), if ticking => self.tick(&io.metrics),
            }
        }
        self.close_clients().await;
        Ok(())
    }
}

impl JsonWsSink {
    /// The record's fields as JSON text, or `None` (counted) if it cannot be written.
    fn payload_text(&mut self, record: &Record, metrics: &ComponentMetrics) -> Option<String> {
        let mut out = Vec::with_capacity(256);
        match write_payload(&mut out, record) {
            // serde_json writes UTF-8.
            Ok(()) => String::from_utf8(out).ok(),
            Err(error) => {
                self.problem(metrics, record, &error);
                None
            }
        }
    }

    fn payload_value(&mut self, record: &Record, metrics: &ComponentMetrics) -> Option<Value> {
        let text = self.payload_text(record, metrics)?;
        match serde_json::from_str(&text) {
            Ok(value) => Some(value),
            Err(error) => {
                self.problem(metrics, record, &error);
                None
            }
        }
    }

    fn problem(&mut self, metrics: &ComponentMetrics, record: &Record, error: &dyn fmt::Display) {
        metrics.add_error();
        self.problems += 1;
        if self.problems <= 5 || self.problems.is_multiple_of(1000) {
            tracing::warn!(kind = %record.kind(), %error, skipped = self.problems, "record not sendable as JSON");
        }
    }

    /// The message for `record` if it matches.
    fn message_of(&mut self, record: &Record, metrics: &ComponentMetrics) -> Option<String> {
        if !self.mapping.wants(record) {
            return None;
        }
        if !self.mapping.needs_value() {
            return self.payload_text(record, metrics);
        }
        let payload = self.payload_value(record, metrics)?;
        self.mapping
            .matches(&payload)
            .then(|| self.mapping.message(&payload))
    }

    fn apply(&mut self, batch: &[Event], metrics: &ComponentMetrics) {
        let now = Instant::now();
        match self.mode {
            Mode::Latest => {
                // Only the newest match of a batch matters: look from the end.
                for event in batch.iter().rev() {
                    if let Some(text) = self.message_of(&event.record, metrics) {
                        self.latest = Some((Utf8Bytes::from(text), now));
                        break;
                    }
                }
            }
            Mode::Each => {
                let messages: Vec<Utf8Bytes> = batch
                    .iter()
                    .filter_map(|event| self.message_of(&event.record, metrics))
                    .map(Utf8Bytes::from)
                    .collect();
                if !messages.is_empty() {
                    self.shared.broadcast(&messages, metrics);
                    metrics.add_sent(messages.len());
                }
            }
            Mode::Table => {
                for event in batch {
                    self.apply_row(&event.record, now, metrics);
                }
            }
        }
    }

    fn apply_row(&mut self, record: &Record, now: Instant, metrics: &ComponentMetrics) {
        if !self.mapping.wants(record) {
            return;
        }
        let Some(payload) = self.payload_value(record, metrics) else {
            return;
        };
        if !self.mapping.matches(&payload) {
            return;
        }
        let Some(key) = self.mapping.key.as_ref().and_then(|k| k.lookup(&payload)) else {
            // Not a row of this table.
            return;
        };
        let key = key.clone();
        let sort = match &self.mapping.sort_by {
            Some(path) => path.lookup(&payload).cloned(),
            None => Some(key.clone()),
        };
        let id = key.to_string();
        if !self.rows.contains_key(&id) && self.rows.len() >= MAX_ROWS {
            if let Some(oldest) = self
                .rows
                .iter()
                .min_by_key(|(_, row)| row.seq)
                .map(|(id, _)| id.clone())
            {
                self.rows.remove(&oldest);
            }
        }
        self.next_seq += 1;
        let text = self.mapping.message(&payload);
        self.rows.insert(
            id,
            Row {
                sort,
                key,
                text,
                at: now,
                seq: self.next_seq,
            },
        );
    }

    /// The message of this tick, if any.
    fn tick_message(&mut self, now: Instant) -> Option<Utf8Bytes> {
        let fresh = |at: Instant, stale_after: Option<Duration>| {
            stale_after.is_none_or(|limit| now.duration_since(at) < limit)
        };
        match self.mode {
            Mode::Each => None,
            Mode::Latest => match &self.latest {
                Some((text, at)) if fresh(*at, self.stale_after) => Some(text.clone()),
                _ => self.mapping.fallback.clone(),
            },
            Mode::Table => {
                let stale_after = self.stale_after;
                self.rows.retain(|_, row| fresh(row.at, stale_after));
                if self.rows.is_empty() {
                    if let Some(fallback) = &self.mapping.fallback {
                        return Some(fallback.clone());
                    }
                }
                let mut rows: Vec<&Row> = self.rows.values().collect();
                rows.sort_by(|a, b| {
                    compare(a.sort.as_ref(), b.sort.as_ref())
                        .then_with(|| compare(Some(&a.key), Some(&b.key)))
                        .then_with(|| a.key.to_string().cmp(&b.key.to_string()))
                });
                let mut text =
                    String::with_capacity(2 + rows.iter().map(|r| r.text.len() + 1).sum::<usize>());
                text.push('[');
                for (i, row) in rows.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    text.push_str(&row.text);
                }
                text.push(']');
                Some(Utf8Bytes::from(text))
            }
        }
    }

    fn tick(&mut self, metrics: &ComponentMetrics) {
        let message = self.tick_message(Instant::now());
        if let Some(message) = message {
            self.shared.broadcast(&[message], metrics);
        }
    }

    async fn close_clients(&mut self) {
        self.shared.hub.close();
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.shared.slots.connected() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP handlers.
// ---------------------------------------------------------------------------------------

async fn open_socket(State(app): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    listen(upgrade, &app.shared.hub, &app.shared.slots, app.metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(options: &str) -> JsonWsConfig {
        let value: toml::Value = toml::from_str(options).unwrap();
        JsonWsConfig::deserialize(value).unwrap()
    }

    #[test]
    fn fields_keep_their_order_and_reach_inside() {
        let config = config(
            r#"
            [fields]
            zeta = "b.1"
            alpha = "a"
            missing = "nope.deeper"
            "#,
        );
        let mapping = Mapping::new(&config).unwrap();
        let payload = json!({"a": 1, "b": [10, 20]});
        assert_eq!(
            mapping.message(&payload),
            r#"{"zeta":20,"alpha":1,"missing":null}"#
        );
    }

    #[test]
    fn filters_compare_numbers_by_value() {
        let config = config("filter = { place = 1.0, is_player = true, \"car.name\" = \"x\" }");
        let mapping = Mapping::new(&config).unwrap();
        assert!(mapping.matches(&json!({"place": 1, "is_player": true, "car": {"name": "x"}})));
        assert!(!mapping.matches(&json!({"place": 2, "is_player": true, "car": {"name": "x"}})));
        assert!(!mapping.matches(&json!({"place": 1, "car": {"name": "x"}})));
    }

    #[test]
    fn rows_sort_numbers_then_text_then_missing() {
        let mut values = vec![
            None,
            Some(json!("b")),
            Some(json!(3)),
            Some(json!("a")),
            Some(json!(1.5)),
            Some(Value::Null),
        ];
        values.sort_by(|a, b| compare(a.as_ref(), b.as_ref()));
        assert_eq!(
            values,
            vec![
                Some(json!(1.5)),
                Some(json!(3)),
                Some(json!("a")),
                Some(json!("b")),
                None,
                Some(Value::Null)
            ]
        );
    }

    #[test]
    fn options_are_checked() {
        let bad = config(
            "address = \"nowhere\"\npath = \"ws\"\nmode = \"table\"\ninterval_ms = 0\nkinds = [\"car_telemtry\"]\nfields = { a = \"x..y\" }",
        );
        let keys: Vec<String> = bad.check().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "address",
                "path",
                "interval_ms",
                "kinds.0",
                "fields.a",
                "key"
            ]
        );
        let each = config("mode = \"each\"\nfallback = { a = 1 }\nsort_by = \"x\"");
        let keys: Vec<String> = each.check().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["sort_by", "fallback"]);
        let fine = config("address = \"127.0.0.1:9000\"\nkinds = [\"standing\"]");
        assert!(fine.check().is_empty(), "{:?}", fine.check());
        assert_eq!(fine.address, "127.0.0.1:9000");
        assert_eq!(fine.accepts().to_string(), "standing");
    }
}
