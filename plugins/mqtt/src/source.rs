//! Source `mqtt`: subscribe to topics on an MQTT broker and emit each message as a record.
//!
//! Made for slot-car race control (Carrera light gates publish on `carrera/track1/finish`,
//! `carrera/track2/finish`; FORMATS.md section 7) and usable for any broker, including
//! OpenF1's live stream over TLS with a token as password.
//!
//! Topics are MQTT topic filters (`+` matches one level, `#` the rest) which may also name
//! parts of the topic: in `carrera/track{lane}/finish` the level `track{lane}` subscribes as
//! `+` and a message on `carrera/track2/finish` captures `lane = "2"`. A level holds at most
//! one `{name}`, with any fixed text before and after it; the captured text is never empty.
//! A message whose topic matches the subscription but not the pattern's fixed text
//! (`carrera/lane2/finish`) is counted as discarded.
//! A topic may start with `$share/{group}/` (MQTT 5 shared subscriptions, which Mosquitto,
//! EMQX and HiveMQ also grant to MQTT 3.1.1 clients): the broker hands each message to one
//! subscriber of the group, so several instances split a stream between them. The prefix is
//! only part of the subscription; messages are matched by the rest of the pattern.
//!
//! `emit = "message"` emits [`Record::MqttMessage`] with the topic, the captured fields and the
//! payload decoded per `payload`: `auto` = JSON if it parses, else UTF-8 text (a JSON string),
//! `json` = JSON only, `text` = UTF-8 text only. A payload that cannot be decoded is counted
//! as an error and skipped.
//!
//! `emit = "gate_trigger"` emits [`Record::GateTrigger`] for light gates: every topic pattern
//! must capture `{lane}`, which must be a whole number (`carrera/trackX/finish` is counted as
//! an error and skipped). The message's arrival is the trigger; the payload is optional.
//! When the payload is a JSON object with a gate timestamp, `gate_time_ns` carries it; the
//! names looked for, in this order, are `t_ns`, `time_ns`, `timestamp_ns` (ns since the
//! Unix epoch), `t_us`, `time_us`, `timestamp_us` (µs), `t_ms`, `time_ms`, `timestamp_ms`
//! (ms, fractions allowed). Any other payload gives `gate_time_ns = None` (with
//! `payload = "json"`, a non-empty payload that is not JSON is counted as an error instead).
//!
//! `emit = "records"` reads what another pitwall-flow publishes with its `mqtt` sink
//! (chaining instances through a broker: `pipelines/edge-to-hub/`). With
//! `payload = "protobuf"` each message is a batch of records in [`pitwall_api::wire`]'s
//! encoding and the records come out typed, as they were sent, with the sender's event
//! times; an envelope of a batch that cannot be read (a kind from a newer version) is
//! counted as an error and skipped, the rest of the batch is kept. With `payload = "json"`
//! each message is one record in its serde JSON form (`{"kind": "lap", ...}`, what the sink
//! publishes with `payload = "json"`), timed at arrival. `kinds` keeps only some kinds and
//! is then what the source declares it emits (default: any kind). Fields captured from the
//! topic are not kept in this mode: records have no place for them.
//!
//! Event time is the receive time (ns since the Unix epoch, wall clock), except for
//! protobuf records (see above). Messages are emitted in arrival order, batched as they come
//! (a burst becomes one batch).
//!
//! The connection is re-made forever with exponential backoff (0.5 s to 30 s) after any
//! failure, and the topics are subscribed again each time. With `clean_session = false` the
//! broker keeps QoS 1/2 messages for this client id while it is away and delivers them after
//! the reconnect (their event time is then the late arrival; a gate timestamp in the
//! payload is unaffected).
//!
//! ```toml
//! [sources.gates]
//! type = "mqtt"
//! url = "mqtt://127.0.0.1:1883"          # or mqtts://host:8883 (TLS, system roots)
//! # client_id = "pitwall-flow-<random>"
//! # username = "${MQTT_USERNAME}"
//! # password = "${MQTT_PASSWORD}"
//! qos = 1
//! # clean_session = true
//! topics = ["carrera/track{lane}/finish"]
//! payload = "auto"                       # or "json", "text", "protobuf" (emit = "records")
//! emit = "gate_trigger"                  # or "message", "records"
//! # kinds = ["car_telemetry", "lap"]     # emit = "records" only; default every kind
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::record::{GateTrigger, LinkStatus, MqttMessage};
use pitwall_api::{
    wire, BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io,
    Kinds, Record, RecordKind, Role,
};
use rumqttc::{ConnectReturnCode, ConnectionError, QoS, SubscribeFilter};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::broker::{self, Broker, Note, Secret};

fn default_url() -> String {
    broker::DEFAULT_URL.to_string()
}

fn default_qos() -> u8 {
    1
}

fn default_true() -> bool {
    true
}

/// How payloads are decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayloadMode {
    /// JSON if it parses, else UTF-8 text.
    #[default]
    Auto,
    /// UTF-8 text only (kept as a string even if it looks like JSON).
    Text,
    /// JSON only.
    Json,
    /// Batches of records from another pitwall-flow's `mqtt` sink (`emit = "records"`).
    Protobuf,
}

/// What each message becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmitMode {
    /// `mqtt_message`: topic, captured fields, payload.
    #[default]
    Message,
    /// `gate_trigger`: a light gate on lane `{lane}` was crossed.
    GateTrigger,
    /// The typed records another pitwall-flow published (`payload = "protobuf"` or `"json"`).
    Records,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// Broker: `mqtt://host:1883` (plain TCP) or `mqtts://host:8883` (TLS with the system's
    /// root certificates).
    #[serde(default = "default_url")]
    pub url: String,
    /// Client id; default `pitwall-flow-` and random hex digits (one per component instance).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Login name, normally "${MQTT_USERNAME}". Never logged.
    #[serde(default)]
    pub username: Option<Secret>,
    /// Password or access token, normally "${MQTT_PASSWORD}". Never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Subscription QoS: 0, 1 or 2.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Start a fresh session on every connect (true), or ask the broker to keep the
    /// subscription and queue QoS 1/2 messages while the connection is down (false).
    #[serde(default = "default_true")]
    pub clean_session: bool,
    /// Topic filters (`+`, `#` wildcards) that may name parts of the topic:
    /// `carrera/track{lane}/finish` subscribes to `carrera/+/finish` and captures `lane`.
    pub topics: Vec<String>,
    /// Payload decoding: `auto` (JSON, else text), `json`, `text`, or `protobuf` (record
    /// batches from another pitwall-flow; needs `emit = "records"`).
    #[serde(default)]
    pub payload: PayloadMode,
    /// `message` (mqtt_message records), `gate_trigger` (every topic captures `{lane}`) or
    /// `records` (the records another pitwall-flow published; payload `protobuf` or `json`).
    #[serde(default)]
    pub emit: EmitMode,
    /// With `emit = "records"`: emit only these record kinds (others are dropped); also
    /// what the source declares it emits. Empty or absent = every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Messages with a larger payload are skipped and counted as discarded, in bytes. The
    /// connection itself takes packets up to 256 MiB (Mosquitto's own limit), so one big
    /// message never drops it and no other message is lost.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
}

fn default_max_message_bytes() -> usize {
    1 << 20
}

/// One level of a topic pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Exact(String),
    /// `+`
    Any,
    /// `#` (only last)
    Rest,
    /// `prefix{name}suffix`
    Capture {
        prefix: String,
        name: String,
        suffix: String,
    },
}

/// A parsed topic pattern: what to subscribe to and how to read a topic back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    /// `$share/{group}/...`: the broker's shared-subscription group.
    share: Option<String>,
    levels: Vec<Level>,
}

impl TopicPattern {
    /// Parse `a/+/track{lane}/#`, optionally behind `$share/{group}/` (a shared
    /// subscription: the broker hands each message to one member of the group).
    pub fn parse(full: &str) -> Result<Self, String> {
        let (share, text) = match full.strip_prefix("$share/") {
            Some(rest) => {
                let (group, topic) = rest.split_once('/').unwrap_or((rest, ""));
                if group.is_empty() || group.contains(['+', '#', '{', '}']) || topic.is_empty() {
                    return Err(format!(
                        "`{full}`: a shared subscription is `$share/GROUP/TOPIC`, e.g. `$share/hub/pitwall/edge/+/records`"
                    ));
                }
                (Some(group.to_string()), topic)
            }
            None => (None, full),
        };
        if text.is_empty() {
            return Err("a topic cannot be empty".into());
        }
        let parts: Vec<&str> = text.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        let mut names: Vec<String> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let level = match *part {
                "+" => Level::Any,
                "#" if i + 1 == parts.len() => Level::Rest,
                "#" => return Err(format!("`{text}`: `#` must be the last level")),
                _ if part.contains(['+', '#']) => {
                    return Err(format!(
                        "`{text}`: `+` and `#` must be a whole level (`a/+/b`, `a/#`)"
                    ))
                }
                _ if part.contains(['{', '}']) => {
                    let (prefix, rest) = part
                        .split_once('{')
                        .ok_or_else(|| format!("`{text}`: `}}` without `{{`"))?;
                    let (name, suffix) = rest
                        .split_once('}')
                        .ok_or_else(|| format!("`{text}`: `{{` without `}}`"))?;
                    if suffix.contains(['{', '}']) || name.contains('{') {
                        return Err(format!("`{text}`: at most one `{{name}}` per level"));
                    }
                    let valid_name = !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !valid_name {
                        return Err(format!(
                            "`{text}`: `{{{name}}}` is not a field name (letters, digits, `_`)"
                        ));
                    }
                    if names.iter().any(|n| n == name) {
                        return Err(format!("`{text}`: `{{{name}}}` appears twice"));
                    }
                    names.push(name.to_string());
                    Level::Capture {
                        prefix: prefix.to_string(),
                        name: name.to_string(),
                        suffix: suffix.to_string(),
                    }
                }
                _ => Level::Exact(part.to_string()),
            };
            levels.push(level);
        }
        Ok(Self { share, levels })
    }

    /// The MQTT filter to subscribe with: captures become `+`.
    pub fn filter(&self) -> String {
        let parts: Vec<&str> = self
            .levels
            .iter()
            .map(|level| match level {
                Level::Exact(text) => text.as_str(),
                Level::Any | Level::Capture { .. } => "+",
                Level::Rest => "#",
            })
            .collect();
        match &self.share {
            Some(group) => format!("$share/{group}/{}", parts.join("/")),
            None => parts.join("/"),
        }
    }

    /// Names of the captured fields.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.levels.iter().filter_map(|level| match level {
            Level::Capture { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }

    /// The captured fields when `topic` matches, else None.
    pub fn matches(&self, topic: &str) -> Option<BTreeMap<String, String>> {
        // Wildcards in the first level do not match `$SYS/...` topics (MQTT 3.1.1, 4.7.2).
        if topic.starts_with('$') && !matches!(self.levels.first(), Some(Level::Exact(_))) {
            return None;
        }
        let mut fields = BTreeMap::new();
        let mut parts = topic.split('/');
        for level in &self.levels {
            // `a/#` also matches `a` itself (MQTT 3.1.1, 4.7.1.2).
            if *level == Level::Rest {
                return Some(fields);
            }
            let part = parts.next()?;
            match level {
                Level::Exact(text) => {
                    if part != text {
                        return None;
                    }
                }
                Level::Any | Level::Rest => {}
                Level::Capture {
                    prefix,
                    name,
                    suffix,
                } => {
                    let middle = part
                        .strip_prefix(prefix.as_str())?
                        .strip_suffix(suffix.as_str())?;
                    if middle.is_empty() {
                        return None;
                    }
                    fields.insert(name.clone(), middle.to_string());
                }
            }
        }
        parts.next().is_none().then_some(fields)
    }
}

impl MqttSourceConfig {
    fn patterns(&self) -> Result<Vec<TopicPattern>, String> {
        self.topics.iter().map(|t| TopicPattern::parse(t)).collect()
    }

    /// The kinds `emit = "records"` lets through (every kind when `kinds` is empty).
    fn kind_set(&self) -> Result<Kinds, OptionProblem> {
        if self.kinds.is_empty() {
            return Ok(Kinds::any());
        }
        let mut kinds = Vec::new();
        for (i, name) in self.kinds.iter().enumerate() {
            match RecordKind::from_name(name) {
                Some(kind) => kinds.push(kind),
                None => {
                    return Err(OptionProblem::new(
                        format!("kinds[{i}]"),
                        format!("`{name}` is not a record kind"),
                    ))
                }
            }
        }
        Ok(Kinds::of(&kinds))
    }

    /// Problems with the combination of `emit`, `payload` and `kinds`.
    fn mode_problems(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        match (self.emit, self.payload) {
            (EmitMode::Records, PayloadMode::Protobuf | PayloadMode::Json) => {}
            (EmitMode::Records, _) => problems.push(OptionProblem::new(
                "payload",
                "emit = \"records\" reads records another pitwall-flow published: say payload = \"protobuf\" (or \"json\" for one JSON record per message)",
            )),
            (_, PayloadMode::Protobuf) => problems.push(OptionProblem::new(
                "payload",
                "payload = \"protobuf\" carries batches of records: use it with emit = \"records\"",
            )),
            _ => {}
        }
        if self.emit == EmitMode::Records {
            if let Err(problem) = self.kind_set() {
                problems.push(problem);
            }
        } else if !self.kinds.is_empty() {
            problems.push(OptionProblem::new(
                "kinds",
                "`kinds` picks record kinds for emit = \"records\"; leave it out here",
            ));
        }
        problems
    }
}

impl ComponentConfig for MqttSourceConfig {
    fn emits(&self) -> Kinds {
        match self.emit {
            EmitMode::Message => Kinds::of(&[RecordKind::MqttMessage, RecordKind::LinkStatus]),
            EmitMode::GateTrigger => Kinds::of(&[RecordKind::GateTrigger, RecordKind::LinkStatus]),
            EmitMode::Records => self
                .kind_set()
                .unwrap_or(Kinds::NONE)
                .with(Kinds::of(&[RecordKind::LinkStatus])),
        }
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = broker::check_common(
            &self.url,
            self.qos,
            self.username.as_ref(),
            self.password.as_ref(),
        );
        if !(1..=broker::MAX_INCOMING_PACKET_BYTES).contains(&self.max_message_bytes) {
            problems.push(OptionProblem::new(
                "max_message_bytes",
                format!(
                    "must be between 1 and {} (256 MiB, what the connection takes)",
                    broker::MAX_INCOMING_PACKET_BYTES
                ),
            ));
        }
        if self.topics.is_empty() {
            problems.push(OptionProblem::new(
                "topics",
                "give at least one topic, e.g. [\"carrera/track{lane}/finish\"] or [\"#\"]",
            ));
        }
        for (i, topic) in self.topics.iter().enumerate() {
            match TopicPattern::parse(topic) {
                Err(message) => problems.push(OptionProblem::new(format!("topics[{i}]"), message)),
                Ok(pattern) => {
                    if self.emit == EmitMode::GateTrigger && !pattern.names().any(|n| n == "lane") {
                        problems.push(OptionProblem::new(
                            format!("topics[{i}]"),
                            format!(
                                "`{topic}`: with emit = \"gate_trigger\" every topic must capture the lane, e.g. `carrera/track{{lane}}/finish`"
                            ),
                        ));
                    }
                }
            }
        }
        if self
            .client_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            problems.push(OptionProblem::new(
                "client_id",
                "leave `client_id` out for a random one, or give a non-empty id",
            ));
        }
        problems.extend(self.mode_problems());
        problems
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        let patterns = self.patterns()?;
        let broker = Broker::new(
            &self.url,
            self.client_id.as_deref(),
            self.username.as_ref(),
            self.password.as_ref(),
            self.clean_session,
        )?;
        let qos = broker::qos(self.qos).ok_or("MQTT QoS is 0, 1 or 2")?;
        let mut filters: Vec<String> = Vec::new();
        for pattern in &patterns {
            let filter = pattern.filter();
            if !filters.contains(&filter) {
                filters.push(filter);
            }
        }
        Ok(Box::new(MqttSource {
            broker,
            qos,
            filters,
            decoder: Decoder::new(
                patterns,
                self.payload,
                self.emit,
                self.kind_set().map_err(|p| p.message)?,
            ),
            counts: Counts::default(),
            link_up: None,
            max_message_bytes: self.max_message_bytes.max(1),
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<MqttSourceConfig>(
        "mqtt",
        Role::Source,
        "MQTT subscriber: messages (topic, named topic parts, JSON or text payload), light-gate triggers, or the records another pitwall-flow published",
    )
}

/// Turns messages into records; independent of the connection.
#[derive(Debug)]
pub struct Decoder {
    patterns: Vec<TopicPattern>,
    payload: PayloadMode,
    emit: EmitMode,
    /// `emit = "records"`: the kinds let through.
    kinds: Kinds,
    /// `payload = "protobuf"`: shares repeated strings between messages.
    wire: wire::Decoder,
}

/// Envelopes of a protobuf batch that could not be read (the rest of it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    pub envelopes: usize,
    pub why: String,
}

/// Why a message gave no record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The topic matches no pattern's fixed text (counted as discarded).
    NoPattern,
    /// Payload or lane unusable (counted as an error).
    Malformed(String),
}

impl Decoder {
    pub fn new(
        patterns: Vec<TopicPattern>,
        payload: PayloadMode,
        emit: EmitMode,
        kinds: Kinds,
    ) -> Self {
        Self {
            patterns,
            payload,
            emit,
            kinds,
            wire: wire::Decoder::default(),
        }
    }

    /// The events of one message, appended to `out`: one for most modes, a batch for
    /// protobuf records (with their own event times; `now_ns` for the others). `Ok(Some)`
    /// says some envelopes of a batch were skipped.
    pub fn decode_events(
        &mut self,
        topic: &str,
        payload: &[u8],
        now_ns: i64,
        out: &mut Vec<Event>,
    ) -> Result<Option<Unread>, Skip> {
        if self.emit == EmitMode::Records && self.payload == PayloadMode::Protobuf {
            if !self.patterns.iter().any(|p| p.matches(topic).is_some()) {
                return Err(Skip::NoPattern);
            }
            let start = out.len();
            let decoded = self
                .wire
                .decode_into(payload, out)
                .map_err(|e| Skip::Malformed(e.to_string()))?;
            if !self.kinds.is_all() {
                let kinds = self.kinds;
                let mut index = 0;
                out.retain(|event| {
                    index += 1;
                    index <= start || kinds.contains(event.kind())
                });
            }
            return Ok((decoded.skipped > 0).then(|| Unread {
                envelopes: decoded.skipped,
                why: decoded.first_problem.unwrap_or_default(),
            }));
        }
        let record = self.decode(topic, payload)?;
        if self.emit != EmitMode::Records || self.kinds.contains(record.kind()) {
            out.push(Event::new(now_ns, record));
        }
        Ok(None)
    }

    /// The record for one message (one JSON record with `emit = "records"`; a protobuf
    /// batch needs [`Decoder::decode_events`]).
    pub fn decode(&self, topic: &str, payload: &[u8]) -> Result<Record, Skip> {
        let fields = self
            .patterns
            .iter()
            .find_map(|pattern| pattern.matches(topic))
            .ok_or(Skip::NoPattern)?;
        match self.emit {
            EmitMode::Records => match self.payload {
                PayloadMode::Protobuf => Err(Skip::Malformed(
                    "a protobuf batch holds many records".into(),
                )),
                _ => serde_json::from_slice::<Record>(payload)
                    .map_err(|e| Skip::Malformed(format!("payload is not a record: {e}"))),
            },
            EmitMode::Message => {
                let payload = decode_payload(self.payload, payload).map_err(Skip::Malformed)?;
                Ok(Record::MqttMessage(Arc::new(MqttMessage {
                    topic: topic.to_string(),
                    fields,
                    payload,
                })))
            }
            EmitMode::GateTrigger => {
                let lane_text = fields.get("lane").map(String::as_str).unwrap_or("");
                let lane = lane_text
                    .parse::<u32>()
                    .map_err(|_| Skip::Malformed(format!("lane `{lane_text}` is not a number")))?;
                let gate_time_ns = if payload.iter().all(u8::is_ascii_whitespace) {
                    None
                } else {
                    match serde_json::from_slice::<serde_json::Value>(payload) {
                        Ok(value) => gate_time_ns(&value),
                        Err(_) if self.payload == PayloadMode::Json => {
                            return Err(Skip::Malformed("payload is not JSON".into()))
                        }
                        Err(_) => None,
                    }
                };
                Ok(Record::GateTrigger(GateTrigger { lane, gate_time_ns }))
            }
        }
    }
}

/// Decode a payload per `mode`.
pub fn decode_payload(mode: PayloadMode, payload: &[u8]) -> Result<serde_json::Value, String> {
    let as_json = || serde_json::from_slice::<serde_json::Value>(payload);
    let as_text = || {
        std::str::from_utf8(payload)
            .map(|text| serde_json::Value::String(text.to_string()))
            .map_err(|_| "payload is neither JSON nor UTF-8 text".to_string())
    };
    match mode {
        PayloadMode::Json => as_json().map_err(|e| format!("payload is not JSON: {e}")),
        PayloadMode::Text => as_text(),
        PayloadMode::Auto => as_json().or_else(|_| as_text()),
        PayloadMode::Protobuf => Err("protobuf payloads are read with emit = \"records\"".into()),
    }
}

/// The gate's own timestamp in a JSON payload (see the module docs for the names).
pub fn gate_time_ns(value: &serde_json::Value) -> Option<i64> {
    const NAMES: [(&str, f64); 9] = [
        ("t_ns", 1.0),
        ("time_ns", 1.0),
        ("timestamp_ns", 1.0),
        ("t_us", 1e3),
        ("time_us", 1e3),
        ("timestamp_us", 1e3),
        ("t_ms", 1e6),
        ("time_ms", 1e6),
        ("timestamp_ms", 1e6),
    ];
    let object = value.as_object()?;
    NAMES.iter().find_map(|(name, scale)| {
        let number = object.get(*name)?;
        if let Some(whole) = number.as_i64() {
            return whole.checked_mul(*scale as i64);
        }
        let ns = number.as_f64()? * scale;
        (ns.is_finite() && ns.abs() < 9.0e18).then_some(ns.round() as i64)
    })
}

#[derive(Debug, Default)]
struct Counts {
    malformed: u64,
    unmatched: u64,
    oversized: u64,
    failures: u64,
    unread: u64,
}

pub struct MqttSource {
    /// `max_message_bytes`: larger payloads are skipped.
    max_message_bytes: usize,
    broker: Broker,
    qos: QoS,
    filters: Vec<String>,
    decoder: Decoder,
    counts: Counts,
    /// Whether the broker was last known reachable; `None` before the first attempt.
    link_up: Option<bool>,
}

/// Largest batch handed downstream at once.
const MAX_BATCH: usize = 1000;

enum Ended {
    Shutdown,
    Lost { connected: bool },
}

#[async_trait]
impl Component for MqttSource {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        tracing::info!(
            host = %self.broker.url.host,
            port = self.broker.url.port,
            tls = self.broker.url.tls,
            topics = ?self.filters,
            "mqtt: subscribing"
        );
        let mut backoff = broker::reconnect_backoff();
        loop {
            match self.connection(io).await? {
                Ended::Shutdown => return Ok(()),
                Ended::Lost { connected } => {
                    if connected {
                        backoff.reset();
                    }
                }
            }
            let delay = backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = io.shutdown.triggered() => return Ok(()),
            }
        }
    }
}

impl MqttSource {
    /// One connection: subscribe, emit messages until it fails or shutdown.
    async fn connection(&mut self, io: &mut Io) -> Result<Ended, ComponentError> {
        let mut connection = self.broker.connect(16)?;
        connection
            .client
            .try_subscribe_many(
                self.filters
                    .iter()
                    .map(|filter| SubscribeFilter::new(filter.clone(), self.qos)),
            )
            .map_err(|e| format!("mqtt: cannot queue the subscription: {e}"))?;
        let mut connected = false;
        let ended = loop {
            let note = tokio::select! {
                biased;
                _ = io.shutdown.triggered() => break Ended::Shutdown,
                note = connection.notes.recv() => note,
            };
            let mut batch = Vec::new();
            let mut next = note;
            let mut lost = None;
            loop {
                match next {
                    Some(Note::Message { topic, payload }) => {
                        self.take(io, &topic, &payload, &mut batch);
                    }
                    Some(Note::Connected) => {
                        connected = true;
                        tracing::info!(host = %self.broker.url.host, "mqtt: connected");
                        if self.link_up == Some(false) {
                            batch.push(self.link_status(true, "connected again".to_string()));
                        }
                        self.link_up = Some(true);
                    }
                    Some(Note::Subscribed(codes)) => {
                        for (filter, code) in self.filters.iter().zip(&codes) {
                            match code {
                                Some(qos) => tracing::info!(filter, ?qos, "mqtt: subscribed"),
                                None => {
                                    io.metrics.add_error();
                                    tracing::warn!(
                                        filter,
                                        "mqtt: the broker refused the subscription"
                                    );
                                }
                            }
                        }
                    }
                    Some(Note::Sent(_) | Note::Acked(_)) => {}
                    Some(Note::Lost(error)) => {
                        lost = Some(Some(error));
                        break;
                    }
                    None => {
                        lost = Some(None);
                        break;
                    }
                }
                if batch.len() >= MAX_BATCH {
                    break;
                }
                match connection.notes.try_recv() {
                    Ok(note) => next = Some(note),
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => next = None,
                }
            }
            if !batch.is_empty() {
                tokio::select! {
                    _ = io.output.send(batch) => {}
                    _ = io.shutdown.triggered() => break Ended::Shutdown,
                }
            }
            if let Some(error) = lost {
                self.lost(io, error.as_ref(), connected);
                // Say so once per outage, not on every failed retry.
                if self.link_up != Some(false) {
                    self.link_up = Some(false);
                    let why =
                        error.map_or_else(|| "connection ended".to_string(), |e| e.to_string());
                    let status =
                        self.link_status(false, format!("unreachable ({why}); reconnecting"));
                    tokio::select! {
                        _ = io.output.send(vec![status]) => {}
                        _ = io.shutdown.triggered() => break Ended::Shutdown,
                    }
                }
                break Ended::Lost { connected };
            }
        };
        let _ = connection.client.try_disconnect();
        Ok(ended)
    }

    /// A `link_status` record about this source's broker.
    fn link_status(&self, connected: bool, what: String) -> Event {
        let url = &self.broker.url;
        let peer = format!(
            "{}://{}:{}",
            if url.tls { "mqtts" } else { "mqtt" },
            url.host,
            url.port
        );
        Event::new(
            broker::now_ns(),
            Record::LinkStatus(std::sync::Arc::new(LinkStatus {
                message: format!("MQTT broker {peer} {what}"),
                peer,
                connected,
            })),
        )
    }

    fn take(&mut self, io: &Io, topic: &str, payload: &[u8], batch: &mut Vec<Event>) {
        if payload.len() > self.max_message_bytes {
            io.metrics.add_discarded(1);
            self.counts.oversized += 1;
            if broker::worth_logging(self.counts.oversized) {
                tracing::warn!(
                    topic,
                    bytes = payload.len(),
                    max_message_bytes = self.max_message_bytes,
                    oversized = self.counts.oversized,
                    "mqtt: skipping a message larger than max_message_bytes"
                );
            }
            return;
        }
        match self
            .decoder
            .decode_events(topic, payload, broker::now_ns(), batch)
        {
            Ok(None) => {}
            Ok(Some(unread)) => {
                for _ in 0..unread.envelopes {
                    io.metrics.add_error();
                }
                self.counts.unread += 1;
                if broker::worth_logging(self.counts.unread) {
                    tracing::warn!(
                        topic,
                        skipped = unread.envelopes,
                        batches = self.counts.unread,
                        "mqtt: skipping records of a batch: {}",
                        unread.why
                    );
                }
            }
            Err(Skip::NoPattern) => {
                io.metrics.add_discarded(1);
                self.counts.unmatched += 1;
                if broker::worth_logging(self.counts.unmatched) {
                    tracing::info!(
                        topic,
                        unmatched = self.counts.unmatched,
                        "mqtt: skipping a message whose topic fits no pattern"
                    );
                }
            }
            Err(Skip::Malformed(why)) => {
                io.metrics.add_error();
                self.counts.malformed += 1;
                if broker::worth_logging(self.counts.malformed) {
                    tracing::warn!(
                        topic,
                        malformed = self.counts.malformed,
                        "mqtt: skipping a message: {why}"
                    );
                }
            }
        }
    }

    fn lost(&mut self, io: &Io, error: Option<&ConnectionError>, connected: bool) {
        io.metrics.add_error();
        self.counts.failures += 1;
        let refused = matches!(
            error,
            Some(ConnectionError::ConnectionRefused(
                ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
            ))
        );
        if connected || broker::worth_logging(self.counts.failures) {
            match error {
                Some(error) => tracing::warn!(
                    %error,
                    refused,
                    failures = self.counts.failures,
                    "mqtt: connection lost or refused; reconnecting"
                ),
                None => tracing::warn!("mqtt: connection ended; reconnecting"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_subscribe_with_wildcards_and_capture_fields() {
        let pattern = TopicPattern::parse("carrera/track{lane}/finish").unwrap();
        assert_eq!(pattern.filter(), "carrera/+/finish");
        let fields = pattern.matches("carrera/track12/finish").unwrap();
        assert_eq!(fields.get("lane").map(String::as_str), Some("12"));
        assert_eq!(
            pattern.matches("carrera/track/finish"),
            None,
            "empty capture"
        );
        assert_eq!(pattern.matches("carrera/lane1/finish"), None);
        assert_eq!(pattern.matches("carrera/track1/finish/x"), None);
        assert_eq!(pattern.matches("carrera/track1"), None);

        let pattern = TopicPattern::parse("gates/home-g{gate}x/+/#").unwrap();
        assert_eq!(pattern.filter(), "gates/+/+/#");
        let fields = pattern.matches("gates/home-g3x/a/b/c").unwrap();
        assert_eq!(fields.get("gate").map(String::as_str), Some("3"));
        assert_eq!(pattern.matches("gates/home-g3/a/b"), None);
        assert!(
            TopicPattern::parse("gates/{site}/{gate}")
                .unwrap()
                .matches("gates/home/3")
                .unwrap()
                .len()
                == 2
        );
        let all = TopicPattern::parse("#").unwrap();
        assert!(all.matches("a/b").is_some());
        assert!(all.matches("$SYS/x").is_none());
        assert!(TopicPattern::parse("+/x")
            .unwrap()
            .matches("$SYS/x")
            .is_none());
        assert!(TopicPattern::parse("$SYS/+")
            .unwrap()
            .matches("$SYS/x")
            .is_some());
        assert!(TopicPattern::parse("a/#").unwrap().matches("a").is_some());

        // A shared subscription: subscribed with the prefix, matched without it.
        let shared = TopicPattern::parse("$share/hub/pitwall/edge/{edge}/records").unwrap();
        assert_eq!(shared.filter(), "$share/hub/pitwall/edge/+/records");
        let fields = shared.matches("pitwall/edge/e7/records").unwrap();
        assert_eq!(fields.get("edge").map(String::as_str), Some("e7"));
        assert_eq!(shared.matches("$share/hub/pitwall/edge/e7/records"), None);

        for bad in [
            "",
            "$share/hub",
            "$share//a",
            "$share/+/a",
            "a/#/b",
            "a/b+",
            "a/{x}{y}",
            "a/{x}-{y}",
            "a/{}",
            "a/{x",
            "a/x}",
            "{a}/{a}",
            "a/{b-c}",
        ] {
            assert!(TopicPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn payloads_decode_per_mode() {
        assert_eq!(
            decode_payload(PayloadMode::Auto, b"{\"a\":1}"),
            Ok(json!({"a": 1}))
        );
        assert_eq!(decode_payload(PayloadMode::Auto, b"12.5"), Ok(json!(12.5)));
        assert_eq!(decode_payload(PayloadMode::Auto, b"GO"), Ok(json!("GO")));
        assert_eq!(decode_payload(PayloadMode::Auto, b""), Ok(json!("")));
        assert!(decode_payload(PayloadMode::Auto, &[0xff, 0xfe]).is_err());
        assert_eq!(decode_payload(PayloadMode::Text, b"[1]"), Ok(json!("[1]")));
        assert!(decode_payload(PayloadMode::Json, b"GO").is_err());
    }

    #[test]
    fn gate_times_from_payloads() {
        assert_eq!(
            gate_time_ns(&json!({"timestamp_ms": 1500})),
            Some(1_500_000_000)
        );
        assert_eq!(gate_time_ns(&json!({"time_ms": 1.25})), Some(1_250_000));
        assert_eq!(gate_time_ns(&json!({"t_ns": 7, "time_ms": 1})), Some(7));
        assert_eq!(gate_time_ns(&json!({"t_us": 3})), Some(3000));
        assert_eq!(gate_time_ns(&json!({"timestamp_ms": "soon"})), None);
        assert_eq!(gate_time_ns(&json!({"timestamp": 5})), None);
        assert_eq!(gate_time_ns(&json!([1])), None);
        assert_eq!(gate_time_ns(&json!({"t_ms": 1e300})), None);
    }

    fn config(options: &str) -> MqttSourceConfig {
        pitwall_api::testing::parse_config(options)
    }

    #[test]
    fn checks_options() {
        let ok = config("topics = [\"carrera/track{lane}/finish\"]\nemit = \"gate_trigger\"");
        assert!(ok.check().is_empty(), "{:?}", ok.check());
        assert_eq!(
            ok.emits(),
            Kinds::of(&[RecordKind::GateTrigger, RecordKind::LinkStatus])
        );
        let no_lane = config("topics = [\"carrera/+/finish\"]\nemit = \"gate_trigger\"");
        assert_eq!(no_lane.check()[0].key, "topics[0]");
        let bad = config("url = \"http://x\"\nqos = 3\ntopics = [\"a/#/b\"]\npassword = \"p\"");
        let keys: Vec<String> = bad.check().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["url", "qos", "password", "topics[0]"]);
        assert_eq!(config("topics = []").check()[0].key, "topics");
        assert_eq!(
            config("topics = [\"#\"]").emits(),
            Kinds::of(&[RecordKind::MqttMessage, RecordKind::LinkStatus])
        );
        let records =
            config("topics = [\"edge/+/records\"]\nemit = \"records\"\npayload = \"protobuf\"");
        assert!(records.check().is_empty(), "{:?}", records.check());
        assert!(records.emits().is_all(), "records of every kind");
        let laps =
            config("topics = [\"e\"]\nemit = \"records\"\npayload = \"json\"\nkinds = [\"lap\"]");
        assert!(laps.check().is_empty(), "{:?}", laps.check());
        assert_eq!(
            laps.emits(),
            Kinds::of(&[RecordKind::Lap, RecordKind::LinkStatus])
        );
        let keys =
            |c: MqttSourceConfig| -> Vec<String> { c.check().into_iter().map(|p| p.key).collect() };
        assert_eq!(
            keys(config("topics = [\"e\"]\nemit = \"records\"")),
            vec!["payload"]
        );
        assert_eq!(
            keys(config("topics = [\"e\"]\npayload = \"protobuf\"")),
            vec!["payload"]
        );
        assert_eq!(
            keys(config(
                "topics = [\"e\"]\nemit = \"records\"\npayload = \"protobuf\"\nkinds = [\"laps\"]"
            )),
            vec!["kinds[0]"]
        );
        assert_eq!(
            keys(config("topics = [\"e\"]\nkinds = [\"lap\"]")),
            vec!["kinds"]
        );
    }

    #[test]
    fn record_batches_decode_with_their_times_and_kinds_filter() {
        use pitwall_api::record::{Chat, Lap};
        let lap = Event::new(
            11,
            Record::Lap(Arc::new(Lap {
                session_key: "s".into(),
                driver_number: 4,
                lap_number: 2,
                ..Lap::default()
            })),
        );
        let gate = Event::new(
            12,
            Record::GateTrigger(GateTrigger {
                lane: 1,
                gate_time_ns: Some(3),
            }),
        );
        let batch = wire::encode_batch(&[lap.clone(), gate.clone()]);
        let pattern = || vec![TopicPattern::parse("edge/{edge}/records").unwrap()];
        let mut all = Decoder::new(
            pattern(),
            PayloadMode::Protobuf,
            EmitMode::Records,
            Kinds::any(),
        );
        let mut out = vec![gate.clone()];
        assert_eq!(
            all.decode_events("edge/a/records", &batch, 99, &mut out),
            Ok(None)
        );
        assert_eq!(
            out,
            vec![gate.clone(), lap.clone(), gate.clone()],
            "appended, times kept"
        );
        assert_eq!(
            all.decode_events("other/a/records", &batch, 99, &mut out),
            Err(Skip::NoPattern)
        );
        assert!(matches!(
            all.decode_events("edge/a/records", b"{\"kind\":\"tick\"}", 99, &mut out),
            Err(Skip::Malformed(_))
        ));
        assert_eq!(out.len(), 3);

        let mut laps_only = Decoder::new(
            pattern(),
            PayloadMode::Protobuf,
            EmitMode::Records,
            Kinds::of(&[RecordKind::Lap]),
        );
        let mut out = vec![gate.clone()];
        laps_only
            .decode_events("edge/b/records", &batch, 99, &mut out)
            .unwrap();
        assert_eq!(
            out,
            vec![gate.clone(), lap.clone()],
            "earlier events are kept"
        );

        // One JSON record per message, timed at arrival.
        let mut json = Decoder::new(
            pattern(),
            PayloadMode::Json,
            EmitMode::Records,
            Kinds::any(),
        );
        let mut out = Vec::new();
        let chat = Record::Chat(Arc::new(Chat {
            session_key: "s".into(),
            car: None,
            driver_name: None,
            message: "hi".into(),
        }));
        let payload = serde_json::to_vec(&chat).unwrap();
        json.decode_events("edge/c/records", &payload, 99, &mut out)
            .unwrap();
        assert_eq!(out, vec![Event::new(99, chat)]);
        assert!(matches!(
            json.decode_events("edge/c/records", b"{\"kind\":\"nope\"}", 99, &mut out),
            Err(Skip::Malformed(_))
        ));
    }

    #[test]
    fn gate_decoding() {
        let decoder = Decoder::new(
            vec![TopicPattern::parse("carrera/track{lane}/finish").unwrap()],
            PayloadMode::Auto,
            EmitMode::GateTrigger,
            Kinds::any(),
        );
        assert_eq!(
            decoder.decode("carrera/track2/finish", b""),
            Ok(Record::GateTrigger(GateTrigger {
                lane: 2,
                gate_time_ns: None
            }))
        );
        assert_eq!(
            decoder.decode("carrera/track1/finish", b"{\"timestamp_ms\": 2}"),
            Ok(Record::GateTrigger(GateTrigger {
                lane: 1,
                gate_time_ns: Some(2_000_000)
            }))
        );
        assert_eq!(
            decoder.decode("carrera/track1/finish", b"\x01\xff"),
            Ok(Record::GateTrigger(GateTrigger {
                lane: 1,
                gate_time_ns: None
            })),
            "the payload is optional"
        );
        assert!(matches!(
            decoder.decode("carrera/trackX/finish", b""),
            Err(Skip::Malformed(_))
        ));
        assert_eq!(
            decoder.decode("other/track1/finish", b""),
            Err(Skip::NoPattern)
        );
    }
}
