//! The server's race-control state, kept the way its own web UI keeps it, and the records
//! each message turns into. Pure: text in, records out, no I/O and no clock (the caller
//! passes the receive time), so it is tested and benchmarked without a network.
//!
//! # Messages
//!
//! | EventType | What happens |
//! |---|---|
//! | 200 snapshot | replaces the state. Emits the [`Session`] when the session's identity or details changed (and a `SessionEnd` for the previous session when the identity changed), [`Connection`]s for drivers that joined or left since the state it replaces (the first snapshot introduces everyone connected), [`Lap`]s for laps completed since the last snapshot, and a [`Standing`] for every connected driver whose standing changed |
//! | 53 car update | a [`Position`](Record::Position) of the car (`car` = `CarID`) |
//! | 51 / 52 connection | a [`Connection`]; updates `CarIDToGUID` and the connected set, so the next snapshot does not repeat it |
//! | 10 / 11 collision | a [`Collision`] (`other_car` only for 10) |
//! | 57 chat | a [`Chat`], once: the server replays stored chat on every connect, so a message already seen (same time, GUID and text) is not emitted again |
//! | 55 end session | a `SessionEnd` of the current session |
//! | 50 new session | nothing: the snapshot the server sends next carries the new identity |
//! | 56 version, 58 client loaded | bare numbers, kept as hints, nothing emitted |
//! | other | skipped, or passed on as a raw [`Json`](Record::Json) record with `emit_unknown` |
//!
//! An empty frame (what the server sends first when it has broadcast nothing yet) is
//! skipped. A frame that is not JSON, or whose payload does not fit its event type, is
//! reported as [`Outcome::Malformed`] and changes nothing.
//!
//! # Session key
//!
//! Records carry `{server}.{session}.{start}`: the slugs (lowercase letters, digits and `-`) of
//! `SessionInfo.ServerName` (or, when empty, of the URL's host) and `SessionInfo.Name`, and the
//! snapshot's `SessionStartTime` in UTC as `yyyymmddThhmmssZ`, e.g.
//! `york-fs-gt3.race.20240526T130335Z`. It is stable across reconnects (the server keeps its
//! start time), different for two sessions of the same name, and safe in a URL path (the
//! Cardputer asks for `/ws/{session_key}`). Without a start time it is `{server}.{session}`.
//! The `session_key` option replaces it with a fixed text; the derived identity is still
//! used to notice session changes.
//!
//! # Laps
//!
//! The protocol has no "lap completed" message the UI relies on; a completed lap shows as
//! the driver's `TotalNumLaps` (or the sum of `NumLaps` over cars) growing between
//! snapshots. The number of laps already emitted is remembered per driver GUID for the
//! current session and survives reconnects, so the snapshot after a reconnect emits exactly
//! the laps completed while disconnected, never a lap twice. The first time a driver is seen
//! in a session only the count is noted (laps driven before we watched are not replayed).
//! When several laps completed between two snapshots, all are emitted but only the last has a
//! duration (`LastLap`); the others have `lap_duration = None`. No sector times exist in this
//! protocol. A count that goes down (a server restart with the same session) becomes the new
//! base without emitting.
//!
//! # Coordinates
//!
//! The game's world frame is metres with Y up. `world` (default) emits `x = X`, `y = Z`,
//! `z = Y`, so x/y is the ground plane like every other source. `map` emits the track-map
//! image's pixels instead: `x = (X + offset_x) / scale_factor`, `y = (Z + offset_y) /
//! scale_factor` with the snapshot's `TrackMapData` (z stays `Y` in metres); positions that
//! arrive before any `TrackMapData` are skipped. Collisions use the same frame.
//!
//! Event times are the receive time passed in (ns since the Unix epoch); `Lap::date_start` is
//! the server's own clock (`LastLapCompletedTime` minus the lap).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use pitwall_api::record::{
    format_iso8601_ns, parse_iso8601_ns, CarPosition, Chat, Collision, Connection, Lap, Session,
    SessionEnd, SessionKey, Standing,
};
use pitwall_api::{Event, Record};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::protocol::{
    event, CarUpdate, ChatEvent, CollisionEvent, ConnectionEvent, Envelope, Int, SessionInfo,
    Snapshot, SnapshotDriver, TrackMapData, Vec3,
};

/// Which frame positions and collisions are emitted in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Coordinates {
    /// World metres: x = X, y = Z, z = Y.
    #[default]
    World,
    /// Track-map pixels via the snapshot's `TrackMapData`.
    Map,
}

/// What the state machine needs from the component's options.
#[derive(Debug, Clone, Default)]
pub struct StateOptions {
    pub coordinates: Coordinates,
    /// A fixed session key instead of the derived one.
    pub session_key: Option<String>,
    /// Pass unknown event types on as raw JSON records.
    pub emit_unknown: bool,
    /// Used for the session key when the server has no name (the URL's host).
    pub fallback_server_name: String,
}

/// What one frame did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Understood and applied (it may have emitted nothing).
    Applied,
    /// The empty frame a fresh server sends first.
    Empty,
    /// An event type this state does not know.
    Unknown(i64),
    /// Not JSON, or a payload that does not fit its event type.
    Malformed(String),
}

/// A driver as the connected set remembers them.
#[derive(Debug, Clone, PartialEq)]
struct DriverInfo {
    car: u32,
    name: Option<String>,
    guid: String,
    car_model: Option<String>,
}

struct CurrentSession {
    identity: String,
    key: SessionKey,
    record: Arc<Session>,
    ended: bool,
}

/// How many chat messages are remembered to recognise the replay after a reconnect.
const CHAT_MEMORY: usize = 1024;

/// The race-control state of one server.
pub struct RaceControl {
    options: StateOptions,
    session: Option<CurrentSession>,
    track_map: Option<TrackMapData>,
    car_to_guid: HashMap<u32, String>,
    connected: HashMap<String, DriverInfo>,
    /// Last emitted standing per GUID (emit only on change).
    standings: HashMap<String, Arc<Standing>>,
    /// Laps emitted per GUID in `laps_identity`'s session; survives reconnects.
    laps_emitted: HashMap<String, u32>,
    laps_identity: Option<String>,
    chat_seen: HashSet<u64>,
    chat_order: VecDeque<u64>,
    /// The server's protocol version (56), when it sent one.
    pub version: Option<i64>,
    /// A session announced by 50 whose snapshot has not arrived yet.
    pub announced_session: Option<SessionInfo>,
}

impl RaceControl {
    pub fn new(options: StateOptions) -> Self {
        Self {
            options,
            session: None,
            track_map: None,
            car_to_guid: HashMap::new(),
            connected: HashMap::new(),
            standings: HashMap::new(),
            laps_emitted: HashMap::new(),
            laps_identity: None,
            chat_seen: HashSet::new(),
            chat_order: VecDeque::new(),
            version: None,
            announced_session: None,
        }
    }

    /// The current session's key, once a snapshot named it.
    pub fn session_key(&self) -> Option<&SessionKey> {
        self.session.as_ref().map(|s| &s.key)
    }

    /// GUIDs of the drivers connected now.
    pub fn connected_guids(&self) -> Vec<String> {
        let mut guids: Vec<String> = self.connected.keys().cloned().collect();
        guids.sort();
        guids
    }

    /// Apply one text frame received at `now_ns`; records go to `out`.
    pub fn apply(&mut self, text: &str, now_ns: i64, out: &mut Vec<Event>) -> Outcome {
        if text.trim().is_empty() {
            return Outcome::Empty;
        }
        let envelope = match Envelope::parse(text) {
            Ok(envelope) => envelope,
            Err(error) => return Outcome::Malformed(format!("not an event envelope: {error}")),
        };
        let kind = envelope.event_type.0;
        let result = match kind {
            event::CAR_UPDATE => envelope
                .payload::<CarUpdate>()
                .map(|u| self.car_update(&u, now_ns, out)),
            event::SNAPSHOT => envelope
                .payload::<Snapshot>()
                .map(|s| self.snapshot(s, now_ns, out)),
            event::NEW_CONNECTION | event::CONNECTION_CLOSED => envelope
                .payload::<ConnectionEvent>()
                .map(|c| self.connection(c, kind == event::NEW_CONNECTION, now_ns, out)),
            event::COLLISION_WITH_CAR | event::COLLISION_WITH_ENV => envelope
                .payload::<CollisionEvent>()
                .map(|c| self.collision(&c, kind == event::COLLISION_WITH_CAR, now_ns, out)),
            event::CHAT => envelope
                .payload::<ChatEvent>()
                .map(|c| self.chat(c, now_ns, out)),
            event::END_SESSION => {
                self.end_session(now_ns, out);
                Ok(())
            }
            event::NEW_SESSION => {
                // The payload is only a hint; a malformed one does not matter.
                self.announced_session = envelope.payload::<SessionInfo>().ok();
                Ok(())
            }
            event::VERSION => envelope.payload::<Int>().map(|v| self.version = Some(v.0)),
            event::CLIENT_LOADED => envelope.payload::<Int>().map(|_| ()),
            other => {
                if self.options.emit_unknown {
                    let message = envelope
                        .message
                        .and_then(|raw| serde_json::from_str(raw.get()).ok())
                        .unwrap_or(serde_json::Value::Null);
                    out.push(Event::new(
                        now_ns,
                        Record::Json(Arc::new(serde_json::json!({
                            "source": "emperor",
                            "session_key": self.session_key().map(|k| k.to_string()),
                            "event_type": other,
                            "message": message,
                        }))),
                    ));
                }
                return Outcome::Unknown(other);
            }
        };
        match result {
            Ok(()) => Outcome::Applied,
            Err(error) => Outcome::Malformed(format!("event type {kind}: {error}")),
        }
    }

    fn key(&self) -> Option<SessionKey> {
        self.session.as_ref().map(|s| s.key.clone())
    }

    /// World (x, y, z) of a game point in the configured frame; `None` when the map frame is
    /// asked for and not known yet.
    fn place(&self, p: &Vec3) -> Option<(f64, f64, f64)> {
        let (x, y, z) = (p.x.0, p.z.0, p.y.0);
        match self.options.coordinates {
            Coordinates::World => Some((x, y, z)),
            Coordinates::Map => {
                let map = self.track_map?;
                let scale = map.scale_factor.0;
                Some((
                    (x + map.offset_x.0) / scale,
                    (y + map.offset_y.0) / scale,
                    z,
                ))
            }
        }
    }

    fn car_update(&mut self, update: &CarUpdate, now_ns: i64, out: &mut Vec<Event>) {
        let Some(session_key) = self.key() else {
            return;
        };
        let Some((x, y, z)) = self.place(&update.pos) else {
            return;
        };
        let spline = update.normalised_spline_pos.0;
        out.push(Event::new(
            now_ns,
            Record::Position(CarPosition {
                session_key,
                car: update.car_id.u32(),
                x,
                y,
                z,
                spline: spline.is_finite().then_some(spline),
            }),
        ));
    }

    fn collision(&mut self, c: &CollisionEvent, with_car: bool, now_ns: i64, out: &mut Vec<Event>) {
        let Some(session_key) = self.key() else {
            return;
        };
        let (x, y, z) = self.place(&c.world_pos).unwrap_or_default();
        out.push(Event::new(
            now_ns,
            Record::Collision(Arc::new(Collision {
                session_key,
                car: c.car_id.u32(),
                other_car: with_car.then(|| c.other_car_id.u32()),
                impact_speed_kmh: c.impact_speed.0,
                x,
                y,
                z,
            })),
        ));
    }

    fn connection(&mut self, c: ConnectionEvent, joined: bool, now_ns: i64, out: &mut Vec<Event>) {
        let car = c.car_id.u32();
        let guid = c.driver_guid.0.clone();
        let info = DriverInfo {
            car,
            name: c.driver_name.non_empty(),
            guid: guid.clone(),
            car_model: c.car_model.non_empty(),
        };
        let emit = if joined {
            if !guid.is_empty() {
                self.car_to_guid.insert(car, guid.clone());
            }
            self.connected.insert(guid, info.clone()).is_none()
        } else {
            if self.car_to_guid.get(&car) == Some(&guid) {
                self.car_to_guid.remove(&car);
            }
            self.connected.remove(&guid);
            self.standings.remove(&guid);
            true
        };
        if emit {
            if let Some(session_key) = self.key() {
                out.push(connection_event(session_key, &info, joined, now_ns));
            }
        }
    }

    fn chat(&mut self, c: ChatEvent, now_ns: i64, out: &mut Vec<Event>) {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (c.time.as_str(), c.driver_guid.as_str(), c.message.as_str()).hash(&mut hasher);
        let fingerprint = hasher.finish();
        if !self.chat_seen.insert(fingerprint) {
            return;
        }
        self.chat_order.push_back(fingerprint);
        if self.chat_order.len() > CHAT_MEMORY {
            if let Some(old) = self.chat_order.pop_front() {
                self.chat_seen.remove(&old);
            }
        }
        let Some(session_key) = self.key() else {
            return;
        };
        out.push(Event::new(
            now_ns,
            Record::Chat(Arc::new(Chat {
                session_key,
                car: c.car_id.map(Int::u32),
                driver_name: c.driver_name.non_empty(),
                message: c.message.0,
            })),
        ));
    }

    fn end_session(&mut self, now_ns: i64, out: &mut Vec<Event>) {
        if let Some(session) = &mut self.session {
            if !session.ended {
                session.ended = true;
                out.push(Event::new(
                    now_ns,
                    Record::SessionEnd(SessionEnd {
                        session_key: session.key.clone(),
                    }),
                ));
            }
        }
    }

    fn snapshot(&mut self, snapshot: Snapshot, now_ns: i64, out: &mut Vec<Event>) {
        let info = &snapshot.session_info;
        let start_ns = parse_iso8601_ns(snapshot.session_start_time.as_str()).filter(|ns| *ns > 0);
        let server = if info.server_name.as_str().trim().is_empty() {
            slug(&self.options.fallback_server_name)
        } else {
            slug(info.server_name.as_str())
        };
        let mut identity = format!("{server}.{}", slug(info.name.as_str()));
        if let Some(ns) = start_ns {
            identity.push('.');
            identity.push_str(&compact_utc(ns));
        }
        let key: SessionKey = match &self.options.session_key {
            Some(fixed) => fixed.as_str().into(),
            None => identity.as_str().into(),
        };
        let record = Arc::new(session_record(&snapshot, key.clone(), start_ns));

        // Session identity and details.
        let same_identity = self.session.as_ref().map(|s| s.identity == identity);
        match same_identity {
            Some(true) => {
                let session = self.session.as_mut().expect("checked above");
                if session.record != record {
                    session.record = record.clone();
                    out.push(Event::new(now_ns, Record::Session(record)));
                }
            }
            _ => {
                if same_identity == Some(false) {
                    self.end_session(now_ns, out);
                    self.standings.clear();
                }
                self.session = Some(CurrentSession {
                    identity: identity.clone(),
                    key: key.clone(),
                    record: record.clone(),
                    ended: false,
                });
                out.push(Event::new(now_ns, Record::Session(record)));
            }
        }
        self.announced_session = None;
        if self.laps_identity.as_deref() != Some(identity.as_str()) {
            self.laps_emitted.clear();
            self.laps_identity = Some(identity);
        }

        self.track_map = snapshot
            .track_map_data
            .filter(|m| m.scale_factor.0.is_finite() && m.scale_factor.0 != 0.0);
        self.car_to_guid = snapshot
            .car_id_to_guid
            .iter()
            .filter_map(|(car, guid)| {
                let car = car.as_str().trim().parse::<u32>().ok()?;
                guid.non_empty().map(|guid| (car, guid))
            })
            .collect();

        // Who joined or left since the state this snapshot replaces.
        let drivers = &snapshot.connected_drivers.drivers;
        let mut now_connected: HashMap<String, DriverInfo> = HashMap::with_capacity(drivers.len());
        for (guid_key, driver) in drivers {
            let guid = driver
                .car_info
                .driver_guid
                .non_empty()
                .unwrap_or_else(|| guid_key.clone());
            now_connected.insert(guid.clone(), driver_info(driver, guid));
        }
        let mut left: Vec<&DriverInfo> = self
            .connected
            .iter()
            .filter(|(guid, _)| !now_connected.contains_key(*guid))
            .map(|(_, info)| info)
            .collect();
        left.sort_by(|a, b| (a.car, &a.guid).cmp(&(b.car, &b.guid)));
        for info in left {
            out.push(connection_event(key.clone(), info, false, now_ns));
        }
        let mut joined: Vec<&DriverInfo> = now_connected
            .iter()
            .filter(|(guid, _)| !self.connected.contains_key(*guid))
            .map(|(_, info)| info)
            .collect();
        joined.sort_by(|a, b| (a.car, &a.guid).cmp(&(b.car, &b.guid)));
        for info in joined {
            out.push(connection_event(key.clone(), info, true, now_ns));
        }

        // Drivers of both maps in timing order: connected by position, then disconnected.
        let order = ordered_drivers(&snapshot);

        // Laps completed since the last snapshot.
        for (guid, driver) in &order {
            let count = driver.laps();
            let car = driver.car_info.car_id.u32();
            match self.laps_emitted.get(guid.as_str()).copied() {
                None => {
                    self.laps_emitted.insert(guid.clone(), count);
                }
                Some(done) if count > done => {
                    let stats = driver.current_car();
                    let last_ns = stats.map_or(0, |s| s.last_lap.0);
                    for lap_number in done + 1..=count {
                        let mut lap = Lap {
                            session_key: key.clone(),
                            driver_number: car,
                            lap_number,
                            ..Default::default()
                        };
                        if lap_number == count && last_ns > 0 {
                            lap.lap_duration = Some(ns_to_s(last_ns));
                            lap.date_start = stats
                                .and_then(|s| parse_iso8601_ns(s.last_lap_completed_time.as_str()))
                                .filter(|ns| *ns > 0)
                                .map(|end| format_iso8601_ns(end - last_ns));
                        }
                        out.push(Event::new(now_ns, Record::Lap(Arc::new(lap))));
                    }
                    self.laps_emitted.insert(guid.clone(), count);
                }
                Some(done) if count < done => {
                    self.laps_emitted.insert(guid.clone(), count);
                }
                Some(_) => {}
            }
        }

        // Standings of the connected drivers, emitted when they change.
        self.standings
            .retain(|guid, _| now_connected.contains_key(guid));
        for (index, (guid, driver)) in order.iter().enumerate() {
            if !now_connected.contains_key(guid.as_str()) {
                continue;
            }
            let stats = driver.current_car();
            let position = match driver.position.u32() {
                0 => index as u32 + 1,
                p => p,
            };
            let standing = Arc::new(Standing {
                session_key: key.clone(),
                car: driver.car_info.car_id.u32(),
                position,
                driver_name: driver.car_info.driver_name.non_empty(),
                driver_guid: Some(guid.clone()),
                car_model: driver.car_info.car_model.non_empty(),
                gap: driver.split.non_empty(),
                laps: driver.laps(),
                best_lap_s: stats
                    .map(|s| s.best_lap.0)
                    .filter(|ns| *ns > 0)
                    .map(ns_to_s),
                last_lap_s: stats
                    .map(|s| s.last_lap.0)
                    .filter(|ns| *ns > 0)
                    .map(ns_to_s),
            });
            if self.standings.get(guid.as_str()) != Some(&standing) {
                self.standings.insert(guid.clone(), standing.clone());
                out.push(Event::new(now_ns, Record::Standing(standing)));
            }
        }
        self.connected = now_connected;
    }
}

fn ns_to_s(ns: i64) -> f64 {
    ns as f64 / 1e9
}

fn driver_info(driver: &SnapshotDriver, guid: String) -> DriverInfo {
    DriverInfo {
        car: driver.car_info.car_id.u32(),
        name: driver.car_info.driver_name.non_empty(),
        guid,
        car_model: driver.car_info.car_model.non_empty(),
    }
}

fn connection_event(
    session_key: SessionKey,
    info: &DriverInfo,
    connected: bool,
    now_ns: i64,
) -> Event {
    Event::new(
        now_ns,
        Record::Connection(Arc::new(Connection {
            session_key,
            car: info.car,
            connected,
            driver_name: info.name.clone(),
            driver_guid: (!info.guid.is_empty()).then(|| info.guid.clone()),
            car_model: info.car_model.clone(),
        })),
    )
}

/// Every driver of the snapshot (connected, then disconnected), each once, connected ones in
/// `GUIDsInPositionalOrder` order, the rest by position and car id.
fn ordered_drivers(snapshot: &Snapshot) -> Vec<(String, &SnapshotDriver)> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for map in [&snapshot.connected_drivers, &snapshot.disconnected_drivers] {
        for guid in &map.guids_in_positional_order {
            if let Some(driver) = map.drivers.get(guid.as_str()) {
                if seen.insert(guid.as_str()) {
                    order.push((guid.0.clone(), driver));
                }
            }
        }
        let mut rest: Vec<(&String, &SnapshotDriver)> = map
            .drivers
            .iter()
            .filter(|(guid, _)| !seen.contains(guid.as_str()))
            .collect();
        rest.sort_by_key(|(guid, d)| {
            let p = d.position.u32();
            (p == 0, p, d.car_info.car_id.u32(), guid.as_str())
        });
        for (guid, driver) in rest {
            seen.insert(guid.as_str());
            order.push((guid.clone(), driver));
        }
    }
    // Keys of the driver maps are GUIDs; prefer the GUID the car info carries when present.
    order
        .into_iter()
        .map(|(guid, d)| (d.car_info.driver_guid.non_empty().unwrap_or(guid), d))
        .collect()
}

fn session_record(snapshot: &Snapshot, key: SessionKey, start_ns: Option<i64>) -> Session {
    let info = &snapshot.session_info;
    let track = &snapshot.track_info;
    let session_type = match info.session_type.0 {
        0 => Some("Booking".to_string()),
        1 => Some("Practice".to_string()),
        2 => Some("Qualifying".to_string()),
        3 => Some("Race".to_string()),
        _ => None,
    };
    let mut circuit = info.track.0.clone();
    if !info.track_config.as_str().is_empty() {
        circuit = format!("{circuit}/{}", info.track_config.as_str());
    }
    Session {
        session_key: key,
        session_name: info.name.non_empty(),
        session_type,
        meeting_name: info.server_name.non_empty(),
        circuit_short_name: (!circuit.is_empty()).then_some(circuit),
        country_name: track.country.non_empty(),
        location: track
            .city
            .non_empty()
            .or_else(|| track.name.non_empty())
            .or_else(|| info.track.non_empty()),
        date_start: start_ns.map(format_iso8601_ns),
        year: start_ns.map(|ns| format_iso8601_ns(ns)[..4].parse().unwrap_or(0)),
        note: Some("emperor".to_string()),
        ..Default::default()
    }
}

/// Lowercase ASCII letters and digits, other runs as one `-`, at most 48 characters.
pub fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(48));
    for c in text.chars() {
        if out.len() >= 48 {
            break;
        }
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("server");
    }
    out
}

/// `yyyymmddThhmmssZ` of ns since the epoch.
fn compact_utc(ns: i64) -> String {
    let iso = format_iso8601_ns(ns); // 2024-05-26T13:03:35.123000+00:00
    let digits: String = iso[..19]
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{digits}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> RaceControl {
        RaceControl::new(StateOptions {
            fallback_server_name: "example.org".into(),
            ..Default::default()
        })
    }

    const SNAPSHOT: &str = r#"{"EventType":200,"Message":{
        "SessionInfo":{"ServerName":"York FS | GT3","Track":"ks_brands_hatch","TrackConfig":"gp","Name":"Race","Type":3},
        "TrackMapData":{"scale_factor":2.0,"offset_x":100.0,"offset_y":50.0},
        "TrackInfo":{"name":"Brands Hatch","city":"West Kingsdown","country":"Great Britain"},
        "SessionStartTime":"2024-05-26T13:03:35.5Z",
        "ConnectedDrivers":{"Drivers":{"G1":{"CarInfo":{"CarID":1,"DriverName":"Ann","DriverGUID":"G1","CarModel":"m"},
            "Position":1,"Split":"","TotalNumLaps":3,"Cars":{"m":{"BestLap":61500000000,"LastLap":62000000000,"NumLaps":3,
            "LastLapCompletedTime":"2024-05-26T13:10:00Z"}}}},"GUIDsInPositionalOrder":["G1"]},
        "DisconnectedDrivers":{"Drivers":{},"GUIDsInPositionalOrder":[]},
        "CarIDToGUID":{"1":"G1"}}}"#;

    #[test]
    fn key_is_stable_slug_with_start_time() {
        let mut s = state();
        let mut out = Vec::new();
        assert_eq!(s.apply(SNAPSHOT, 1, &mut out), Outcome::Applied);
        assert_eq!(
            s.session_key().map(|k| k.to_string()),
            Some("york-fs-gt3.race.20240526T130335Z".to_string())
        );
        let Record::Session(session) = &out[0].record else {
            panic!("{out:?}")
        };
        assert_eq!(
            session.circuit_short_name.as_deref(),
            Some("ks_brands_hatch/gp")
        );
        assert_eq!(session.location.as_deref(), Some("West Kingsdown"));
        assert_eq!(session.session_type.as_deref(), Some("Race"));
        assert_eq!(session.year, Some(2024));
        // The same snapshot again changes nothing.
        out.clear();
        s.apply(SNAPSHOT, 2, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn map_coordinates_use_track_map_data() {
        let mut s = RaceControl::new(StateOptions {
            coordinates: Coordinates::Map,
            ..Default::default()
        });
        let mut out = Vec::new();
        let update = r#"{"EventType":53,"Message":{"CarID":1,"Pos":{"X":10,"Y":3,"Z":-20},"NormalisedSplinePos":0.5}}"#;
        s.apply(update, 1, &mut out);
        assert!(out.is_empty(), "no session and no map yet");
        s.apply(SNAPSHOT, 1, &mut out);
        out.clear();
        s.apply(update, 2, &mut out);
        let Record::Position(p) = &out[0].record else {
            panic!("{out:?}")
        };
        assert_eq!((p.x, p.y, p.z, p.spline), (55.0, 15.0, 3.0, Some(0.5)));
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("  York FS | GT3 "), "york-fs-gt3");
        assert_eq!(slug("***"), "server");
        assert_eq!(compact_utc(1_716_728_615_123_000_000), "20240526T130335Z");
    }
}
