//! Sink `mqtt`: publish records to an MQTT broker.
//!
//! Each accepted record becomes one message on the topic made from `topic`, a template with
//! `{kind}` (the record kind, `gate_trigger`), `{session_key}` and `{car}` (from the record;
//! a record that lacks one the template needs is counted as discarded and not published).
//! The payload is the record serialised as JSON with its `kind` (and without the event
//! time), or, when `text` is set, that fixed text for every record: race control publishes
//! `GO` on `carrera/race/start` at lights out (FORMATS.md section 7).
//!
//! `payload = "protobuf"` is for chaining pitwall-flow instances through a broker (an edge
//! next to each game, a hub that aggregates; `pipelines/edge-to-hub/`): one message carries
//! many records, encoded with [`pitwall_api::wire`] (`proto/pitwall/v1/records.proto`), event
//! times included, which an `mqtt` source with `emit = "records"` turns back into the same
//! typed records. The accepted records of one input batch that share a topic go out as one
//! message, in order, split before a message would grow beyond `max_message_bytes` (a
//! single larger record gets a message of its own). A template with `{car}` therefore
//! makes one message per car and batch.
//!
//! Live sources send small batches (a rig's frame as it arrives), which would make one small
//! message per frame. `linger_ms` holds protobuf messages open that long after their first
//! record, so that the records of many batches share a message: fewer, larger messages for
//! the broker, for at most `linger_ms` more latency. A message that fills up goes at once,
//! and everything held goes when the input ends. 0 (the default) publishes every input
//! batch at once.
//!
//! Any message larger than the client's packet limit (1 MiB with the topic) is never sent:
//! it is counted as an error and dropped, so it cannot stall the connection.
//!
//! Messages go out in order. QoS 1/2 messages stay in the sink's buffer until the broker
//! acknowledges them (QoS 0: until written to the connection); when the connection drops,
//! what was not acknowledged is published again after the reconnect (at least once: the
//! broker may see a message twice). While the broker is away the sink keeps reading its
//! input and buffers at most `max_buffered` messages; beyond that the oldest unsent ones are
//! dropped and counted as discarded. The connection is re-made forever with exponential
//! backoff (0.5 s to 30 s).
//!
//! When the input ends (shutdown), the sink waits up to `flush_timeout_ms` for everything
//! buffered to be acknowledged, counts what is left as discarded, and disconnects.
//!
//! ```toml
//! [sinks.race_start]
//! type = "mqtt"
//! inputs = ["race"]
//! url = "mqtt://127.0.0.1:1883"          # or mqtts://host:8883
//! # client_id = "pitwall-flow-<random>"
//! # username = "${MQTT_USERNAME}"
//! # password = "${MQTT_PASSWORD}"
//! qos = 1
//! retain = false
//! topic = "carrera/race/start"           # may use {kind}, {session_key}, {car}
//! kinds = ["race_control"]               # default: every kind
//! # payload = "json"                     # or "text" (needs `text`), or "protobuf"
//! text = "GO"
//! max_buffered = 10000                   # messages
//! flush_timeout_ms = 5000
//! # max_message_bytes = 262144           # payload = "protobuf" only
//! # linger_ms = 0                        # payload = "protobuf" only
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::{
    wire, BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io,
    Kinds, Record, RecordKind, Role,
};
use rumqttc::QoS;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::time::Instant;

use crate::broker::{self, Broker, Connection, Note, Secret};

fn default_url() -> String {
    broker::DEFAULT_URL.to_string()
}

fn default_qos() -> u8 {
    1
}

fn default_topic() -> String {
    "pitwall/{kind}".to_string()
}

fn default_max_buffered() -> usize {
    10_000
}

fn default_flush_timeout_ms() -> u64 {
    5000
}

fn default_max_message_bytes() -> usize {
    256 * 1024
}

/// Room left in a packet for the topic and the header.
const PACKET_HEADROOM: usize = 64 * 1024 + 16;

/// The smallest `max_message_bytes` that is allowed.
const MIN_MESSAGE_BYTES: usize = 1024;

/// The longest `linger_ms` that is allowed.
const MAX_LINGER_MS: u64 = 10_000;

/// What a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SinkPayload {
    /// The record as JSON, with its `kind`.
    Json,
    /// The fixed `text`.
    Text,
    /// Batches of records in pitwall-flow's protobuf encoding (`pitwall.v1.Batch`), for an
    /// `mqtt` source with `emit = "records"` on another instance.
    Protobuf,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttSinkConfig {
    /// Broker: `mqtt://host:1883` (plain TCP) or `mqtts://host:8883` (TLS with the system's
    /// root certificates).
    #[serde(default = "default_url")]
    pub url: String,
    /// Client id; default `pitwall-flow-` and random hex digits.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Login name, normally "${MQTT_USERNAME}". Never logged.
    #[serde(default)]
    pub username: Option<Secret>,
    /// Password or access token, normally "${MQTT_PASSWORD}". Never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Publish QoS: 0, 1 or 2.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Ask the broker to keep the last message of each topic for new subscribers.
    #[serde(default)]
    pub retain: bool,
    /// Topic template: `{kind}`, `{session_key}` and `{car}` are filled from each record.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Record kinds to publish (snake_case names); empty or absent = every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// `json` (the record), `text` (the fixed `text`) or `protobuf` (batches of records for
    /// another pitwall-flow); default `text` when `text` is set, else `json`.
    #[serde(default)]
    pub payload: Option<SinkPayload>,
    /// A fixed payload published for every accepted record, e.g. "GO".
    #[serde(default)]
    pub text: Option<String>,
    /// Messages kept while the broker is away; beyond this the oldest are dropped.
    #[serde(default = "default_max_buffered")]
    pub max_buffered: usize,
    /// At the end of the input, wait at most this long for buffered messages to go out.
    #[serde(default = "default_flush_timeout_ms")]
    pub flush_timeout_ms: u64,
    /// With `payload = "protobuf"`: a message is split before it grows beyond this many
    /// bytes (1024 up to 983024, below the 1 MiB packet limit).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// With `payload = "protobuf"`: hold a message open up to this many ms after its first
    /// record so that later batches join it (fewer, larger messages; that much more
    /// latency). 0 = publish each input batch at once.
    #[serde(default)]
    pub linger_ms: u64,
}

/// One level of the topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Kind,
    SessionKey,
    Car,
}

/// A parsed topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    pieces: Vec<Piece>,
}

impl TopicTemplate {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the topic cannot be empty".into());
        }
        if text.contains(['+', '#']) {
            return Err(format!(
                "`{text}`: `+` and `#` are for subscribing; a published topic cannot hold them"
            ));
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if rest[..open].contains('}') {
                return Err(format!("`{text}`: `}}` without `{{`"));
            }
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("`{text}`: `{{` without `}}`"))?;
            pieces.push(match &after[..close] {
                "kind" => Piece::Kind,
                "session_key" => Piece::SessionKey,
                "car" => Piece::Car,
                other => {
                    return Err(format!(
                        "`{text}`: unknown placeholder `{{{other}}}`; use {{kind}}, {{session_key}} or {{car}}"
                    ))
                }
            });
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("`{text}`: `}}` without `{{`"));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Self { pieces })
    }

    /// The topic for `record`, or None when the record lacks a value the template needs (or
    /// that value would put a wildcard or a new level into the topic).
    pub fn render(&self, record: &Record) -> Option<String> {
        let mut topic = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => topic.push_str(text),
                Piece::Kind => topic.push_str(record.kind().name()),
                Piece::SessionKey => {
                    let key = record.session_key()?;
                    if key.is_empty() || key.contains(['/', '+', '#']) {
                        return None;
                    }
                    topic.push_str(key);
                }
                Piece::Car => topic.push_str(&record.car()?.to_string()),
            }
        }
        Some(topic)
    }
}

impl MqttSinkConfig {
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

    fn fixed_text(&self) -> Result<Option<String>, OptionProblem> {
        match (self.payload, &self.text) {
            (Some(SinkPayload::Json), Some(_)) => Err(OptionProblem::new(
                "text",
                "`text` is a fixed payload: leave it out for payload = \"json\"",
            )),
            (Some(SinkPayload::Text), None) => Err(OptionProblem::new(
                "text",
                "payload = \"text\" publishes the fixed `text`: give it, e.g. text = \"GO\"",
            )),
            (Some(SinkPayload::Protobuf), Some(_)) => Err(OptionProblem::new(
                "text",
                "`text` is a fixed payload: leave it out for payload = \"protobuf\"",
            )),
            (_, text) => Ok(text.clone()),
        }
    }
}

impl ComponentConfig for MqttSinkConfig {
    fn accepts(&self) -> Kinds {
        self.kind_set().unwrap_or(Kinds::NONE)
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = broker::check_common(
            &self.url,
            self.qos,
            self.username.as_ref(),
            self.password.as_ref(),
        );
        if let Err(message) = TopicTemplate::parse(&self.topic) {
            problems.push(OptionProblem::new("topic", message));
        }
        if let Err(problem) = self.kind_set() {
            problems.push(problem);
        }
        if let Err(problem) = self.fixed_text() {
            problems.push(problem);
        }
        if self.max_buffered == 0 {
            problems.push(OptionProblem::new("max_buffered", "must be at least 1"));
        }
        if self.linger_ms > MAX_LINGER_MS {
            problems.push(OptionProblem::new(
                "linger_ms",
                format!("at most {MAX_LINGER_MS} ms"),
            ));
        } else if self.linger_ms > 0 && self.payload != Some(SinkPayload::Protobuf) {
            problems.push(OptionProblem::new(
                "linger_ms",
                "`linger_ms` gathers records into protobuf batches: it needs payload = \"protobuf\"",
            ));
        }
        let largest = broker::MAX_PACKET_BYTES - PACKET_HEADROOM;
        if !(MIN_MESSAGE_BYTES..=largest).contains(&self.max_message_bytes) {
            problems.push(OptionProblem::new(
                "max_message_bytes",
                format!(
                    "must be from {MIN_MESSAGE_BYTES} to {largest} (the client's packet limit is {} bytes with the topic)",
                    broker::MAX_PACKET_BYTES
                ),
            ));
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
        problems
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        let broker = Broker::new(
            &self.url,
            self.client_id.as_deref(),
            self.username.as_ref(),
            self.password.as_ref(),
            true,
        )?;
        Ok(Box::new(MqttSink {
            broker,
            qos: broker::qos(self.qos).ok_or("MQTT QoS is 0, 1 or 2")?,
            retain: self.retain,
            topic: TopicTemplate::parse(&self.topic)?,
            kinds: self.kind_set().map_err(|p| p.message)?,
            text: self.fixed_text().map_err(|p| p.message)?,
            protobuf: self.payload == Some(SinkPayload::Protobuf),
            max_message_bytes: self.max_message_bytes.clamp(
                MIN_MESSAGE_BYTES,
                broker::MAX_PACKET_BYTES - PACKET_HEADROOM,
            ),
            linger: Duration::from_millis(self.linger_ms.min(MAX_LINGER_MS)),
            pending: Vec::new(),
            pending_since: None,
            max_buffered: self.max_buffered.max(1),
            flush_timeout: Duration::from_millis(self.flush_timeout_ms),
            queued: VecDeque::new(),
            inflight: VecDeque::new(),
            counts: Counts::default(),
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<MqttSinkConfig>(
        "mqtt",
        Role::Sink,
        "MQTT publisher: records as JSON or protobuf batches (to another pitwall-flow), or a fixed text such as GO, on topics made from the record",
    )
}

/// A message waiting to go out or to be acknowledged.
#[derive(Debug, Clone)]
struct Message {
    topic: String,
    payload: Vec<u8>,
    /// How many records it carries (more than one with `payload = "protobuf"`).
    records: usize,
}

#[derive(Debug, Default)]
struct Counts {
    unpublishable: u64,
    dropped: u64,
    failures: u64,
    oversized: u64,
    unencodable: u64,
}

/// Publishes handed to the client at once (below rumqttc's inflight limit of 100).
const WINDOW: usize = 64;

pub struct MqttSink {
    broker: Broker,
    qos: QoS,
    retain: bool,
    topic: TopicTemplate,
    kinds: Kinds,
    text: Option<String>,
    /// Publish protobuf batches instead of one message per record.
    protobuf: bool,
    max_message_bytes: usize,
    linger: Duration,
    /// Protobuf messages being filled, one per topic; kept across run() restarts.
    pending: Vec<Message>,
    /// When the oldest record in `pending` arrived.
    pending_since: Option<Instant>,
    max_buffered: usize,
    flush_timeout: Duration,
    /// Not yet handed to the client, oldest first. Kept across run() restarts.
    queued: VecDeque<Message>,
    /// Handed to the client, waiting for the broker; `Some(pkid)` once written.
    inflight: VecDeque<(Option<u16>, Message)>,
    counts: Counts,
}

#[async_trait]
impl Component for MqttSink {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        tracing::info!(
            host = %self.broker.url.host,
            port = self.broker.url.port,
            tls = self.broker.url.tls,
            "mqtt: publishing"
        );
        let mut backoff = broker::reconnect_backoff();
        let mut connection: Option<Connection> = Some(self.broker.connect(WINDOW * 2)?);
        let mut connected = false;
        let mut reconnect_at: Option<Instant> = None;
        let mut input_open = true;
        let mut deadline: Option<Instant> = None;
        loop {
            if connected {
                if let Some(conn) = &connection {
                    self.pump(conn);
                }
            }
            if !input_open && self.queued.is_empty() && self.inflight.is_empty() {
                break;
            }
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                batch = recv(io), if input_open => match batch {
                    Some(batch) => self.accept(io, &batch),
                    None => {
                        input_open = false;
                        self.flush_pending(io);
                        deadline = Some(Instant::now() + self.flush_timeout);
                    }
                },
                _ = tokio::time::sleep_until(self.pending_since.map_or(far, |t| t + self.linger)),
                    if self.pending_since.is_some() => self.flush_pending(io),
                note = next_note(&mut connection) => match note {
                    Some(Note::Connected) => {
                        connected = true;
                        backoff.reset();
                        tracing::info!(host = %self.broker.url.host, "mqtt: connected");
                    }
                    Some(Note::Sent(pkid)) => self.sent(pkid),
                    Some(Note::Acked(pkid)) => self.acked(pkid),
                    Some(Note::Subscribed(_) | Note::Message { .. }) => {}
                    Some(Note::Lost(error)) => {
                        self.lost(io, Some(&error), connected);
                        connection = None;
                        connected = false;
                        reconnect_at = Some(Instant::now() + backoff.next_delay());
                    }
                    None => {
                        self.lost(io, None, connected);
                        connection = None;
                        connected = false;
                        reconnect_at = Some(Instant::now() + backoff.next_delay());
                    }
                },
                _ = tokio::time::sleep_until(reconnect_at.unwrap_or(far)), if reconnect_at.is_some() => {
                    reconnect_at = None;
                    connection = Some(self.broker.connect(WINDOW * 2)?);
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                    let left = self.queued.iter().map(|m| m.records).sum::<usize>()
                        + self.inflight.iter().map(|(_, m)| m.records).sum::<usize>();
                    io.metrics.add_discarded(left);
                    tracing::warn!(
                        left,
                        "mqtt: the input ended and the broker did not take everything in time; dropping the rest"
                    );
                    self.queued.clear();
                    self.inflight.clear();
                    break;
                }
            }
        }
        if let Some(conn) = connection {
            if connected {
                // Let the event loop send the DISCONNECT before it is dropped.
                let _ = conn.client.try_disconnect();
                let mut conn = conn;
                let _ = tokio::time::timeout(Duration::from_millis(500), async {
                    while let Some(note) = conn.notes.recv().await {
                        if matches!(note, Note::Lost(_)) {
                            break;
                        }
                    }
                })
                .await;
            }
        }
        Ok(())
    }
}

async fn recv(io: &mut Io) -> Option<pitwall_api::Batch> {
    match io.input.as_mut() {
        Some(input) => input.recv().await,
        None => None,
    }
}

async fn next_note(connection: &mut Option<Connection>) -> Option<Note> {
    match connection {
        Some(conn) => conn.notes.recv().await,
        None => std::future::pending().await,
    }
}

impl MqttSink {
    /// Turn accepted records into messages at the back of the buffer.
    fn accept(&mut self, io: &Io, batch: &[Event]) {
        if self.protobuf {
            self.accept_protobuf(io, batch);
            return;
        }
        for event in batch {
            if !self.kinds.contains(event.kind()) {
                continue;
            }
            let Some(topic) = self.topic_for(io, event) else {
                continue;
            };
            let payload = match &self.text {
                Some(text) => text.as_bytes().to_vec(),
                None => match serde_json::to_vec(&event.record) {
                    Ok(json) => json,
                    Err(error) => {
                        io.metrics.add_error();
                        tracing::warn!(%error, "mqtt: cannot serialise a record; not published");
                        continue;
                    }
                },
            };
            self.enqueue(
                io,
                Message {
                    topic,
                    payload,
                    records: 1,
                },
            );
        }
    }

    /// The accepted records of a batch as protobuf batches, one or more per topic (in the
    /// order topics first appear), split at `max_message_bytes`.
    fn accept_protobuf(&mut self, io: &Io, batch: &[Event]) {
        let mut open = std::mem::take(&mut self.pending);
        for event in batch {
            if !self.kinds.contains(event.kind()) {
                continue;
            }
            let Some(topic) = self.topic_for(io, event) else {
                continue;
            };
            let index = match open.iter().position(|m| m.topic == topic) {
                Some(index) => index,
                None => {
                    open.push(Message {
                        topic,
                        payload: Vec::new(),
                        records: 0,
                    });
                    open.len() - 1
                }
            };
            let message = &mut open[index];
            let payload = &mut message.payload;
            let before = payload.len();
            if let Err(error) = wire::append_event(payload, event) {
                io.metrics.add_error();
                self.counts.unencodable += 1;
                if broker::worth_logging(self.counts.unencodable) {
                    tracing::warn!(%error, "mqtt: cannot encode a record; not published");
                }
                continue;
            }
            if before > 0 && payload.len() > self.max_message_bytes {
                // The message is full without this record: send it, start the next with it.
                let record = payload.split_off(before);
                let full = Message {
                    topic: message.topic.clone(),
                    payload: std::mem::replace(payload, record),
                    records: message.records,
                };
                message.records = 1;
                self.enqueue(io, full);
            } else {
                message.records += 1;
            }
        }
        open.retain(|message| !message.payload.is_empty());
        self.pending = open;
        if self.pending.is_empty() {
            self.pending_since = None;
        } else if self.linger.is_zero() {
            self.flush_pending(io);
        } else if self.pending_since.is_none() {
            self.pending_since = Some(Instant::now());
        }
    }

    /// Publish the protobuf messages being filled.
    fn flush_pending(&mut self, io: &Io) {
        self.pending_since = None;
        for message in std::mem::take(&mut self.pending) {
            self.enqueue(io, message);
        }
    }

    /// The topic of a record, or None (counted as discarded) when the template needs a value
    /// the record lacks.
    fn topic_for(&mut self, io: &Io, event: &Event) -> Option<String> {
        let topic = self.topic.render(&event.record);
        if topic.is_none() {
            io.metrics.add_discarded(1);
            self.counts.unpublishable += 1;
            if broker::worth_logging(self.counts.unpublishable) {
                tracing::warn!(
                    kind = %event.kind(),
                    skipped = self.counts.unpublishable,
                    "mqtt: the record has no value for a placeholder of `topic`; not published"
                );
            }
        }
        topic
    }

    /// Put a message at the back of the buffer, dropping the oldest beyond `max_buffered`.
    fn enqueue(&mut self, io: &Io, message: Message) {
        if message.payload.len() + message.topic.len() + 16 > broker::MAX_PACKET_BYTES {
            // The client would refuse it and drop the connection: never send it.
            io.metrics.add_error();
            self.counts.oversized += 1;
            if broker::worth_logging(self.counts.oversized) {
                tracing::warn!(
                    bytes = message.payload.len(),
                    limit = broker::MAX_PACKET_BYTES,
                    topic = %message.topic,
                    "mqtt: a message is larger than the packet limit; not published"
                );
            }
            return;
        }
        self.queued.push_back(message);
        if self.queued.len() + self.inflight.len() > self.max_buffered {
            if let Some(oldest) = self.queued.pop_front() {
                io.metrics.add_discarded(oldest.records);
                self.counts.dropped += 1;
                if broker::worth_logging(self.counts.dropped) {
                    tracing::warn!(
                        dropped = self.counts.dropped,
                        max_buffered = self.max_buffered,
                        "mqtt: buffer full while the broker is away; dropping the oldest message"
                    );
                }
            }
        }
    }

    /// Hand queued messages to the client, up to the window.
    fn pump(&mut self, connection: &Connection) {
        while self.inflight.len() < WINDOW {
            let Some(message) = self.queued.pop_front() else {
                return;
            };
            match connection.client.try_publish(
                message.topic.clone(),
                self.qos,
                self.retain,
                message.payload.clone(),
            ) {
                Ok(()) => self.inflight.push_back((None, message)),
                Err(_) => {
                    // The client's queue is full or its event loop ended: try again later.
                    self.queued.push_front(message);
                    return;
                }
            }
        }
    }

    /// A publish was written with `pkid`: the oldest message without one.
    fn sent(&mut self, pkid: u16) {
        if self.qos == QoS::AtMostOnce {
            // QoS 0 is done once written.
            self.inflight.pop_front();
            return;
        }
        if let Some(slot) = self.inflight.iter_mut().find(|(id, _)| id.is_none()) {
            slot.0 = Some(pkid);
        }
    }

    fn acked(&mut self, pkid: u16) {
        if let Some(i) = self.inflight.iter().position(|(id, _)| *id == Some(pkid)) {
            self.inflight.remove(i);
        }
    }

    /// The connection is gone: what it did not deliver goes back to the front, in order.
    fn lost(&mut self, io: &Io, error: Option<&rumqttc::ConnectionError>, connected: bool) {
        io.metrics.add_error();
        self.counts.failures += 1;
        while let Some((_, message)) = self.inflight.pop_back() {
            self.queued.push_front(message);
        }
        if connected || broker::worth_logging(self.counts.failures) {
            match error {
                Some(error) => tracing::warn!(
                    %error,
                    failures = self.counts.failures,
                    buffered = self.queued.len(),
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
    use pitwall_api::record::{GateTrigger, Lap};
    use std::sync::Arc;

    #[test]
    fn topics_from_templates() {
        let template = TopicTemplate::parse("f1/{session_key}/{kind}/{car}").unwrap();
        let lap = Record::Lap(Arc::new(Lap {
            session_key: "9158".into(),
            driver_number: 44,
            ..Lap::default()
        }));
        assert_eq!(template.render(&lap).as_deref(), Some("f1/9158/lap/44"));
        let gate = Record::GateTrigger(GateTrigger {
            lane: 2,
            gate_time_ns: None,
        });
        assert_eq!(template.render(&gate), None, "a gate has no session");
        assert_eq!(
            TopicTemplate::parse("carrera/track{car}/x")
                .unwrap()
                .render(&gate)
                .as_deref(),
            Some("carrera/track2/x")
        );
        let slashed = Record::Lap(Arc::new(Lap {
            session_key: "a/b".into(),
            ..Lap::default()
        }));
        assert_eq!(template.render(&slashed), None);
        for bad in ["", "a/+", "a/#", "a/{lane}", "a/{kind", "a/}"] {
            assert!(TopicTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    fn config(options: &str) -> MqttSinkConfig {
        pitwall_api::testing::parse_config(options)
    }

    #[test]
    fn checks_options() {
        let go =
            config("topic = \"carrera/race/start\"\nkinds = [\"race_control\"]\ntext = \"GO\"");
        assert!(go.check().is_empty(), "{:?}", go.check());
        assert_eq!(go.accepts(), Kinds::of(&[RecordKind::RaceControl]));
        assert_eq!(go.fixed_text().unwrap().as_deref(), Some("GO"));
        assert!(config("").accepts().is_all());
        let bad =
            config("kinds = [\"laps\"]\npayload = \"text\"\ntopic = \"a/#\"\nmax_buffered = 0");
        let keys: Vec<String> = bad.check().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["topic", "kinds[0]", "text", "max_buffered"]);
        let both = config("payload = \"json\"\ntext = \"GO\"");
        assert_eq!(both.check()[0].key, "text");
        let protobuf = config("payload = \"protobuf\"\ntopic = \"pitwall/edge/a/records\"");
        assert!(protobuf.check().is_empty(), "{:?}", protobuf.check());
        assert_eq!(protobuf.max_message_bytes, 256 * 1024);
        let keys =
            |c: MqttSinkConfig| -> Vec<String> { c.check().into_iter().map(|p| p.key).collect() };
        assert_eq!(
            keys(config("payload = \"protobuf\"\ntext = \"GO\"")),
            vec!["text"]
        );
        assert_eq!(
            keys(config("payload = \"protobuf\"\nmax_message_bytes = 100")),
            vec!["max_message_bytes"]
        );
        assert_eq!(
            keys(config("max_message_bytes = 2000000")),
            vec!["max_message_bytes"]
        );
        assert!(config("max_message_bytes = 983024").check().is_empty());
        assert!(config("payload = \"protobuf\"\nlinger_ms = 50")
            .check()
            .is_empty());
        assert_eq!(keys(config("linger_ms = 50")), vec!["linger_ms"]);
        assert_eq!(
            keys(config("payload = \"protobuf\"\nlinger_ms = 60000")),
            vec!["linger_ms"]
        );
    }
}
