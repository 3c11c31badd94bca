//! What the race page shows, built from the records that arrive: the session, the track,
//! every car's place on the map and in the tower, race control and the weather. The sink
//! turns it into the protocol's `state` message (everything) and `update` messages (what
//! changed since the last one); see the README's "Race view protocol".
//!
//! Cars are named by an `id`: the car or driver number for sources with one session
//! (OpenF1, Emperor), `{session}:{car}` for simulator telemetry, where every rig of a hub
//! is a session of its own and may call its car 0.

use std::collections::{BTreeMap, VecDeque};

use std::sync::Arc;

use pitwall_api::record::{parse_iso8601_ns, Bounds, Gap, RaceControlMessage, SessionResultEntry};
use pitwall_api::telemetry::CarTelemetry;
use pitwall_api::{Event, Record};
use serde_json::{json, Map, Value};

/// Race-control messages kept for a page that connects late.
const RACE_CONTROL_KEPT: usize = 50;
/// Points of a track outline built from the path the cars drive.
const DRIVEN_POINTS_MAX: usize = 4000;
/// How long a car counts as in the pit lane after a pit record with no lane time, in s.
const DEFAULT_PIT_LANE_S: f64 = 25.0;
/// Event times within this of the wall clock are live; older ones are a replay.
const LIVE_WINDOW_NS: i64 = 120_000_000_000;

/// One lap record as it becomes true: at `at_ns` the car has done `laps_done` laps, the
/// last of them in `duration` seconds (none for a lap that has only begun).
#[derive(Debug, Clone, Copy)]
struct LapMark {
    at_ns: i64,
    laps_done: u32,
    duration: Option<f64>,
}

/// A tyre stint: from lap `lap_start`, on `compound`, `age_at_start` laps old then.
#[derive(Debug, Clone)]
struct StintMark {
    lap_start: u32,
    compound: Option<String>,
    age_at_start: u32,
}

/// A pit stop: in the lane from `at_ns` for `lane_s` seconds.
#[derive(Debug, Clone, Copy)]
struct PitMark {
    at_ns: i64,
    lane_s: f64,
    lap: Option<u32>,
}

/// One car as the tower and the map show it.
///
/// A replay sends a whole session's laps, stints and pit stops up front (the Cardputer's
/// documents need them), so they are kept with the time each becomes true and the tower
/// shows only what is true at the current event time. Sources that report a running
/// tally (Emperor standings, simulator telemetry) set the `reported_` fields instead.
#[derive(Debug, Default, Clone)]
struct Car {
    number: Option<u32>,
    code: Option<String>,
    name: Option<String>,
    team: Option<String>,
    /// `RRGGBB`.
    colour: Option<String>,
    position: Option<u32>,
    gap: Option<String>,
    interval: Option<String>,
    laps: Vec<LapMark>,
    stints: Vec<StintMark>,
    pits: Vec<PitMark>,
    reported_laps: u32,
    reported_last_lap_s: Option<f64>,
    reported_best_lap_s: Option<f64>,
    /// The simulator says the car is in the pit lane.
    in_pit: bool,
    retired: bool,
    /// Where the map draws it, in the source's world frame (y up).
    xy: Option<(f64, f64)>,
}

/// What a car's records say at one instant.
struct Timing {
    laps: u32,
    last_lap_s: Option<f64>,
    best_lap_s: Option<f64>,
    compound: Option<String>,
    tyre_age: Option<u32>,
    pit_stops: u32,
    status: &'static str,
}

impl Car {
    fn timing(&self, now_ns: i64) -> Timing {
        let done = self.laps.iter().filter(|mark| mark.at_ns <= now_ns);
        let mut laps = self.reported_laps;
        let (mut last, mut last_at, mut best) = (self.reported_last_lap_s, i64::MIN, None::<f64>);
        for mark in done {
            laps = laps.max(mark.laps_done);
            if let Some(duration) = mark.duration {
                if mark.at_ns >= last_at {
                    (last, last_at) = (Some(duration), mark.at_ns);
                }
                best = Some(best.map_or(duration, |b| b.min(duration)));
            }
        }
        let best = match (best, self.reported_best_lap_s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let current_lap = laps + 1;
        let stint = self
            .stints
            .iter()
            .filter(|stint| stint.lap_start <= current_lap)
            .max_by_key(|stint| stint.lap_start);
        let started: Vec<&PitMark> = self.pits.iter().filter(|p| p.at_ns <= now_ns).collect();
        let mut pit_laps: Vec<u32> = started.iter().filter_map(|p| p.lap).collect();
        pit_laps.sort_unstable();
        pit_laps.dedup();
        let unnumbered = started.iter().filter(|p| p.lap.is_none()).count();
        let in_lane = started
            .iter()
            .any(|p| now_ns < p.at_ns + (p.lane_s * 1e9) as i64);
        let status = if self.retired {
            "retired"
        } else if self.in_pit || in_lane {
            "pit"
        } else {
            "running"
        };
        Timing {
            laps,
            last_lap_s: last,
            best_lap_s: best,
            compound: stint.and_then(|s| s.compound.clone()),
            tyre_age: stint.map(|s| s.age_at_start + current_lap - s.lap_start),
            pit_stops: (pit_laps.len() + unnumbered) as u32,
            status,
        }
    }
}

/// The path the cars drive, for sources with no outline: one car's positions, spaced out,
/// until it has gone round once.
#[derive(Debug, Default)]
struct DrivenPath {
    tracer: Option<String>,
    points: Vec<(f64, f64)>,
    /// What the points span, kept as they come (the spacing depends on it).
    bounds: Option<Bounds>,
    closed: bool,
}

impl DrivenPath {
    /// Add `id`'s position if it is the tracer and far enough from the last point. True
    /// when the path grew.
    fn add(&mut self, id: &str, x: f64, y: f64) -> bool {
        if self.closed || self.points.len() >= DRIVEN_POINTS_MAX {
            return false;
        }
        match &self.tracer {
            Some(tracer) if tracer != id => return false,
            Some(_) => {}
            None => self.tracer = Some(id.to_string()),
        }
        let spacing = self.spacing();
        if let Some(&(lx, ly)) = self.points.last() {
            if (x - lx).hypot(y - ly) < spacing {
                return false;
            }
        }
        // Back where it started, after going somewhere: one lap is the outline.
        if let Some(&(fx, fy)) = self.points.first() {
            if self.points.len() > 50 && (x - fx).hypot(y - fy) < spacing * 2.0 {
                self.closed = true;
                self.points.push((fx, fy));
                return true;
            }
        }
        self.points.push((x, y));
        match &mut self.bounds {
            Some(bounds) => bounds.include(x, y),
            None => self.bounds = Bounds::of_points([(x, y)]),
        }
        true
    }

    /// A two-hundredth of what the path spans so far, at least a small step.
    fn spacing(&self) -> f64 {
        let span = self
            .bounds
            .map_or(0.0, |b| (b.max_x - b.min_x).max(b.max_y - b.min_y));
        (span / 200.0).max(1e-3)
    }

    /// The tracer is gone: the next car to move carries on.
    fn forget(&mut self, id: &str) {
        if self.tracer.as_deref() == Some(id) && !self.closed {
            self.tracer = None;
            self.points.clear();
            self.bounds = None;
        }
    }
}

/// What changed since the last update.
#[derive(Debug, Default)]
struct Changes {
    session: bool,
    track: bool,
    cars: bool,
    weather: bool,
    /// Race-control messages added since the last update, oldest first.
    race_control: Vec<Value>,
}

/// The whole picture of the race.
#[derive(Debug, Default)]
pub struct RaceModel {
    session: Map<String, Value>,
    /// `waiting`, then `live` or `replay`, then `finished`.
    status: &'static str,
    ended: bool,
    /// Newest event time seen.
    now_ns: i64,
    first_ns: Option<i64>,
    /// Milliseconds of the frames' own clock (the Cardputer's `t_ms`), when frames arrive.
    t_ms: Option<i64>,
    total_laps: Option<u32>,
    outline: Vec<(f64, f64)>,
    pit_lane: Vec<(f64, f64)>,
    driven: DrivenPath,
    /// Cars drawn from frames: raw positions of the same cars are then ignored.
    frames_seen: bool,
    cars: BTreeMap<String, Car>,
    race_control: VecDeque<Value>,
    track_status: Option<String>,
    weather: Option<Value>,
    /// The final classification, applied when the session ends.
    results: Vec<Arc<SessionResultEntry>>,
    /// The tower as the last update sent it: an update carries the tower when it differs.
    last_tower: Value,
    changes: Changes,
}

impl RaceModel {
    pub fn new(title: Option<&str>, total_laps: Option<u32>) -> Self {
        let mut model = Self {
            status: "waiting",
            total_laps,
            ..Self::default()
        };
        if let Some(title) = title {
            model.session.insert("title".into(), json!(title));
        }
        model
    }

    /// Take in one record.
    pub fn apply(&mut self, event: &Event, wall_clock_ns: i64) {
        self.advance(event.time_ns, wall_clock_ns);
        match &event.record {
            Record::Session(session) => {
                let mut put = |key: &str, value: Option<Value>| {
                    if let Some(value) = value {
                        self.session.insert(key.into(), value);
                    }
                };
                put("session_key", Some(json!(session.session_key)));
                put("name", session.session_name.clone().map(Value::from));
                put("type", session.session_type.clone().map(Value::from));
                put("meeting", session.meeting_name.clone().map(Value::from));
                put(
                    "circuit",
                    session
                        .circuit_short_name
                        .clone()
                        .or(session.location.clone())
                        .map(Value::from),
                );
                put("country", session.country_name.clone().map(Value::from));
                put("note", session.note.clone().map(Value::from));
                self.changes.session = true;
            }
            Record::Driver(driver) => {
                let car = self.car(driver.driver_number.to_string());
                car.number = Some(driver.driver_number);
                car.code = driver.name_acronym.clone().or(car.code.take());
                car.name = driver
                    .full_name
                    .clone()
                    .or(driver.broadcast_name.clone())
                    .or(car.name.take());
                car.team = driver.team_name.clone().or(car.team.take());
                car.colour = driver.team_colour.clone().or(car.colour.take());
            }
            Record::Frame(frame) => {
                self.frames_seen = true;
                self.t_ms = Some(frame.t_ms);
                for fc in &frame.cars {
                    if !fc.x.is_finite() || !fc.y.is_finite() {
                        continue;
                    }
                    let id = fc.car.to_string();
                    self.place(&id, fc.x, fc.y, Some(fc.car));
                    if fc.position > 0 {
                        let car = self.car(id);
                        if car.position != Some(fc.position) {
                            car.position = Some(fc.position);
                        }
                    }
                }
            }
            // Raw positions only when no frames draw the cars.
            Record::Position(position)
                if !self.frames_seen && position.x.is_finite() && position.y.is_finite() =>
            {
                self.place(
                    &position.car.to_string(),
                    position.x,
                    position.y,
                    Some(position.car),
                );
            }
            Record::RacePosition(position) => {
                self.car(position.car.to_string()).position = Some(position.position);
            }
            Record::Lap(lap) => {
                let start_ns = lap.date_start.as_deref().and_then(parse_iso8601_ns);
                let duration = lap.lap_duration.filter(|d| d.is_finite() && *d > 0.0);
                let mark = match (start_ns, duration) {
                    (Some(start), Some(d)) => LapMark {
                        at_ns: start + (d * 1e9) as i64,
                        laps_done: lap.lap_number,
                        duration: Some(d),
                    },
                    (Some(start), None) => LapMark {
                        at_ns: start,
                        laps_done: lap.lap_number.saturating_sub(1),
                        duration: None,
                    },
                    // No time: true from now on.
                    (None, duration) => LapMark {
                        at_ns: i64::MIN,
                        laps_done: if duration.is_some() {
                            lap.lap_number
                        } else {
                            lap.lap_number.saturating_sub(1)
                        },
                        duration,
                    },
                };
                self.car(lap.driver_number.to_string()).laps.push(mark);
            }
            Record::Interval(interval) => {
                let car = self.car(interval.driver_number.to_string());
                car.gap = interval.gap_to_leader.as_ref().map(gap_text);
                car.interval = interval.interval.as_ref().map(gap_text);
            }
            Record::Stint(stint) => {
                let car = self.car(stint.driver_number.to_string());
                let lap_start = stint.lap_start.unwrap_or(1);
                car.stints.retain(|s| s.lap_start != lap_start);
                car.stints.push(StintMark {
                    lap_start,
                    compound: stint.compound.clone(),
                    age_at_start: stint.tyre_age_at_start.unwrap_or(0),
                });
            }
            Record::Pit(pit) => {
                let at_ns = pit
                    .date
                    .as_deref()
                    .and_then(parse_iso8601_ns)
                    .unwrap_or(event.time_ns);
                let lane_s = pit
                    .lane_duration
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .unwrap_or(DEFAULT_PIT_LANE_S);
                let car = self.car(pit.driver_number.to_string());
                if !car.pits.iter().any(|p| p.at_ns == at_ns) {
                    car.pits.push(PitMark {
                        at_ns,
                        lane_s,
                        lap: pit.lap_number,
                    });
                }
            }
            Record::RaceControl(message) => self.race_control_message(message),
            Record::Weather(weather) => {
                self.weather = Some(json!({
                    "air_c": weather.air_temperature,
                    "track_c": weather.track_temperature,
                    "humidity_pct": weather.humidity,
                    "rain": weather.rainfall.map(|r| r > 0.0),
                    "wind_ms": weather.wind_speed,
                    "wind_direction_deg": weather.wind_direction,
                }));
                self.changes.weather = true;
            }
            Record::SessionResult(result) => {
                // The classification is what is true at the end: kept until then.
                self.results.push(result.clone());
                if self.ended {
                    self.classify();
                }
            }
            Record::TrackLayout(layout) => {
                self.outline = layout.track_path.iter().map(|p| (p.x, p.y)).collect();
                self.pit_lane = layout.pit_path.iter().map(|p| (p.x, p.y)).collect();
                self.changes.track = true;
            }
            Record::SessionEnd(_) => {
                self.ended = true;
                self.status = "finished";
                self.changes.session = true;
                self.classify();
            }
            Record::Standing(standing) => {
                let car = self.car(standing.car.to_string());
                car.number.get_or_insert(standing.car);
                car.position = Some(standing.position);
                car.name = standing.driver_name.clone().or(car.name.take());
                car.team = standing.car_model.clone().or(car.team.take());
                car.gap = standing.gap.clone();
                car.reported_laps = standing.laps;
                car.reported_last_lap_s = standing.last_lap_s.or(car.reported_last_lap_s);
                car.reported_best_lap_s = standing.best_lap_s.or(car.reported_best_lap_s);
                car.retired = false;
            }
            Record::Connection(connection) => {
                let id = connection.car.to_string();
                if connection.connected {
                    let car = self.car(id);
                    car.number.get_or_insert(connection.car);
                    car.name = connection.driver_name.clone().or(car.name.take());
                    car.team = connection.car_model.clone().or(car.team.take());
                    car.retired = false;
                } else {
                    // Gone from the server: off the map and out of the tower.
                    self.cars.remove(&id);
                    self.driven.forget(&id);
                    self.changes.cars = true;
                }
                let who = connection.driver_name.as_deref().unwrap_or("a driver");
                let verb = if connection.connected {
                    "joined"
                } else {
                    "left"
                };
                self.push_race_control(json!({
                    "category": "Connection",
                    "message": format!("{who} {verb} (car {})", connection.car),
                }));
            }
            Record::Collision(collision) => {
                let with = match collision.other_car {
                    Some(other) => format!("car {other}"),
                    None => "the barrier".to_string(),
                };
                self.push_race_control(json!({
                    "category": "Collision",
                    "message": format!(
                        "Car {} hit {with} at {:.0} km/h",
                        collision.car, collision.impact_speed_kmh
                    ),
                }));
            }
            Record::Chat(chat) => {
                let who = chat.driver_name.as_deref().unwrap_or("server");
                self.push_race_control(json!({
                    "category": "Chat",
                    "message": format!("{who}: {}", chat.message),
                }));
            }
            Record::CarTelemetry(telemetry) => self.telemetry(telemetry),
            _ => {}
        }
    }

    /// Event time moved on: the status, and pit stops that ended.
    fn advance(&mut self, time_ns: i64, wall_clock_ns: i64) {
        if time_ns <= 0 {
            return;
        }
        if time_ns < self.now_ns {
            // Time went back: a looping replay started over.
            self.ended = false;
        }
        self.now_ns = time_ns;
        self.first_ns.get_or_insert(time_ns);
        if !self.ended {
            // Simulators count from their own start; only wall-clock times can be live.
            let live = (wall_clock_ns - time_ns).abs() < LIVE_WINDOW_NS;
            let status = if live { "live" } else { "replay" };
            if self.status != status {
                self.status = status;
                self.changes.session = true;
            }
        }
    }

    fn car(&mut self, id: String) -> &mut Car {
        self.cars.entry(id).or_default()
    }

    fn place(&mut self, id: &str, x: f64, y: f64, number: Option<u32>) {
        let car = self.cars.entry(id.to_string()).or_default();
        if car.retired {
            return;
        }
        if number.is_some() {
            car.number = number;
        }
        car.xy = Some((x, y));
        self.changes.cars = true;
        if self.outline.is_empty() && self.driven.add(id, x, y) {
            self.changes.track = true;
        }
    }

    fn telemetry(&mut self, t: &CarTelemetry) {
        let id = format!("{}:{}", t.session, t.car_id);
        {
            let car = self.car(id.clone());
            car.number = Some(t.car_id.max(0) as u32);
            car.name = t.driver.as_deref().map(str::to_string).or(car.name.take());
            car.team = t
                .car_model
                .as_deref()
                .map(str::to_string)
                .or(car.team.take());
            if t.place > 0 {
                car.position = Some(t.place as u32);
            }
            car.reported_laps = t.completed_laps.max(0) as u32;
            car.reported_last_lap_s = t.last_lap_s.map(f64::from).or(car.reported_last_lap_s);
            car.reported_best_lap_s = t.best_lap_s.map(f64::from).or(car.reported_best_lap_s);
            car.in_pit = t.in_pit;
        }
        if let Some(track) = &t.track {
            if self.session.get("circuit").and_then(Value::as_str) != Some(track) {
                self.session.insert("circuit".into(), json!(track));
                self.changes.session = true;
            }
        }
        let [x, _up, z] = t.position;
        if x.is_finite() && z.is_finite() && (x != 0.0 || z != 0.0) {
            // The games' y is up; seen from above, z points down the screen.
            self.place(&id, f64::from(x), -f64::from(z), None);
        }
    }

    fn race_control_message(&mut self, message: &RaceControlMessage) {
        let category = message.category.as_deref().unwrap_or("");
        if let Some(flag) = &message.flag {
            let track_wide = message.scope.as_deref().is_none_or(|s| s == "Track");
            if track_wide && matches!(flag.as_str(), "GREEN" | "RED" | "CHEQUERED" | "CLEAR") {
                self.track_status = Some(flag.clone());
                self.changes.session = true;
            }
        }
        if category == "SafetyCar" {
            let text = message.message.as_deref().unwrap_or("");
            let status = if text.contains("VIRTUAL") {
                "VSC"
            } else {
                "SC"
            };
            let ending = text.contains("ENDING") || text.contains("IN THIS LAP");
            self.track_status = Some(if ending {
                format!("{status} ENDING")
            } else {
                status.to_string()
            });
            self.changes.session = true;
        }
        self.push_race_control(json!({
            "date": message.date,
            "category": message.category,
            "flag": message.flag,
            "lap": message.lap_number,
            "car": message.driver_number,
            "message": message.message,
        }));
    }

    fn push_race_control(&mut self, mut message: Value) {
        if let Some(object) = message.as_object_mut() {
            object.retain(|_, value| !value.is_null());
            object.insert("t_ms".into(), json!(self.clock_ms()));
        }
        self.race_control.push_front(message.clone());
        self.race_control.truncate(RACE_CONTROL_KEPT);
        self.changes.race_control.push(message);
    }

    /// The session clock: the frames' own when there are frames, else event time since the
    /// first record.
    fn clock_ms(&self) -> i64 {
        self.t_ms
            .unwrap_or_else(|| (self.now_ns - self.first_ns.unwrap_or(self.now_ns)) / 1_000_000)
    }

    /// The full state: what a page that connects now needs.
    pub fn state(&self) -> Value {
        json!({
            "type": "state",
            "session": self.session_json(),
            "track": self.track_json(),
            "tower": self.tower_json(),
            "cars": self.cars_json(),
            "race_control": self.race_control,
            "weather": self.weather,
        })
    }

    /// What changed since the last update (keys of the `state` message, only those that
    /// changed; `race_control` holds only the new messages, oldest first), and forget it;
    /// `None` when nothing did.
    pub fn take_update(&mut self) -> Option<Value> {
        let changes = std::mem::take(&mut self.changes);
        let tower = self.tower_json();
        let tower_changed = tower != self.last_tower;
        let c = &changes;
        if !(c.session
            || c.track
            || c.cars
            || c.weather
            || !c.race_control.is_empty()
            || tower_changed)
        {
            return None;
        }
        let mut update = Map::new();
        update.insert("type".into(), json!("update"));
        // Every update carries the clock and status, so the page's clock never stalls.
        update.insert("session".into(), self.session_json());
        if changes.track {
            update.insert("track".into(), self.track_json());
        }
        if tower_changed {
            update.insert("tower".into(), tower.clone());
            self.last_tower = tower;
        }
        if changes.cars {
            update.insert("cars".into(), self.cars_json());
        }
        if changes.weather {
            update.insert("weather".into(), json!(self.weather));
        }
        if !changes.race_control.is_empty() {
            update.insert("race_control".into(), json!(changes.race_control));
        }
        Some(Value::Object(update))
    }

    fn session_json(&self) -> Value {
        let laps = |car: &Car| car.timing(self.now_ns).laps;
        let leader_laps = self
            .cars
            .values()
            .find(|car| car.position == Some(1))
            .map(laps)
            .or_else(|| self.cars.values().map(laps).max())
            .unwrap_or(0);
        let mut session = self.session.clone();
        session.insert("status".into(), json!(self.status));
        session.insert("t_ms".into(), json!(self.clock_ms()));
        session.insert("time_ns".into(), json!(self.now_ns));
        let current = if self.ended {
            leader_laps
        } else {
            leader_laps + 1
        };
        let current = self.total_laps.map_or(current, |total| current.min(total));
        session.insert("lap".into(), json!(current));
        session.insert("total_laps".into(), json!(self.total_laps));
        session.insert("track_status".into(), json!(self.track_status));
        Value::Object(session)
    }

    fn track_json(&self) -> Value {
        let (outline, driven) = if self.outline.is_empty() {
            (&self.driven.points, true)
        } else {
            (&self.outline, false)
        };
        json!({
            "outline": points_json(outline),
            "pit_lane": points_json(&self.pit_lane),
            "driven": driven,
        })
    }

    fn tower_json(&self) -> Value {
        let mut rows: Vec<(&String, &Car, Timing)> = self
            .cars
            .iter()
            .map(|(id, car)| (id, car, car.timing(self.now_ns)))
            .filter(|(_, car, timing)| {
                car.position.is_some() || car.xy.is_some() || timing.laps > 0
            })
            .collect();
        rows.sort_by_key(|(id, car, timing)| {
            (
                car.retired,
                car.position.unwrap_or(u32::MAX),
                std::cmp::Reverse(timing.laps),
                car.number.unwrap_or(u32::MAX),
                id.as_str(),
            )
        });
        let fastest = rows
            .iter()
            .filter_map(|(id, _, timing)| Some((timing.best_lap_s?, *id)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, id)| id.clone());
        let rows: Vec<Value> = rows
            .iter()
            .map(|(id, car, timing)| {
                let mut row = json!({
                    "id": id,
                    "position": car.position,
                    "number": car.number,
                    "code": car.code.clone().unwrap_or_else(|| default_code(id, car)),
                    "name": car.name,
                    "team": car.team,
                    "colour": car.colour,
                    "gap": car.gap,
                    "interval": car.interval,
                    "laps": timing.laps,
                    "last_lap_s": timing.last_lap_s,
                    "best_lap_s": timing.best_lap_s,
                    "compound": timing.compound,
                    "tyre_age": timing.tyre_age,
                    "pit_stops": timing.pit_stops,
                    "status": timing.status,
                });
                // What is not known is left out rather than sent as null.
                if let Some(fields) = row.as_object_mut() {
                    fields.retain(|_, value| !value.is_null());
                }
                row
            })
            .collect();
        json!({ "rows": rows, "fastest": fastest })
    }

    /// The final classification: positions, and who did not finish.
    fn classify(&mut self) {
        for result in std::mem::take(&mut self.results) {
            let car = self.car(result.driver_number.to_string());
            if let Some(position) = result.position {
                car.position = Some(position);
            }
            if [result.dnf, result.dns, result.dsq].contains(&Some(true)) {
                car.retired = true;
                car.xy = None;
            }
        }
        self.changes.cars = true;
    }

    /// `[[id, x, y, status], ...]` for every car on the map.
    fn cars_json(&self) -> Value {
        let cars: Vec<Value> = self
            .cars
            .iter()
            .filter(|(_, car)| !car.retired)
            .filter_map(|(id, car)| {
                let (x, y) = car.xy?;
                Some(json!([
                    id,
                    round1(x),
                    round1(y),
                    car.timing(self.now_ns).status
                ]))
            })
            .collect();
        Value::Array(cars)
    }
}

/// A gap as the tower shows it: `+1.234`, or the source's own text (`+1 LAP`).
fn gap_text(gap: &Gap) -> String {
    match gap {
        Gap::Seconds(seconds) => format!("+{seconds:.3}"),
        Gap::Text(text) => text.clone(),
    }
}

/// A short label for a car without a three-letter code: its driver's initials or number.
fn default_code(id: &str, car: &Car) -> String {
    if let Some(name) = &car.name {
        let code: String = name
            .split_whitespace()
            .last()
            .unwrap_or(name)
            .chars()
            .filter(|c| c.is_alphanumeric())
            .take(3)
            .collect::<String>()
            .to_uppercase();
        if !code.is_empty() {
            return code;
        }
    }
    car.number
        .map(|n| n.to_string())
        .unwrap_or_else(|| id.to_string())
}

/// A coordinate to a tenth, written as an integer when it is one: OpenF1's decimetres
/// then cost no `.0`, and the state a viewer gets first stays small (every viewer's socket
/// keeps a buffer as large as the largest message it was sent).
fn round1(v: f64) -> Value {
    let tenth = (v * 10.0).round() / 10.0;
    if tenth.fract() == 0.0 && tenth.abs() < 1e15 {
        json!(tenth as i64)
    } else {
        json!(tenth)
    }
}

fn points_json(points: &[(f64, f64)]) -> Value {
    Value::Array(
        points
            .iter()
            .map(|&(x, y)| json!([round1(x), round1(y)]))
            .collect(),
    )
}
