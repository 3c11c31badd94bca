//! Typed records: what flows along the edges of a pipeline.
//!
//! Telemetry is high-rate and well understood, so events are typed rather than string maps.
//! Large or shared payloads sit behind [`Arc`] so that fanning a batch out to several
//! consumers copies pointers, not data.
//!
//! Field names follow the outside system the record comes from where one dominates (OpenF1
//! for session, driver, lap, interval, stint): serialising a list of [`Driver`]s gives the
//! document the Cardputer firmware expects, with no mapping layer in between.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One record at one moment.
///
/// `time_ns` is event time: nanoseconds since the Unix epoch for real-world sources (OpenF1,
/// MQTT gates), or since the session start for simulators that have no wall clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub time_ns: i64,
    #[serde(flatten)]
    pub record: Record,
}

impl Event {
    pub fn new(time_ns: i64, record: Record) -> Self {
        Self { time_ns, record }
    }

    pub fn kind(&self) -> RecordKind {
        self.record.kind()
    }
}

/// A session's identity as every source names it: OpenF1's numeric `session_key`, or a
/// simulator's own session id. Kept as text so both fit.
pub type SessionKey = Arc<str>;

/// Everything that can flow between components.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// Session metadata (OpenF1 `sessions` joined with `meetings`).
    Session(Arc<Session>),
    /// A driver entered in a session (OpenF1 `drivers`).
    Driver(Arc<Driver>),
    /// Where one car is, in the source's world frame (OpenF1 `location`: 1/10 m).
    Position(CarPosition),
    /// Car telemetry at OpenF1's granularity (`car_data`).
    CarData(CarData),
    /// A change of race position (OpenF1 `position`).
    RacePosition(RacePosition),
    /// A lap, completed or in progress (OpenF1 `laps`).
    Lap(Arc<Lap>),
    /// Gap to the leader and to the car ahead (OpenF1 `intervals`).
    Interval(Arc<Interval>),
    /// A tyre stint (OpenF1 `stints`).
    Stint(Arc<Stint>),
    /// A pit stop (OpenF1 `pit`).
    Pit(Arc<Pit>),
    /// A race-control message (OpenF1 `race_control`).
    RaceControl(Arc<RaceControlMessage>),
    /// Weather at the track (OpenF1 `weather`).
    Weather(Arc<Weather>),
    /// One classified result (OpenF1 `session_result`).
    SessionResult(Arc<SessionResultEntry>),
    /// A grid slot (OpenF1 `starting_grid`).
    StartingGrid(Arc<GridSlot>),
    /// A reference path through the circuit: a fast lap's or the pit lane's samples.
    /// Replay sources know these before the race starts; live sources emit them as they happen.
    ReferencePath(Arc<ReferencePath>),
    /// Min/max of world x/y seen so far (transform `bounds`).
    Bounds(Bounds),
    /// The circuit outline, pit lane and sector points (transform `track_layout`).
    TrackLayout(Arc<TrackLayout>),
    /// Winner, podium, fastest lap and the replay's reference start time.
    RaceMetadata(Arc<RaceMetadata>),
    /// All cars at one instant on a regular grid (transform `resample`).
    Frame(Arc<Frame>),
    /// A named JSON document of a session, served as-is by document sinks.
    Document(Arc<Document>),
    /// Event time has reached `time_ns` even if nothing else happened: lets time-driven
    /// transforms (resampling) make progress at the pace of a replay.
    Tick,
    /// The session's data is complete (the end of a replay).
    SessionEnd(SessionEnd),
    /// A car's place in a timing tower (Emperor / Assetto Corsa Server Manager standings).
    Standing(Arc<Standing>),
    /// A driver joining or leaving a server.
    Connection(Arc<Connection>),
    /// A car hitting another car or the environment.
    Collision(Arc<Collision>),
    /// A chat message on a server.
    Chat(Arc<Chat>),
    /// A car crossing a light gate (slot-car lap timing).
    GateTrigger(GateTrigger),
    /// An MQTT message as received: topic, fields named by the topic pattern, payload.
    MqttMessage(Arc<MqttMessage>),
    /// A command from a person: `start`, `stop`, `reset` pressed on a dashboard.
    Command(Arc<Command>),
    /// Something race control announces (a start light, a lap, the finish), as the
    /// message the dashboard protocol sends for it.
    RaceEvent(Arc<RaceEvent>),
    /// The whole state of a slot-car race: status and every lane's laps.
    RaceState(Arc<RaceState>),
    /// A network source lost or regained its peer (a broker, a server): displays say so.
    LinkStatus(Arc<LinkStatus>),
    /// One car's telemetry from a sim (Assetto Corsa, rFactor 2, a recording).
    CarTelemetry(Arc<crate::telemetry::CarTelemetry>),
    /// Anything else, as raw JSON (the generic `file` source, unknown MQTT payloads).
    Json(Arc<serde_json::Value>),
}

/// The kind of a [`Record`], without its payload: what components declare they emit and
/// accept, and what graph validation checks edges against.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum RecordKind {
    Session,
    Driver,
    Position,
    CarData,
    RacePosition,
    Lap,
    Interval,
    Stint,
    Pit,
    RaceControl,
    Weather,
    SessionResult,
    StartingGrid,
    ReferencePath,
    Bounds,
    TrackLayout,
    RaceMetadata,
    Frame,
    Document,
    Tick,
    SessionEnd,
    Standing,
    Connection,
    Collision,
    Chat,
    GateTrigger,
    MqttMessage,
    Command,
    RaceEvent,
    RaceState,
    LinkStatus,
    CarTelemetry,
    Json,
}

impl RecordKind {
    /// Every kind, in declaration order.
    pub const ALL: &'static [RecordKind] = &[
        Self::Session,
        Self::Driver,
        Self::Position,
        Self::CarData,
        Self::RacePosition,
        Self::Lap,
        Self::Interval,
        Self::Stint,
        Self::Pit,
        Self::RaceControl,
        Self::Weather,
        Self::SessionResult,
        Self::StartingGrid,
        Self::ReferencePath,
        Self::Bounds,
        Self::TrackLayout,
        Self::RaceMetadata,
        Self::Frame,
        Self::Document,
        Self::Tick,
        Self::SessionEnd,
        Self::Standing,
        Self::Connection,
        Self::Collision,
        Self::Chat,
        Self::GateTrigger,
        Self::MqttMessage,
        Self::Command,
        Self::RaceEvent,
        Self::RaceState,
        Self::LinkStatus,
        Self::CarTelemetry,
        Self::Json,
    ];

    /// The snake_case name used in pipeline files, diagnostics and serialised events.
    pub fn name(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Driver => "driver",
            Self::Position => "position",
            Self::CarData => "car_data",
            Self::RacePosition => "race_position",
            Self::Lap => "lap",
            Self::Interval => "interval",
            Self::Stint => "stint",
            Self::Pit => "pit",
            Self::RaceControl => "race_control",
            Self::Weather => "weather",
            Self::SessionResult => "session_result",
            Self::StartingGrid => "starting_grid",
            Self::ReferencePath => "reference_path",
            Self::Bounds => "bounds",
            Self::TrackLayout => "track_layout",
            Self::RaceMetadata => "race_metadata",
            Self::Frame => "frame",
            Self::Document => "document",
            Self::Tick => "tick",
            Self::SessionEnd => "session_end",
            Self::Standing => "standing",
            Self::Connection => "connection",
            Self::Collision => "collision",
            Self::Chat => "chat",
            Self::GateTrigger => "gate_trigger",
            Self::MqttMessage => "mqtt_message",
            Self::Command => "command",
            Self::RaceEvent => "race_event",
            Self::RaceState => "race_state",
            Self::LinkStatus => "link_status",
            Self::CarTelemetry => "car_telemetry",
            Self::Json => "json",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|kind| kind.name() == name)
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Record {
    pub fn kind(&self) -> RecordKind {
        match self {
            Self::Session(_) => RecordKind::Session,
            Self::Driver(_) => RecordKind::Driver,
            Self::Position(_) => RecordKind::Position,
            Self::CarData(_) => RecordKind::CarData,
            Self::RacePosition(_) => RecordKind::RacePosition,
            Self::Lap(_) => RecordKind::Lap,
            Self::Interval(_) => RecordKind::Interval,
            Self::Stint(_) => RecordKind::Stint,
            Self::Pit(_) => RecordKind::Pit,
            Self::RaceControl(_) => RecordKind::RaceControl,
            Self::Weather(_) => RecordKind::Weather,
            Self::SessionResult(_) => RecordKind::SessionResult,
            Self::StartingGrid(_) => RecordKind::StartingGrid,
            Self::ReferencePath(_) => RecordKind::ReferencePath,
            Self::Bounds(_) => RecordKind::Bounds,
            Self::TrackLayout(_) => RecordKind::TrackLayout,
            Self::RaceMetadata(_) => RecordKind::RaceMetadata,
            Self::Frame(_) => RecordKind::Frame,
            Self::Document(_) => RecordKind::Document,
            Self::Tick => RecordKind::Tick,
            Self::SessionEnd(_) => RecordKind::SessionEnd,
            Self::Standing(_) => RecordKind::Standing,
            Self::Connection(_) => RecordKind::Connection,
            Self::Collision(_) => RecordKind::Collision,
            Self::Chat(_) => RecordKind::Chat,
            Self::GateTrigger(_) => RecordKind::GateTrigger,
            Self::MqttMessage(_) => RecordKind::MqttMessage,
            Self::Command(_) => RecordKind::Command,
            Self::RaceEvent(_) => RecordKind::RaceEvent,
            Self::RaceState(_) => RecordKind::RaceState,
            Self::LinkStatus(_) => RecordKind::LinkStatus,
            Self::CarTelemetry(_) => RecordKind::CarTelemetry,
            Self::Json(_) => RecordKind::Json,
        }
    }
}

impl Record {
    /// The session a typed record belongs to (`None` for bounds, ticks, gate triggers,
    /// MQTT messages and raw JSON, which carry none of their own).
    pub fn session_key(&self) -> Option<&SessionKey> {
        Some(match self {
            Self::Session(r) => &r.session_key,
            Self::Driver(r) => &r.session_key,
            Self::Position(r) => &r.session_key,
            Self::CarData(r) => &r.session_key,
            Self::RacePosition(r) => &r.session_key,
            Self::Lap(r) => &r.session_key,
            Self::Interval(r) => &r.session_key,
            Self::Stint(r) => &r.session_key,
            Self::Pit(r) => &r.session_key,
            Self::RaceControl(r) => &r.session_key,
            Self::Weather(r) => &r.session_key,
            Self::SessionResult(r) => &r.session_key,
            Self::StartingGrid(r) => &r.session_key,
            Self::ReferencePath(r) => &r.session_key,
            Self::TrackLayout(r) => &r.session_key,
            Self::RaceMetadata(r) => &r.session_key,
            Self::Frame(r) => &r.session_key,
            Self::Document(r) => &r.session_key,
            Self::SessionEnd(r) => &r.session_key,
            Self::Standing(r) => &r.session_key,
            Self::Connection(r) => &r.session_key,
            Self::Collision(r) => &r.session_key,
            Self::Chat(r) => &r.session_key,
            Self::CarTelemetry(r) => &r.session,
            Self::Bounds(_)
            | Self::Tick
            | Self::GateTrigger(_)
            | Self::MqttMessage(_)
            | Self::Command(_)
            | Self::RaceEvent(_)
            | Self::RaceState(_)
            | Self::LinkStatus(_)
            | Self::Json(_) => return None,
        })
    }

    /// The car (driver number, car id) a typed record is about, if it is about one.
    pub fn car(&self) -> Option<u32> {
        match self {
            Self::Driver(r) => Some(r.driver_number),
            Self::Position(r) => Some(r.car),
            Self::CarData(r) => Some(r.car),
            Self::RacePosition(r) => Some(r.car),
            Self::Lap(r) => Some(r.driver_number),
            Self::Interval(r) => Some(r.driver_number),
            Self::Stint(r) => Some(r.driver_number),
            Self::Pit(r) => Some(r.driver_number),
            Self::RaceControl(r) => r.driver_number,
            Self::SessionResult(r) => Some(r.driver_number),
            Self::StartingGrid(r) => Some(r.driver_number),
            Self::Standing(r) => Some(r.car),
            Self::Connection(r) => Some(r.car),
            Self::Collision(r) => Some(r.car),
            Self::Chat(r) => r.car,
            Self::GateTrigger(r) => Some(r.lane),
            Self::CarTelemetry(r) => u32::try_from(r.car_id).ok(),
            Self::Session(_)
            | Self::Weather(_)
            | Self::ReferencePath(_)
            | Self::Bounds(_)
            | Self::TrackLayout(_)
            | Self::RaceMetadata(_)
            | Self::Frame(_)
            | Self::Document(_)
            | Self::Tick
            | Self::SessionEnd(_)
            | Self::MqttMessage(_)
            | Self::Command(_)
            | Self::RaceEvent(_)
            | Self::RaceState(_)
            | Self::LinkStatus(_)
            | Self::Json(_) => None,
        }
    }
}

/// Writes a record's own fields as JSON, without the `kind` tag that `Serialize` on
/// [`Record`] adds: what document sinks serve and JSON WebSocket sinks map from.
pub fn write_payload(out: &mut Vec<u8>, record: &Record) -> serde_json::Result<()> {
    match record {
        Record::Session(r) => serde_json::to_writer(out, r),
        Record::Driver(r) => serde_json::to_writer(out, r),
        Record::Position(r) => serde_json::to_writer(out, r),
        Record::CarData(r) => serde_json::to_writer(out, r),
        Record::RacePosition(r) => serde_json::to_writer(out, r),
        Record::Lap(r) => serde_json::to_writer(out, r),
        Record::Interval(r) => serde_json::to_writer(out, r),
        Record::Stint(r) => serde_json::to_writer(out, r),
        Record::Pit(r) => serde_json::to_writer(out, r),
        Record::RaceControl(r) => serde_json::to_writer(out, r),
        Record::Weather(r) => serde_json::to_writer(out, r),
        Record::SessionResult(r) => serde_json::to_writer(out, r),
        Record::StartingGrid(r) => serde_json::to_writer(out, r),
        Record::ReferencePath(r) => serde_json::to_writer(out, r),
        Record::Bounds(r) => serde_json::to_writer(out, r),
        Record::TrackLayout(r) => serde_json::to_writer(out, r),
        Record::RaceMetadata(r) => serde_json::to_writer(out, r),
        Record::Frame(r) => serde_json::to_writer(out, r),
        Record::Document(r) => serde_json::to_writer(out, r),
        Record::Tick => {
            out.extend_from_slice(b"{}");
            Ok(())
        }
        Record::SessionEnd(r) => serde_json::to_writer(out, r),
        Record::Standing(r) => serde_json::to_writer(out, r),
        Record::Connection(r) => serde_json::to_writer(out, r),
        Record::Collision(r) => serde_json::to_writer(out, r),
        Record::Chat(r) => serde_json::to_writer(out, r),
        Record::GateTrigger(r) => serde_json::to_writer(out, r),
        Record::MqttMessage(r) => serde_json::to_writer(out, r),
        Record::Command(r) => serde_json::to_writer(out, r),
        Record::RaceEvent(r) => serde_json::to_writer(out, r),
        Record::RaceState(r) => serde_json::to_writer(out, r),
        Record::LinkStatus(r) => serde_json::to_writer(out, r),
        Record::CarTelemetry(r) => serde_json::to_writer(out, r),
        Record::Json(r) => serde_json::to_writer(out, r),
    }
}

/// A set of record kinds, as a bit set: checking an edge is one AND.
#[derive(Copy, Clone, Default, PartialEq, Eq, Hash)]
pub struct Kinds {
    bits: u64,
    /// For transforms: "emits what it receives" (filter, decimate). Resolved by validation
    /// against the component's inputs.
    passthrough: bool,
}

impl Kinds {
    pub const NONE: Kinds = Kinds {
        bits: 0,
        passthrough: false,
    };

    /// Every kind: generic sinks (console, file) accept anything.
    pub fn any() -> Self {
        Self::of(RecordKind::ALL)
    }

    pub fn of(kinds: &[RecordKind]) -> Self {
        let mut set = Self::NONE;
        for kind in kinds {
            set.bits |= 1 << (*kind as u8);
        }
        set
    }

    /// The output of a transform that forwards what it receives.
    pub fn passthrough() -> Self {
        Self {
            bits: 0,
            passthrough: true,
        }
    }

    pub fn with(mut self, other: Kinds) -> Self {
        self.bits |= other.bits;
        self.passthrough |= other.passthrough;
        self
    }

    pub fn is_passthrough(&self) -> bool {
        self.passthrough
    }

    pub fn contains(&self, kind: RecordKind) -> bool {
        self.bits & (1 << (kind as u8)) != 0
    }

    pub fn intersects(&self, other: &Kinds) -> bool {
        self.bits & other.bits != 0
    }

    pub fn intersection(&self, other: &Kinds) -> Kinds {
        Kinds {
            bits: self.bits & other.bits,
            passthrough: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bits == 0 && !self.passthrough
    }

    pub fn is_all(&self) -> bool {
        *self == Self::any()
    }

    pub fn iter(&self) -> impl Iterator<Item = RecordKind> + '_ {
        RecordKind::ALL
            .iter()
            .copied()
            .filter(|kind| self.contains(*kind))
    }
}

impl fmt::Debug for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `position, lap, frame`, or `any kind`, or `whatever it receives`.
impl fmt::Display for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            return f.write_str("any kind");
        }
        let mut first = true;
        for kind in self.iter() {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            f.write_str(kind.name())?;
        }
        if self.passthrough {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            f.write_str("whatever it receives")?;
        }
        if first {
            f.write_str("nothing")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Payloads. Optional fields are `Option` because the outside world leaves them null.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub session_key: SessionKey,
    #[serde(default)]
    pub meeting_key: Option<i64>,
    #[serde(default)]
    pub session_name: Option<String>,
    #[serde(default)]
    pub session_type: Option<String>,
    #[serde(default)]
    pub meeting_name: Option<String>,
    #[serde(default)]
    pub circuit_key: Option<i64>,
    #[serde(default)]
    pub circuit_short_name: Option<String>,
    #[serde(default)]
    pub country_name: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub date_start: Option<String>,
    #[serde(default)]
    pub date_end: Option<String>,
    #[serde(default)]
    pub year: Option<i32>,
    /// Where this session came from, e.g. "simulated" for the bundled sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A driver, with OpenF1's field names (the Cardputer reads `driver_number`,
/// `name_acronym` and `team_colour`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Driver {
    pub session_key: SessionKey,
    pub driver_number: u32,
    #[serde(default)]
    pub broadcast_name: Option<String>,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub name_acronym: Option<String>,
    #[serde(default)]
    pub team_name: Option<String>,
    /// `RRGGBB`, no `#`.
    #[serde(default)]
    pub team_colour: Option<String>,
    #[serde(default)]
    pub headshot_url: Option<String>,
    #[serde(default)]
    pub country_code: Option<String>,
}

/// One car's position in the source's world frame. `car` is the driver or car number.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CarPosition {
    pub session_key: SessionKey,
    pub car: u32,
    pub x: f64,
    pub y: f64,
    #[serde(default)]
    pub z: f64,
    /// Progress around the lap, 0.0 at the start/finish line to 1.0 (simulators report it;
    /// OpenF1 does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spline: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CarData {
    pub session_key: SessionKey,
    pub car: u32,
    #[serde(default)]
    pub speed_kmh: Option<f64>,
    #[serde(default)]
    pub rpm: Option<f64>,
    #[serde(default)]
    pub gear: Option<i32>,
    #[serde(default)]
    pub throttle_pct: Option<f64>,
    #[serde(default)]
    pub brake_pct: Option<f64>,
    #[serde(default)]
    pub drs: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RacePosition {
    pub session_key: SessionKey,
    pub car: u32,
    pub position: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Lap {
    pub session_key: SessionKey,
    pub driver_number: u32,
    pub lap_number: u32,
    /// ISO 8601; OpenF1 sometimes leaves it null.
    #[serde(default)]
    pub date_start: Option<String>,
    /// Seconds; null for lap 1 and for laps that were not timed.
    #[serde(default)]
    pub lap_duration: Option<f64>,
    #[serde(default)]
    pub duration_sector_1: Option<f64>,
    #[serde(default)]
    pub duration_sector_2: Option<f64>,
    #[serde(default)]
    pub duration_sector_3: Option<f64>,
    #[serde(default)]
    pub i1_speed: Option<f64>,
    #[serde(default)]
    pub i2_speed: Option<f64>,
    #[serde(default)]
    pub st_speed: Option<f64>,
    #[serde(default)]
    pub is_pit_out_lap: Option<bool>,
}

/// A gap as OpenF1 reports it: seconds, or text such as `"+1 LAP"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Gap {
    Seconds(f64),
    Text(String),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub session_key: SessionKey,
    pub driver_number: u32,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub gap_to_leader: Option<Gap>,
    #[serde(default)]
    pub interval: Option<Gap>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stint {
    pub session_key: SessionKey,
    pub driver_number: u32,
    pub stint_number: u32,
    #[serde(default)]
    pub compound: Option<String>,
    #[serde(default)]
    pub lap_start: Option<u32>,
    #[serde(default)]
    pub lap_end: Option<u32>,
    #[serde(default)]
    pub tyre_age_at_start: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pit {
    pub session_key: SessionKey,
    pub driver_number: u32,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub lap_number: Option<u32>,
    #[serde(default)]
    pub lane_duration: Option<f64>,
    #[serde(default)]
    pub stop_duration: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RaceControlMessage {
    pub session_key: SessionKey,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub flag: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub sector: Option<u32>,
    #[serde(default)]
    pub driver_number: Option<u32>,
    #[serde(default)]
    pub lap_number: Option<u32>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Weather {
    pub session_key: SessionKey,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub air_temperature: Option<f64>,
    #[serde(default)]
    pub track_temperature: Option<f64>,
    #[serde(default)]
    pub humidity: Option<f64>,
    #[serde(default)]
    pub pressure: Option<f64>,
    #[serde(default)]
    pub rainfall: Option<f64>,
    #[serde(default)]
    pub wind_direction: Option<f64>,
    #[serde(default)]
    pub wind_speed: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionResultEntry {
    pub session_key: SessionKey,
    pub driver_number: u32,
    /// Null for a driver who did not finish.
    #[serde(default)]
    pub position: Option<u32>,
    #[serde(default)]
    pub number_of_laps: Option<u32>,
    /// Seconds for a race; qualifying gives an array of three, kept as raw JSON.
    #[serde(default)]
    pub duration: Option<serde_json::Value>,
    #[serde(default)]
    pub gap_to_leader: Option<serde_json::Value>,
    #[serde(default)]
    pub dnf: Option<bool>,
    #[serde(default)]
    pub dns: Option<bool>,
    #[serde(default)]
    pub dsq: Option<bool>,
    #[serde(default)]
    pub points: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GridSlot {
    pub session_key: SessionKey,
    pub driver_number: u32,
    pub position: u32,
    #[serde(default)]
    pub lap_duration: Option<f64>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// A fast, clean lap: the circuit outline.
    Lap,
    /// A pass through the pit lane.
    PitLane,
}

/// A timed path of one car: the raw material for a track outline and its sector points.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferencePath {
    pub session_key: SessionKey,
    pub path: PathKind,
    pub car: u32,
    #[serde(default)]
    pub lap_number: Option<u32>,
    /// Samples as (time_ns, x, y), sorted by time.
    pub samples: Vec<(i64, f64, f64)>,
    /// For a lap: sector durations in seconds, to place the sector points.
    #[serde(default)]
    pub sector_durations: Vec<f64>,
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    pub min_x: f64,
    pub max_x: f64,
    pub min_y: f64,
    pub max_y: f64,
}

impl Bounds {
    /// Bounds of a set of points; `None` when there are none.
    pub fn of_points(points: impl IntoIterator<Item = (f64, f64)>) -> Option<Bounds> {
        let mut iter = points.into_iter();
        let (x, y) = iter.next()?;
        let mut bounds = Bounds {
            min_x: x,
            max_x: x,
            min_y: y,
            max_y: y,
        };
        for (x, y) in iter {
            bounds.include(x, y);
        }
        Some(bounds)
    }

    pub fn include(&mut self, x: f64, y: f64) {
        self.min_x = self.min_x.min(x);
        self.max_x = self.max_x.max(x);
        self.min_y = self.min_y.min(y);
        self.max_y = self.max_y.max(y);
    }
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SectorPoint {
    /// `Start/Finish`, `Sector 1 End`, `Sector 2 End`.
    pub id: String,
    pub x: f64,
    pub y: f64,
}

/// The Cardputer's `track_layout` document, in its exact shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrackLayout {
    #[serde(skip_serializing)]
    #[serde(default)]
    pub session_key: SessionKey,
    pub track_path: Vec<Point>,
    pub pit_path: Vec<Point>,
    pub sector_points: Vec<SectorPoint>,
    pub bounds: Bounds,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FastestLap {
    pub driver_number: u32,
    pub lap_number: u32,
    pub lap_time: f64,
    pub sector_1: Option<f64>,
    pub sector_2: Option<f64>,
    pub sector_3: Option<f64>,
}

/// The Cardputer's `race_metadata` document, in its exact shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RaceMetadata {
    pub session_key: SessionKey,
    /// ISO 8601: the pole sitter's lap-1 start minus 20 s. Frame clocks count from here.
    pub reference_start_time: String,
    /// The same instant in ns since the epoch, for transforms.
    #[serde(skip_serializing)]
    #[serde(default)]
    pub reference_start_ns: i64,
    pub race_winner: Option<u32>,
    pub podium_drivers: Vec<u32>,
    pub fastest_lap: Option<FastestLap>,
}

/// One car in a [`Frame`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FrameCar {
    pub car: u32,
    pub x: f64,
    pub y: f64,
    /// Race position, 0 when unknown.
    pub position: u32,
}

/// All cars of a session at one instant of a regular time grid.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    pub session_key: SessionKey,
    /// Milliseconds since the session's reference start.
    pub t_ms: i64,
    pub cars: Vec<FrameCar>,
}

/// A named JSON document of a session (`drivers`, `laps`, `session_info`, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub session_key: SessionKey,
    pub name: String,
    pub body: serde_json::Value,
}

/// A car's place in a timing tower. Lap times in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Standing {
    pub session_key: SessionKey,
    pub car: u32,
    /// 1-based.
    pub position: u32,
    #[serde(default)]
    pub driver_name: Option<String>,
    #[serde(default)]
    pub driver_guid: Option<String>,
    #[serde(default)]
    pub car_model: Option<String>,
    /// The server's own gap text (`+1.234`, `1 lap`).
    #[serde(default)]
    pub gap: Option<String>,
    #[serde(default)]
    pub laps: u32,
    #[serde(default)]
    pub best_lap_s: Option<f64>,
    #[serde(default)]
    pub last_lap_s: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub session_key: SessionKey,
    pub car: u32,
    /// True when the driver joined, false when they left.
    pub connected: bool,
    #[serde(default)]
    pub driver_name: Option<String>,
    #[serde(default)]
    pub driver_guid: Option<String>,
    #[serde(default)]
    pub car_model: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Collision {
    pub session_key: SessionKey,
    pub car: u32,
    /// The other car; `None` for a hit on the environment.
    #[serde(default)]
    pub other_car: Option<u32>,
    #[serde(default)]
    pub impact_speed_kmh: f64,
    #[serde(default)]
    pub x: f64,
    #[serde(default)]
    pub y: f64,
    #[serde(default)]
    pub z: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Chat {
    pub session_key: SessionKey,
    #[serde(default)]
    pub car: Option<u32>,
    #[serde(default)]
    pub driver_name: Option<String>,
    pub message: String,
}

/// A car crossing a light gate. `Event::time_ns` is when it was received; `gate_time_ns`
/// is the gate's own timestamp when its payload carries one (more precise).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GateTrigger {
    pub lane: u32,
    #[serde(default)]
    pub gate_time_ns: Option<i64>,
}

/// An MQTT message as received.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MqttMessage {
    pub topic: String,
    /// Values captured by `{name}` segments of the subscribed topic pattern.
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, String>,
    /// The payload: JSON when it parsed as JSON, else a string (text), else base64-free
    /// raw bytes are not kept (see the `mqtt` source's `payload` option).
    pub payload: serde_json::Value,
}

/// A network source's link to its peer went down or came back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// The peer, e.g. `mqtt://127.0.0.1:1883`.
    pub peer: String,
    pub connected: bool,
    /// What a person should read: "MQTT broker mqtt://... unreachable; reconnecting".
    pub message: String,
}

/// A command from a person.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// `start`, `stop`, `reset`, ...
    pub name: String,
}

/// A race-control announcement, carried as the exact JSON object the dashboard protocol
/// sends for it (`{"type":"light","light_id":1,"state":"on"}`, `{"type":"lap_finish",...}`;
/// FORMATS.md section 7), so a dashboard forwards it without knowing every message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RaceEvent {
    pub message: serde_json::Value,
}

/// One lane of a slot-car race.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LaneState {
    pub lane: u32,
    /// Counted lap times in seconds, in order.
    pub laps: Vec<f64>,
    /// When the lane's current lap began (lights out, or its last counted crossing as the
    /// server saw it), ns since the epoch on the server's clock; `None` when not racing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lap_started_ns: Option<i64>,
}

/// The whole state of a slot-car race, for a dashboard that connects mid-race.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RaceState {
    /// `idle`, `lights`, `running` or `finished`.
    pub status: String,
    pub lanes: Vec<LaneState>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionEnd {
    pub session_key: SessionKey,
}

/// Parse OpenF1's ISO 8601 UTC timestamps (`2024-05-26T13:03:35.123000+00:00`, also with
/// `Z` or no zone) into ns since the epoch. Hand-written because it is on the hot path of
/// every replay and only this one shape occurs.
pub fn parse_iso8601_ns(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 19 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let mut value = 0i64;
        for &b in bytes.get(range)? {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + i64::from(b - b'0');
        }
        Some(value)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let mut rest = &bytes[19..];
    let mut nanos = 0i64;
    if rest.first() == Some(&b'.') {
        rest = &rest[1..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        for (i, &b) in rest[..digits].iter().enumerate().take(9) {
            nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
        }
        rest = &rest[digits..];
    }
    let offset_s = match rest {
        [] | [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()) =>
        {
            let digit = |b: &u8| i64::from(b - b'0');
            let minutes = (digit(h1) * 10 + digit(h2)) * 60 + digit(m1) * 10 + digit(m2);
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    // Nanoseconds in an i64 reach from 1677 to 2262: later dates are not times we can hold.
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Format ns since the epoch the way OpenF1 does: `2024-05-26T13:03:35.123000+00:00`.
pub fn format_iso8601_ns(time_ns: i64) -> String {
    let seconds = time_ns.div_euclid(1_000_000_000);
    let micros = time_ns.rem_euclid(1_000_000_000) / 1000;
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}+00:00",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

// Howard Hinnant's days-from-civil algorithm (public domain arithmetic).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_round_trips_openf1_timestamps() {
        let text = "2024-05-26T13:03:35.123000+00:00";
        let ns = parse_iso8601_ns(text).unwrap();
        assert_eq!(ns, 1_716_728_615_123_000_000);
        assert_eq!(format_iso8601_ns(ns), text);
        assert_eq!(
            parse_iso8601_ns("2024-05-26T13:03:35Z"),
            Some(1_716_728_615_000_000_000)
        );
        assert_eq!(
            parse_iso8601_ns("2024-05-26T15:03:35+02:00"),
            Some(1_716_728_615_000_000_000)
        );
        assert_eq!(parse_iso8601_ns("yesterday"), None);
        assert_eq!(parse_iso8601_ns("2024-13-26T13:03:35"), None);
        // Found by fuzzing: beyond 2262 the nanoseconds overflow an i64.
        assert_eq!(parse_iso8601_ns("9998-10-15:05:55:55"), None);
        assert_eq!(parse_iso8601_ns("2262-04-12T00:00:00Z"), None);
        assert!(parse_iso8601_ns("2262-04-11T00:00:00Z").is_some());
        assert_eq!(parse_iso8601_ns("2024-05-26T15:03:35+0x:00"), None);
    }

    #[test]
    fn kinds_display_and_match() {
        let emits = Kinds::of(&[RecordKind::Position, RecordKind::Driver]);
        let accepts = Kinds::of(&[RecordKind::Frame]);
        assert!(!emits.intersects(&accepts));
        assert_eq!(emits.to_string(), "driver, position");
        assert_eq!(Kinds::any().to_string(), "any kind");
        assert_eq!(Kinds::passthrough().to_string(), "whatever it receives");
    }

    #[test]
    fn events_serialise_with_their_kind() {
        let event = Event::new(
            5,
            Record::RacePosition(RacePosition {
                session_key: "9158".into(),
                car: 44,
                position: 1,
            }),
        );
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(
            text,
            r#"{"time_ns":5,"kind":"race_position","session_key":"9158","car":44,"position":1}"#
        );
        let back: Event = serde_json::from_str(&text).unwrap();
        assert_eq!(back, event);
    }
}
