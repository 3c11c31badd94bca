//! Live mode over OpenF1's MQTT stream (`transport = "mqtt"`, paid tier, FORMATS.md 1).
//!
//! OpenF1 publishes every row it stores on a topic named after its REST path (`v1/location`,
//! `v1/laps`, ...): the REST JSON object plus `_id` (an increasing integer) and `_key` (the
//! document's id: the same `_key` again is an update of that document, e.g. a lap that
//! completes). This module subscribes to those topics and turns each payload into the same
//! typed records the REST live path emits, with the same row parsers.
//!
//! Connection:
//! - `mqtts://host:port` is MQTT over TLS (the system's root certificates), `mqtt://host:port`
//!   plain TCP (local brokers, tests). Username: the configured `username` (any non-empty
//!   string is accepted by OpenF1), else `pitwall-flow`; password: the OAuth access token from
//!   `POST {root}/token` (the REST client's token handling). Without credentials (only allowed
//!   for `mqtt://`) the broker is asked without a login.
//! - The subscription is QoS 1 on a persistent session (`clean_session = false`, one random
//!   client id per run): when the connection drops, the broker keeps what it would have sent
//!   and delivers it after the reconnect. Redelivered duplicates (same topic and `_id`,
//!   among the last 20 000 messages) are dropped.
//! - The token is renewed a minute before it expires: the source then reconnects with the
//!   new one. A refused login (or three failed attempts in a row without the broker's
//!   ConnAck) forgets the token, so the next attempt obtains a new one.
//!   Every connection loss is followed by a reconnect, with exponential backoff, forever,
//!   until shutdown.
//!
//! Session: a numeric `session_key` keeps only that session's messages. With
//! `session_key = "latest"` and credentials, the key is resolved through the REST API; without
//! credentials it is the highest `session_key` the stream has carried so far (OpenF1's keys
//! grow with time): messages of older sessions are dropped, and when a newer session appears
//! a `SessionEnd` closes the previous one.
//!
//! With credentials the stream is seeded with one REST poll before subscribing (the session
//! with its meeting name, drivers, laps, stints, results, starting grid and the recent time
//! series): the broker only sends what changes from now on, and a consumer needs the
//! drivers of a race that started before it connected.
//!
//! Order and batching: messages are buffered until the stream has been quiet for 20 ms or
//! the oldest waited 100 ms, then sorted by `_id` (messages of different topics can arrive
//! out of order) and emitted as one batch. Event time is the row's `date` (time series,
//! race control, weather, pit stops) or `date_start` (laps, sessions); rows without one
//! (drivers, stints, results, a lap not yet started) take the stream's clock, the newest
//! data time seen (the wall clock before any). A repeated `_key` is emitted again:
//! downstream documents upsert by driver and lap. Locations at 0,0 ("car not placed") are
//! skipped. Reference paths (the fastest lap, a pit pass) are emitted once the buffered
//! locations cover them, as in REST live mode.
//!
//! Ticks: every `tick_ms` of wall time, [`Record::Tick`]s on a `tick_ms` grid up to the
//! stream's clock. The clock is the newest data time; when no new data came for a second of
//! wall time it moves on with the wall clock (minus that second), so that time-driven
//! transforms still progress through gaps in the data.
//!
//! Malformed payloads (not JSON, not an object, a row the parsers refuse) are counted as
//! errors, logged (the first few, then every 1000th) and skipped; messages of other sessions
//! and duplicates are counted as discarded.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use pitwall_api::backoff::Backoff;
use pitwall_api::record::{
    parse_iso8601_ns, Driver, Event, GridSlot, Lap, Pit, RaceControlMessage, Record, Session,
    SessionEnd, SessionResultEntry, Stint, Weather,
};
use pitwall_api::{ComponentError, Io};
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, MqttOptions, Packet, QoS};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::cache::now_ns;
use super::fetch::{self, Api};
use super::live::Live;
use super::rows::{self, Skipped};
use super::{worth_logging, OpenF1Config};

/// Default broker.
pub const DEFAULT_URL: &str = "mqtts://mqtt.openf1.org:8883";

/// Default topics: every REST path the source turns into records.
pub const DEFAULT_TOPICS: [&str; 13] = [
    "v1/sessions",
    "v1/drivers",
    "v1/location",
    "v1/car_data",
    "v1/position",
    "v1/intervals",
    "v1/laps",
    "v1/stints",
    "v1/pit",
    "v1/race_control",
    "v1/session_result",
    "v1/weather",
    "v1/starting_grid",
];

/// Messages with a larger payload are skipped (and counted as discarded): OpenF1's are a
/// few hundred bytes.
const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Release the buffer once no message came for this long...
const QUIET: Duration = Duration::from_millis(20);
/// ... or once its oldest message waited this long.
const MAX_HOLD: Duration = Duration::from_millis(100);
/// Without new data for this long (wall time), the tick clock follows the wall clock.
const IDLE_GRACE_NS: i64 = 1_000_000_000;
/// Recent (topic, `_id`) pairs remembered to drop QoS 1 redeliveries.
const SEEN_CAPACITY: usize = 20_000;

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

/// `mqtts://host[:port]` (TLS, port 8883 by default) or `mqtt://host[:port]` (plain TCP,
/// 1883); `ssl://` and `tcp://` are synonyms. IPv6 hosts go in brackets.
pub fn parse_broker_url(text: &str) -> Result<BrokerUrl, String> {
    // Shown in errors: a password in the URL must not be.
    let shown = pitwall_api::redact::url(text.trim());
    let text = text.trim();
    let (tls, rest) = if let Some(rest) = text
        .strip_prefix("mqtts://")
        .or_else(|| text.strip_prefix("ssl://"))
    {
        (true, rest)
    } else if let Some(rest) = text
        .strip_prefix("mqtt://")
        .or_else(|| text.strip_prefix("tcp://"))
    {
        (false, rest)
    } else {
        return Err(format!(
            "`{shown}` is not an MQTT URL such as mqtts://mqtt.openf1.org:8883 or mqtt://127.0.0.1:1883"
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('@') || rest.contains('?') {
        return Err(format!(
            "`{shown}`: give only a host and port (no path, login or query)"
        ));
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("`{shown}`: unclosed `[` in the host"))?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{shown}` has no host"));
    }
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{shown}`: `{port}` is not a port"))?,
        None if tls => 8883,
        None => 1883,
    };
    Ok(BrokerUrl {
        tls,
        host: host.to_string(),
        port,
    })
}

/// The OpenF1 collections the stream understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Sessions,
    Drivers,
    Location,
    CarData,
    Position,
    Intervals,
    Laps,
    Stints,
    Pit,
    RaceControl,
    SessionResult,
    Weather,
    StartingGrid,
}

impl Topic {
    /// `v1/laps` (or `laps`) to [`Topic::Laps`]; `None` for collections without records.
    pub fn of(topic: &str) -> Option<Self> {
        let name = topic.trim_matches('/');
        let name = name.strip_prefix("v1/").unwrap_or(name);
        Some(match name {
            "sessions" => Self::Sessions,
            "drivers" => Self::Drivers,
            "location" => Self::Location,
            "car_data" => Self::CarData,
            "position" => Self::Position,
            "intervals" => Self::Intervals,
            "laps" => Self::Laps,
            "stints" => Self::Stints,
            "pit" => Self::Pit,
            "race_control" => Self::RaceControl,
            "session_result" => Self::SessionResult,
            "weather" => Self::Weather,
            "starting_grid" => Self::StartingGrid,
            _ => return None,
        })
    }
}

/// What became of one incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Buffered,
    /// Not usable: counted as an error.
    Malformed,
    /// A redelivery of a message already taken.
    Duplicate,
    /// A topic without records (e.g. `v1/meetings` under a `v1/#` subscription).
    UnknownTopic,
}

struct Pending {
    id: Option<u64>,
    seq: u64,
    topic: Topic,
    session_key: Option<u64>,
    payload: String,
}

/// The stream's state: the buffer of messages not yet emitted, the current session and the
/// tick clock. Independent of the connection, so it survives reconnects.
pub struct Stream {
    /// `Some` for a fixed `session_key`.
    wanted: Option<u64>,
    live: Option<Live>,
    tick_ms: u64,
    tick_ns: i64,
    pending: Vec<Pending>,
    first_arrival: Option<Instant>,
    last_arrival: Option<Instant>,
    seq: u64,
    seen: HashSet<(Topic, u64)>,
    seen_order: VecDeque<(Topic, u64)>,
    /// The newest data time and the wall instant it advanced.
    newest: Option<(i64, Instant)>,
    next_tick: Option<i64>,
    /// Messages of other sessions (or before the session is known) and duplicates.
    pub discarded: u64,
    /// Malformed messages.
    pub malformed: u64,
    /// Messages over [`MAX_MESSAGE_BYTES`], skipped.
    pub oversized: u64,
}

/// What one flush produced.
#[derive(Default)]
pub struct Flushed {
    pub events: Vec<Event>,
    pub malformed: u64,
    pub discarded: u64,
}

impl Stream {
    pub fn new(wanted: Option<u64>, tick_ms: u64) -> Self {
        Self {
            wanted,
            live: wanted.map(|key| Live::new(key, tick_ms)),
            tick_ms,
            tick_ns: i64::try_from(tick_ms.max(1)).unwrap_or(100) * 1_000_000,
            pending: Vec::new(),
            first_arrival: None,
            last_arrival: None,
            seq: 0,
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            newest: None,
            next_tick: None,
            discarded: 0,
            malformed: 0,
            oversized: 0,
        }
    }

    /// The session whose messages are kept, when known.
    pub fn session_key(&self) -> Option<u64> {
        self.wanted
            .or_else(|| self.live.as_ref().and_then(|l| l.key.parse().ok()))
    }

    /// Take one message into the buffer.
    pub fn receive(&mut self, topic: &str, payload: &[u8]) -> Received {
        let Some(kind) = Topic::of(topic) else {
            return Received::UnknownTopic;
        };
        #[derive(Deserialize)]
        struct Meta {
            #[serde(default, rename = "_id")]
            id: Option<u64>,
            #[serde(default)]
            session_key: Option<u64>,
        }
        let Ok(text) = std::str::from_utf8(payload) else {
            return Received::Malformed;
        };
        let Ok(meta) = serde_json::from_str::<Meta>(text) else {
            return Received::Malformed;
        };
        if let Some(id) = meta.id {
            if !self.seen.insert((kind, id)) {
                return Received::Duplicate;
            }
            self.seen_order.push_back((kind, id));
            if self.seen_order.len() > SEEN_CAPACITY {
                if let Some(old) = self.seen_order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
        let now = Instant::now();
        self.first_arrival.get_or_insert(now);
        self.last_arrival = Some(now);
        self.seq += 1;
        self.pending.push(Pending {
            id: meta.id,
            seq: self.seq,
            topic: kind,
            session_key: meta.session_key,
            payload: text.to_string(),
        });
        Received::Buffered
    }

    /// When the buffer should be released (`None` when it is empty).
    pub fn release_at(&self) -> Option<Instant> {
        let first = self.first_arrival?;
        let last = self.last_arrival.unwrap_or(first);
        Some((last + QUIET).min(first + MAX_HOLD))
    }

    /// Seed the stream with a REST poll's output (ticks included): its newest data time
    /// becomes the clock.
    fn seeded(&mut self, live: Live) {
        if let Some(newest) = live.newest() {
            self.newest = Some((newest, Instant::now()));
        }
        self.next_tick = live.next_tick;
        self.live = Some(live);
    }

    /// The clock for records without a time and for ticks: the newest data time, moving on
    /// with the wall clock once no data came for [`IDLE_GRACE_NS`].
    fn clock(&self, now: Instant) -> Option<i64> {
        let (newest, at) = self.newest?;
        let idle = i64::try_from(now.duration_since(at).as_nanos()).unwrap_or(i64::MAX);
        Some(newest.saturating_add(idle.saturating_sub(IDLE_GRACE_NS).max(0)))
    }

    /// Emit the buffered messages in `_id` order, then reference paths that became known and
    /// ticks up to the clock.
    pub fn flush(&mut self) -> Flushed {
        let now = Instant::now();
        let mut out = Flushed::default();
        let mut pending = std::mem::take(&mut self.pending);
        self.first_arrival = None;
        self.last_arrival = None;
        pending.sort_by_key(|p| (p.id.unwrap_or(u64::MAX), p.seq));
        let mut laps_changed = false;
        for message in pending {
            let current = self.session_key();
            let key = match (self.wanted, message.session_key, current) {
                (Some(wanted), Some(key), _) if key != wanted => None,
                (Some(wanted), _, _) => Some(wanted),
                (None, Some(key), Some(current)) if key < current => None,
                (None, Some(key), current) => {
                    if current != Some(key) {
                        self.switch_to(key, &mut out.events);
                    }
                    Some(key)
                }
                (None, None, current) => current,
            };
            if key.is_none() {
                out.discarded += 1;
                continue;
            }
            match self.convert(&message, now, &mut out.events) {
                Ok(lap) => laps_changed |= lap,
                Err(()) => {
                    out.malformed += 1;
                    self.malformed += 1;
                    if worth_logging(self.malformed) {
                        let start: String = message.payload.chars().take(120).collect();
                        tracing::warn!(
                            topic = ?message.topic,
                            malformed = self.malformed,
                            payload = %start,
                            "openf1 mqtt: skipping a payload that does not fit"
                        );
                    }
                }
            }
        }
        self.discarded += out.discarded;
        let clock = self.clock(now);
        if let Some(live) = self.live.as_mut() {
            let stamp = clock.unwrap_or_else(now_ns);
            out.events.extend(
                live.housekeeping(laps_changed)
                    .into_iter()
                    .map(|record| Event::new(stamp, record)),
            );
        }
        if let Some(clock) = clock {
            let mut tick = self
                .next_tick
                .unwrap_or(clock)
                .max(clock - 10 * self.tick_ns);
            while tick <= clock {
                out.events.push(Event::new(tick, Record::Tick));
                tick += self.tick_ns;
            }
            self.next_tick = Some(tick);
        }
        out
    }

    /// "latest" saw a newer session: end the previous one and follow the new one.
    fn switch_to(&mut self, key: u64, events: &mut Vec<Event>) {
        if let Some(old) = self.live.take() {
            let stamp = self.clock(Instant::now()).unwrap_or_else(now_ns);
            events.push(Event::new(
                stamp,
                Record::SessionEnd(SessionEnd {
                    session_key: old.key.clone(),
                }),
            ));
        }
        tracing::info!(session_key = key, "openf1 mqtt: following session");
        self.live = Some(Live::new(key, self.tick_ms));
    }

    /// One message's records; whether a lap changed. `Err` when the payload does not fit.
    fn convert(
        &mut self,
        message: &Pending,
        now: Instant,
        events: &mut Vec<Event>,
    ) -> Result<bool, ()> {
        let clock = self.clock(now).unwrap_or_else(now_ns);
        let Some(live) = self.live.as_mut() else {
            return Err(());
        };
        let key = live.key.clone();
        let text = format!("[{}]", message.payload);
        let mut skipped = Skipped::default();
        let mut newest: Option<i64> = None;
        let mut laps_changed = false;
        let before = events.len();
        match message.topic {
            Topic::Location => {
                for (car, sample) in rows::location_rows(&text, &mut skipped).map_err(drop)? {
                    events.push(Event::new(
                        sample.time_ns,
                        Record::Position(sample.to_record(&key, car)),
                    ));
                    newest = newest.max(Some(sample.time_ns));
                    live.keep_location(car, sample);
                }
            }
            Topic::CarData => {
                for (car, sample) in rows::car_rows(&text, &mut skipped).map_err(drop)? {
                    events.push(Event::new(
                        sample.time_ns,
                        Record::CarData(sample.to_record(&key, car)),
                    ));
                    newest = newest.max(Some(sample.time_ns));
                    live.keep_car_data(car, sample);
                }
            }
            Topic::Position => {
                for (time, row) in rows::race_positions(&text, &key, &mut skipped).map_err(drop)? {
                    events.push(Event::new(time, Record::RacePosition(row)));
                    newest = newest.max(Some(time));
                }
            }
            Topic::Intervals => {
                for (time, row) in rows::intervals(&text, &key, &mut skipped).map_err(drop)? {
                    events.push(Event::new(time, Record::Interval(Arc::new(row))));
                    newest = newest.max(Some(time));
                }
            }
            Topic::RaceControl => {
                for row in parse::<RaceControlMessage>(&text, &key, &mut skipped)? {
                    let time = dated(row.date.as_deref()).ok_or(())?;
                    events.push(Event::new(time, Record::RaceControl(Arc::new(row))));
                }
            }
            Topic::Weather => {
                for row in parse::<Weather>(&text, &key, &mut skipped)? {
                    let time = dated(row.date.as_deref()).ok_or(())?;
                    events.push(Event::new(time, Record::Weather(Arc::new(row))));
                }
            }
            Topic::Pit => {
                for row in parse::<Pit>(&text, &key, &mut skipped)? {
                    let time = dated(row.date.as_deref()).ok_or(())?;
                    live.keep_pit(row.clone());
                    events.push(Event::new(time, Record::Pit(Arc::new(row))));
                }
            }
            Topic::Laps => {
                for row in parse::<Lap>(&text, &key, &mut skipped)? {
                    let time = dated(row.date_start.as_deref()).unwrap_or(clock);
                    laps_changed |= live.keep_lap(row.clone());
                    events.push(Event::new(time, Record::Lap(Arc::new(row))));
                }
            }
            Topic::Sessions => {
                for row in parse::<Session>(&text, &key, &mut skipped)? {
                    let time = dated(row.date_start.as_deref()).unwrap_or(clock);
                    events.push(Event::new(time, Record::Session(Arc::new(row))));
                }
            }
            Topic::Drivers => {
                for row in parse::<Driver>(&text, &key, &mut skipped)? {
                    events.push(Event::new(clock, Record::Driver(Arc::new(row))));
                }
            }
            Topic::Stints => {
                for row in parse::<Stint>(&text, &key, &mut skipped)? {
                    events.push(Event::new(clock, Record::Stint(Arc::new(row))));
                }
            }
            Topic::SessionResult => {
                for row in parse::<SessionResultEntry>(&text, &key, &mut skipped)? {
                    events.push(Event::new(clock, Record::SessionResult(Arc::new(row))));
                }
            }
            Topic::StartingGrid => {
                for row in parse::<GridSlot>(&text, &key, &mut skipped)? {
                    events.push(Event::new(clock, Record::StartingGrid(Arc::new(row))));
                }
            }
        }
        if skipped.rows > 0 || skipped.files > 0 {
            events.truncate(before);
            return Err(());
        }
        if let Some(newest) = newest {
            live.saw_data_at(newest);
            if self.newest.is_none_or(|(known, _)| newest > known) {
                self.newest = Some((newest, now));
            }
        }
        Ok(laps_changed)
    }
}

fn dated(text: Option<&str>) -> Option<i64> {
    text.and_then(parse_iso8601_ns)
}

/// A one-row array as records `T`; a row that does not fit is an error.
fn parse<T: DeserializeOwned>(text: &str, key: &str, skipped: &mut Skipped) -> Result<Vec<T>, ()> {
    let rows = rows::records::<T>(text, key, skipped).map_err(drop)?;
    if rows.is_empty() || skipped.rows > 0 {
        return Err(());
    }
    Ok(rows)
}

/// What the connection task reports.
enum Note {
    Connected,
    Message { topic: String, payload: Vec<u8> },
    Lost(ConnectionError),
}

/// Why a connection ended.
enum Ended {
    Shutdown,
    /// The token is due: reconnect at once with a new one.
    Renew,
    /// Lost or refused: reconnect after the backoff.
    Failed {
        /// Whether the broker had accepted the connection.
        connected: bool,
    },
}

/// Run the MQTT live stream until shutdown.
pub async fn run(config: &OpenF1Config, io: &mut Io) -> Result<(), ComponentError> {
    let broker = parse_broker_url(&config.mqtt_url).map_err(ComponentError::from)?;
    let api = Api::new(config)?;
    let with_login = config.credentials().is_some();
    let client_id = format!("pitwall-flow-{:016x}", fastrand::u64(..));
    let mut stream = Stream::new(config.session_key.fixed(), config.tick_ms);
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

    if with_login {
        // Resolve "latest" and seed the documents through the REST API, once.
        let seeded = tokio::select! {
            seeded = seed(config, &api) => seeded,
            _ = io.shutdown.triggered() => return Ok(()),
        };
        match seeded {
            Ok((live, events)) => {
                stream.wanted = stream.wanted.or(live.key.parse().ok());
                stream.seeded(live);
                if !events.is_empty() {
                    tokio::select! {
                        _ = io.output.send(events) => {}
                        _ = io.shutdown.triggered() => return Ok(()),
                    }
                }
            }
            Err(error) => {
                io.metrics.add_error();
                tracing::warn!(%error, "openf1 mqtt: the REST seed failed; streaming without it");
            }
        }
    }
    tracing::info!(
        host = %broker.host,
        port = broker.port,
        tls = broker.tls,
        session_key = ?stream.session_key(),
        "openf1: streaming live over MQTT"
    );

    let mut failures = 0u64;
    let mut refusals = 0u32;
    loop {
        let ended = connection(
            config,
            &broker,
            &client_id,
            &api,
            &mut stream,
            io,
            &mut backoff,
        )
        .await;
        match ended {
            Ok(Ended::Shutdown) => return Ok(()),
            Ok(Ended::Renew) => continue,
            Ok(Ended::Failed { connected }) => {
                // Some brokers close the connection instead of answering "not authorised":
                // after a few failures without a ConnAck, get a new token too.
                refusals = if connected { 0 } else { refusals + 1 };
                if refusals >= 3 && with_login {
                    refusals = 0;
                    api.forget_token().await;
                }
            }
            Err(error) => {
                io.metrics.add_error();
                failures += 1;
                if worth_logging(failures) {
                    tracing::warn!(%error, failures, "openf1 mqtt: cannot connect; trying again");
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

/// The REST seed: the session key ("latest" resolved) and one poll's documents and data.
async fn seed(config: &OpenF1Config, api: &Api) -> Result<(Live, Vec<Event>), ComponentError> {
    let key = match config.session_key.fixed() {
        Some(key) => key,
        None => fetch::resolve_session_key(api, "latest").await?,
    };
    let mut live = Live::new(key, config.tick_ms);
    let outcome = live.poll(api, 0).await;
    if let Some(fatal) = outcome.fatal {
        return Err(fatal.into());
    }
    for error in &outcome.errors {
        tracing::warn!(%error, "openf1 mqtt: part of the REST seed failed");
    }
    Ok((live, outcome.events))
}

/// Connect, subscribe and stream until the connection ends, the token is due or shutdown.
async fn connection(
    config: &OpenF1Config,
    broker: &BrokerUrl,
    client_id: &str,
    api: &Api,
    stream: &mut Stream,
    io: &mut Io,
    backoff: &mut Backoff,
) -> Result<Ended, ComponentError> {
    let token = tokio::select! {
        token = api.access_token() => token?,
        _ = io.shutdown.triggered() => return Ok(Ended::Shutdown),
    };
    let mut options = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(false)
        // Read what the broker may send (256 MiB, Mosquitto's limit): a smaller limit makes
        // the client drop the connection on one big message. Big messages are skipped below.
        .set_max_packet_size(256 << 20, 1 << 16)
        .set_inflight(100);
    let renew_at = match &token {
        Some((token, renew_at)) => {
            let user = config
                .username
                .as_ref()
                .map(|u| u.expose().trim())
                .filter(|u| !u.is_empty())
                .unwrap_or("pitwall-flow");
            options.set_credentials(user, token.clone());
            Some(*renew_at)
        }
        None => None,
    };
    if broker.tls {
        options.set_transport(rumqttc::Transport::tls_with_config(tls_config()?));
    }
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    let qos = QoS::AtLeastOnce;
    client
        .try_subscribe_many(
            config
                .mqtt_topics
                .iter()
                .map(|topic| rumqttc::SubscribeFilter::new(topic.clone(), qos)),
        )
        .map_err(|e| format!("cannot queue the subscription: {e}"))?;

    let (notes_tx, mut notes) = mpsc::channel::<Note>(4096);
    // The event loop runs in its own task: its poll is not meant to be cancelled midway,
    // and this loop must also flush and stop on time.
    let task = tokio::spawn(async move {
        loop {
            let note = match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(Packet::ConnAck(_))) => Note::Connected,
                Ok(rumqttc::Event::Incoming(Packet::Publish(publish))) => Note::Message {
                    topic: publish.topic,
                    payload: publish.payload.to_vec(),
                },
                Ok(_) => continue,
                Err(error) => {
                    let _ = notes_tx.send(Note::Lost(error)).await;
                    return;
                }
            };
            if notes_tx.send(note).await.is_err() {
                return;
            }
        }
    });
    let _abort = AbortOnDrop(task);

    let tick = Duration::from_millis(config.tick_ms.max(1));
    let mut next_tick = Instant::now() + tick;
    let far = || Instant::now() + Duration::from_secs(3600);
    let mut unknown_topics: HashSet<String> = HashSet::new();
    let mut connected = false;
    let ended = loop {
        let release = stream.release_at().unwrap_or_else(far).min(next_tick);
        tokio::select! {
            biased;
            _ = io.shutdown.triggered() => break Ended::Shutdown,
            note = notes.recv() => match note {
                Some(Note::Connected) => {
                    connected = true;
                    backoff.reset();
                    tracing::info!(host = %broker.host, "openf1 mqtt: connected");
                }
                Some(Note::Message { topic, payload }) if payload.len() > MAX_MESSAGE_BYTES => {
                    io.metrics.add_discarded(1);
                    stream.oversized += 1;
                    if worth_logging(stream.oversized) {
                        tracing::warn!(topic, bytes = payload.len(), oversized = stream.oversized, "openf1 mqtt: skipping a message over 1 MiB (OpenF1's are far smaller)");
                    }
                }
                Some(Note::Message { topic, payload }) => {
                    match stream.receive(&topic, &payload) {
                        Received::Buffered => {}
                        Received::Duplicate => io.metrics.add_discarded(1),
                        Received::UnknownTopic => {
                            io.metrics.add_discarded(1);
                            if unknown_topics.len() < 100 && unknown_topics.insert(topic.clone()) {
                                tracing::info!(topic, "openf1 mqtt: ignoring a topic without records");
                            }
                        }
                        Received::Malformed => {
                            io.metrics.add_error();
                            stream.malformed += 1;
                            if worth_logging(stream.malformed) {
                                tracing::warn!(topic, malformed = stream.malformed, "openf1 mqtt: skipping a payload that is not a JSON object");
                            }
                        }
                    }
                }
                Some(Note::Lost(error)) => {
                    let refused = matches!(
                        error,
                        ConnectionError::ConnectionRefused(
                            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
                        )
                    );
                    if refused {
                        api.forget_token().await;
                    }
                    io.metrics.add_error();
                    tracing::warn!(%error, refused, "openf1 mqtt: connection lost; reconnecting");
                    break Ended::Failed { connected };
                }
                None => break Ended::Failed { connected },
            },
            _ = tokio::time::sleep_until(release) => {
                if Instant::now() >= next_tick {
                    next_tick = Instant::now() + tick;
                }
                if !emit(stream, io).await {
                    break Ended::Shutdown;
                }
            }
            _ = sleep_until_opt(renew_at) => {
                tracing::info!("openf1 mqtt: the access token is due; reconnecting with a new one");
                break Ended::Renew;
            }
        }
    };
    let _ = client.try_disconnect();
    if !matches!(ended, Ended::Shutdown) && !emit(stream, io).await {
        return Ok(Ended::Shutdown);
    }
    Ok(ended)
}

/// Flush the stream and send what it produced; false when shutdown came first.
async fn emit(stream: &mut Stream, io: &mut Io) -> bool {
    let flushed = stream.flush();
    for _ in 0..flushed.malformed {
        io.metrics.add_error();
    }
    if flushed.discarded > 0 {
        io.metrics.add_discarded(flushed.discarded as usize);
    }
    if flushed.events.is_empty() {
        return true;
    }
    tokio::select! {
        _ = io.output.send(flushed.events) => true,
        _ = io.shutdown.triggered() => false,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// TLS with the system's root certificates; certificates that do not load are skipped.
fn tls_config() -> Result<rumqttc::TlsConfiguration, ComponentError> {
    use rumqttc::tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!(
            "no usable root certificates on this system for mqtts ({} errors)",
            found.errors.len()
        )
        .into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(rumqttc::TlsConfiguration::Rustls(Arc::new(config)))
}
