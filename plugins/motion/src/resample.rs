//! Transform `resample`: every car of a session on one regular time grid.
//!
//! OpenF1 reports each car's location about 3.7 times a second, at instants that do not line
//! up with any display clock. A Cardputer (FORMATS.md section 3) wants one line per 100 ms
//! of replay time listing every car, with a clock counted from the race's reference start.
//! This transform turns the irregular [`Position`](Record::Position) stream into
//! [`Frame`]s on that grid:
//!
//! - Grid points are `reference + k * interval_ms` (event time). The reference is the
//!   session's [`RaceMetadata`](Record::RaceMetadata) `reference_start` (the default), or the
//!   session's first event. Early positions are kept while waiting for the metadata, but only
//!   for `metadata_wait_ms` of event time: then the first event becomes the reference (with a
//!   warning) and stays so for the whole session, so the clock never jumps.
//! - Frame `g` is emitted once any event at or after `g + lag_ms` has been seen (Ticks count),
//!   so the sample after `g` is usually known and x/y can be interpolated linearly between the
//!   samples around `g`. When those samples are more than `max_gap_ms` apart the car holds its
//!   last position; a car whose last sample is older than `max_hold_ms` (and not followed by a
//!   near sample) is left out, as is a car with no sample yet. A frame with no car at all is
//!   not emitted: the grid skips ahead to the next sample, so stale sessions, data holes and
//!   absurd timestamps cost nothing.
//! - Samples at exactly `0,0` mean "car not placed" and are ignored.
//! - Each car carries its race position (the latest [`RacePosition`](Record::RacePosition) at or
//!   before the frame's instant, 0 when none). Cars are ordered by race position, cars without
//!   one last, then by car number.
//! - On [`SessionEnd`](Record::SessionEnd) the frames up to the session's last sample are
//!   emitted without waiting for the lag, then the `SessionEnd` is forwarded and the session's
//!   state dropped. When the input ends the same flush happens without a `SessionEnd`.
//!
//! By default no frame is emitted for grid points before the reference start
//! (`emit_before_reference`): OpenF1 location data can start hours before the race, and the
//! device's clock should start at 0.
//!
//! State is per session (`session_key`) and small: each car keeps only the last sample at or
//! before the next grid point plus the samples after it. The hot path (one sample in) is a
//! few comparisons and a push; building a frame walks the cars once with no allocation but the
//! frame's own vector.
//!
//! ```toml
//! [transforms.frames]
//! type = "resample"
//! inputs = ["f1"]
//! interval_ms = 100            # grid step, event time
//! reference = "race_metadata"  # or "first_event"
//! metadata_wait_ms = 2000      # then fall back to the session's first event
//! lag_ms = 300                 # emit frame g once event time reaches g + lag_ms
//! max_gap_ms = 2000            # interpolate only between samples this close
//! max_hold_ms = 60000          # leave a car out once its last sample is this old
//! emit_before_reference = false
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::record::{parse_iso8601_ns, Frame, FrameCar, SessionKey};
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io, Kinds,
    Record, RecordKind, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::keys::should_log;

/// Where a session's frame clock starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reference {
    /// `reference_start` of the session's `race_metadata` record (the pole sitter's lap-1
    /// start minus 20 s), waiting up to `metadata_wait_ms` for it.
    #[default]
    RaceMetadata,
    /// The session's first event.
    FirstEvent,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResampleConfig {
    /// Grid step in milliseconds of event time: one frame per session per step.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Where frame clocks (`t_ms`) start: `race_metadata` or `first_event`.
    #[serde(default)]
    pub reference: Reference,
    /// With `reference = "race_metadata"`: how long (event time, from the session's first
    /// event) to wait for the metadata before counting from the first event instead.
    #[serde(default = "default_metadata_wait_ms")]
    pub metadata_wait_ms: u64,
    /// ... and at least this long in wall-clock time: a replay at speed 0 covers minutes of
    /// event time before the `track_layout` transform upstream has even run once.
    #[serde(default = "default_metadata_wait_wall_ms")]
    pub metadata_wait_wall_ms: u64,
    /// Emit the frame for grid time g once event time has reached g + lag_ms, so that the
    /// sample after g is known.
    #[serde(default = "default_lag_ms")]
    pub lag_ms: u64,
    /// Interpolate between two samples only when they are at most this many ms apart;
    /// otherwise hold the earlier one.
    #[serde(default = "default_max_gap_ms")]
    pub max_gap_ms: u64,
    /// Leave a car out of frames once its last sample is older than this (ms): a car that
    /// stopped reporting disappears instead of freezing forever.
    #[serde(default = "default_max_hold_ms")]
    pub max_hold_ms: u64,
    /// Also emit frames for grid times before the reference start (negative `t_ms`).
    #[serde(default)]
    pub emit_before_reference: bool,
}

fn default_interval_ms() -> u64 {
    100
}
fn default_metadata_wait_wall_ms() -> u64 {
    500
}

fn default_metadata_wait_ms() -> u64 {
    2000
}
fn default_lag_ms() -> u64 {
    300
}
fn default_max_gap_ms() -> u64 {
    2000
}
fn default_max_hold_ms() -> u64 {
    60_000
}

impl Default for ResampleConfig {
    fn default() -> Self {
        Self {
            interval_ms: default_interval_ms(),
            reference: Reference::default(),
            metadata_wait_ms: default_metadata_wait_ms(),
            metadata_wait_wall_ms: default_metadata_wait_wall_ms(),
            lag_ms: default_lag_ms(),
            max_gap_ms: default_max_gap_ms(),
            max_hold_ms: default_max_hold_ms(),
            emit_before_reference: false,
        }
    }
}

/// One day: larger durations are surely a unit mistake.
const MAX_DURATION_MS: u64 = 86_400_000;

impl ComponentConfig for ResampleConfig {
    fn emits(&self) -> Kinds {
        Kinds::of(&[RecordKind::Frame, RecordKind::SessionEnd])
    }

    fn accepts(&self) -> Kinds {
        Kinds::of(&[
            RecordKind::Position,
            RecordKind::RacePosition,
            RecordKind::RaceMetadata,
            RecordKind::Tick,
            RecordKind::SessionEnd,
        ])
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if self.interval_ms == 0 {
            problems.push(OptionProblem::new(
                "interval_ms",
                "must be at least 1 (ms between frames)",
            ));
        }
        for (key, value) in [
            ("interval_ms", self.interval_ms),
            ("metadata_wait_ms", self.metadata_wait_ms),
            ("lag_ms", self.lag_ms),
            ("max_gap_ms", self.max_gap_ms),
            ("max_hold_ms", self.max_hold_ms),
        ] {
            if value > MAX_DURATION_MS {
                problems.push(OptionProblem::new(
                    key,
                    format!("{value} ms is more than a day; the unit is milliseconds"),
                ));
            }
        }
        problems
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        Ok(Box::new(ResampleComponent {
            core: Resampler::new(self),
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<ResampleConfig>(
        "resample",
        Role::Transform,
        "Frames of all cars of a session on a regular event-time grid, x/y interpolated",
    )
}

/// Events per output batch.
const CHUNK: usize = 1024;
/// Sessions tracked at once; the least recently active one is dropped beyond this.
const MAX_SESSIONS: usize = 32;
/// Cars per session (car numbers come from outside).
const MAX_CARS: usize = 1000;
/// Samples kept per car at most, whatever the clock does.
const MAX_SAMPLES: usize = 4096;
/// Pending race-position changes kept per car.
const MAX_POSITION_CHANGES: usize = 64;
/// Car numbers below this are found by direct indexing.
const DIRECT_INDEX: usize = 1024;
const NO_CAR: u32 = u32::MAX;
/// Event time going back by more than this resets the watermark (a looping replay); smaller
/// steps back are ordinary disorder between sources.
const BACKWARD_RESET_NS: i64 = 60_000_000_000;

struct ResampleComponent {
    core: Resampler,
}

#[async_trait]
impl Component for ResampleComponent {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let Some(input) = io.input.as_mut() else {
            return Ok(());
        };
        let mut out = Vec::with_capacity(CHUNK);
        while let Some(batch) = input.recv().await {
            for event in batch.iter() {
                self.core.ingest(event);
                while self.core.pump(&mut out, CHUNK) {
                    io.output
                        .send(std::mem::replace(&mut out, Vec::with_capacity(CHUNK)))
                        .await;
                }
            }
            if !out.is_empty() {
                io.output
                    .send(std::mem::replace(&mut out, Vec::with_capacity(CHUNK)))
                    .await;
            }
            for _ in 0..self.core.take_errors() {
                io.metrics.add_error();
            }
        }
        // Input ended (shutdown or replacement): emit what the samples we have cover.
        self.core.finish();
        while self.core.pump(&mut out, CHUNK) {
            io.output
                .send(std::mem::replace(&mut out, Vec::with_capacity(CHUNK)))
                .await;
        }
        io.output.send(out).await;
        Ok(())
    }
}

/// Durations and choices, in nanoseconds.
#[derive(Clone, Copy, Debug)]
struct Params {
    interval_ns: i64,
    lag_ns: i64,
    max_gap_ns: i64,
    max_hold_ns: i64,
    wait_ns: i64,
    wait_wall: std::time::Duration,
    reference: Reference,
    emit_before_reference: bool,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    t: i64,
    x: f64,
    y: f64,
}

struct CarState {
    car: u32,
    /// Sorted by time; after pruning, `samples[0]` is the last sample at or before the next
    /// grid point and the rest are after it.
    samples: VecDeque<Sample>,
    /// Race position in effect at the last built frame.
    position: u32,
    /// Race-position changes not yet in effect, sorted by time.
    changes: VecDeque<(i64, u32)>,
}

struct SessionState {
    key: SessionKey,
    first_seen: i64,
    /// When the session was first seen, by the wall clock.
    first_seen_wall: std::time::Instant,
    last_activity: i64,
    reference: Option<i64>,
    next_grid: Option<i64>,
    /// Earliest sample time, until the grid starts.
    first_sample: Option<i64>,
    /// Newest sample time.
    last_sample: i64,
    cars: Vec<CarState>,
    direct: Vec<u32>,
    others: HashMap<u32, u32>,
    /// Flush everything up to the last sample, then drop this session.
    closing: bool,
    /// The `SessionEnd` to forward after the flush.
    end: Option<Event>,
    /// Cars refused because the session already has `MAX_CARS`.
    refused_cars: u64,
}

enum Built {
    Frame(Frame),
    /// Nobody to show at this grid time; the next sample of any car is at this time.
    Empty(Option<i64>),
}

impl SessionState {
    fn new(key: SessionKey, t: i64, params: &Params) -> Self {
        Self {
            key,
            first_seen: t,
            first_seen_wall: std::time::Instant::now(),
            last_activity: t,
            reference: (params.reference == Reference::FirstEvent).then_some(t),
            next_grid: None,
            first_sample: None,
            last_sample: i64::MIN,
            cars: Vec::new(),
            direct: Vec::new(),
            others: HashMap::new(),
            closing: false,
            end: None,
            refused_cars: 0,
        }
    }

    fn car_index(&mut self, car: u32) -> Option<usize> {
        let slot = car as usize;
        if slot < DIRECT_INDEX {
            if self.direct.is_empty() {
                self.direct = vec![NO_CAR; DIRECT_INDEX];
            }
            let index = self.direct[slot];
            if index != NO_CAR {
                return Some(index as usize);
            }
        } else if let Some(&index) = self.others.get(&car) {
            return Some(index as usize);
        }
        if self.cars.len() >= MAX_CARS {
            self.refused_cars += 1;
            return None;
        }
        let index = self.cars.len();
        self.cars.push(CarState {
            car,
            samples: VecDeque::new(),
            position: 0,
            changes: VecDeque::new(),
        });
        if slot < DIRECT_INDEX {
            self.direct[slot] = index as u32;
        } else {
            self.others.insert(car, index as u32);
        }
        Some(index)
    }

    fn add_sample(&mut self, car: u32, sample: Sample) {
        let Some(index) = self.car_index(car) else {
            return;
        };
        let next_grid = self.next_grid;
        let samples = &mut self.cars[index].samples;
        match samples.back() {
            None => samples.push_back(sample),
            Some(last) if last.t < sample.t => samples.push_back(sample),
            Some(last) if last.t == sample.t => {
                if let Some(last) = samples.back_mut() {
                    *last = sample;
                }
            }
            Some(_) => {
                // Out of order: usually one step back.
                let at = samples.partition_point(|s| s.t < sample.t);
                if samples.get(at).is_some_and(|s| s.t == sample.t) {
                    samples[at] = sample;
                } else if at == 0 && next_grid.is_some_and(|g| samples[0].t <= g) {
                    // Older than the sample that already covers the next frame: too late.
                    return;
                } else {
                    samples.insert(at, sample);
                }
            }
        }
        if let Some(g) = next_grid {
            while samples.len() >= 2 && samples[1].t <= g {
                samples.pop_front();
            }
        }
        if samples.len() > MAX_SAMPLES {
            samples.pop_front();
        }
        self.last_sample = self.last_sample.max(sample.t);
        if self.next_grid.is_none() {
            self.first_sample = Some(self.first_sample.map_or(sample.t, |f| f.min(sample.t)));
        }
    }

    fn add_position(&mut self, car: u32, t: i64, position: u32) {
        let Some(index) = self.car_index(car) else {
            return;
        };
        let car = &mut self.cars[index];
        let at = car.changes.partition_point(|(ct, _)| *ct <= t);
        car.changes.insert(at, (t, position));
        if car.changes.len() > MAX_POSITION_CHANGES {
            if let Some((_, oldest)) = car.changes.pop_front() {
                car.position = oldest;
            }
        }
    }

    fn build(&mut self, g: i64, params: &Params) -> Built {
        let reference = self.reference.unwrap_or(g);
        let mut cars = Vec::with_capacity(self.cars.len());
        let mut next_sample: Option<i64> = None;
        for car in &mut self.cars {
            while let Some(&(t, position)) = car.changes.front() {
                if t > g {
                    break;
                }
                car.position = position;
                car.changes.pop_front();
            }
            let samples = &mut car.samples;
            while samples.len() >= 2 && samples[1].t <= g {
                samples.pop_front();
            }
            let Some(&a) = samples.front() else {
                continue;
            };
            if a.t > g {
                next_sample = Some(next_sample.map_or(a.t, |n| n.min(a.t)));
                continue;
            }
            let after = samples.get(1).copied();
            if let Some(b) = after {
                next_sample = Some(next_sample.map_or(b.t, |n| n.min(b.t)));
            }
            let (x, y) = match after {
                Some(b) if b.t - a.t <= params.max_gap_ns => {
                    let f = (g - a.t) as f64 / (b.t - a.t) as f64;
                    (a.x + (b.x - a.x) * f, a.y + (b.y - a.y) * f)
                }
                _ if g - a.t <= params.max_hold_ns => (a.x, a.y),
                _ => continue,
            };
            cars.push(FrameCar {
                car: car.car,
                x,
                y,
                position: car.position,
            });
        }
        if cars.is_empty() {
            return Built::Empty(next_sample);
        }
        cars.sort_unstable_by_key(|c| (c.position == 0, c.position, c.car));
        Built::Frame(Frame {
            session_key: self.key.clone(),
            t_ms: (g - reference).div_euclid(1_000_000),
            cars,
        })
    }
}

/// The first grid point at or after `t`.
fn ceil_grid(reference: i64, interval_ns: i64, t: i64) -> i64 {
    let offset = i128::from(t) - i128::from(reference);
    let interval = i128::from(interval_ns);
    let steps = offset.div_euclid(interval) + i128::from(offset.rem_euclid(interval) != 0);
    let g = i128::from(reference) + steps * interval;
    g.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The resampling state machine, without I/O: feed it events with [`Resampler::ingest`],
/// collect what is due with [`Resampler::pump`].
pub struct Resampler {
    params: Params,
    sessions: Vec<SessionState>,
    /// Newest event time seen.
    watermark: i64,
    /// `pump` has nothing to do before the watermark reaches this.
    wake_at: i64,
    /// Some session is closing.
    closing: bool,
    errors: u64,
    malformed: u64,
}

impl Resampler {
    pub fn new(config: &ResampleConfig) -> Self {
        let ms = |v: u64| (v.min(MAX_DURATION_MS) as i64) * 1_000_000;
        Self {
            params: Params {
                interval_ns: ms(config.interval_ms.max(1)),
                lag_ns: ms(config.lag_ms),
                max_gap_ns: ms(config.max_gap_ms),
                max_hold_ns: ms(config.max_hold_ms),
                wait_ns: ms(config.metadata_wait_ms),
                wait_wall: std::time::Duration::from_millis(config.metadata_wait_wall_ms),
                reference: config.reference,
                emit_before_reference: config.emit_before_reference,
            },
            sessions: Vec::new(),
            watermark: i64::MIN,
            wake_at: i64::MIN,
            closing: false,
            errors: 0,
            malformed: 0,
        }
    }

    /// Errors (malformed input) since the last call.
    pub fn take_errors(&mut self) -> u64 {
        std::mem::take(&mut self.errors)
    }

    /// Total samples held for all cars of all sessions (for tests and diagnostics).
    pub fn samples_held(&self) -> usize {
        self.sessions
            .iter()
            .flat_map(|s| s.cars.iter())
            .map(|c| c.samples.len())
            .sum()
    }

    fn session(&mut self, key: &SessionKey, t: i64) -> &mut SessionState {
        let found = self
            .sessions
            .iter()
            .position(|s| Arc::ptr_eq(&s.key, key) || s.key == *key);
        let index = match found {
            Some(index) => index,
            None => {
                if self.sessions.len() >= MAX_SESSIONS {
                    if let Some(oldest) = self
                        .sessions
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, s)| s.last_activity)
                        .map(|(i, _)| i)
                    {
                        let dropped = self.sessions.remove(oldest);
                        tracing::warn!(
                            session = %dropped.key,
                            "resample: more than {MAX_SESSIONS} sessions at once; dropping the least recently active"
                        );
                    }
                }
                self.sessions
                    .push(SessionState::new(key.clone(), t, &self.params));
                self.wake_at = i64::MIN;
                self.sessions.len() - 1
            }
        };
        let session = &mut self.sessions[index];
        session.last_activity = session.last_activity.max(t);
        session
    }

    fn malformed(&mut self, what: &str) {
        self.errors += 1;
        self.malformed += 1;
        if should_log(self.malformed) {
            tracing::warn!(
                count = self.malformed,
                "resample: skipping malformed input: {what}"
            );
        }
    }

    /// Take one event in. Nothing is emitted here: call [`Resampler::pump`] after.
    pub fn ingest(&mut self, event: &Event) {
        let t = event.time_ns;
        if t < self.watermark.saturating_sub(BACKWARD_RESET_NS) {
            // Event time jumped far back (a replay that loops): follow it, or every frame of
            // the new pass would be "due" before its samples arrive.
            tracing::debug!("resample: event time jumped back; following it");
            self.watermark = t;
            self.wake_at = i64::MIN;
        }
        self.watermark = self.watermark.max(t);
        match &event.record {
            Record::Position(p) => {
                if !(p.x.is_finite() && p.y.is_finite()) {
                    self.malformed("position with a non-finite coordinate");
                    return;
                }
                if p.x == 0.0 && p.y == 0.0 {
                    return; // car not placed
                }
                let session = self.session(&p.session_key, t);
                session.add_sample(p.car, Sample { t, x: p.x, y: p.y });
                if session.next_grid.is_none() {
                    self.wake_at = i64::MIN;
                }
            }
            Record::RacePosition(p) => {
                self.session(&p.session_key, t)
                    .add_position(p.car, t, p.position);
            }
            Record::RaceMetadata(m) => {
                if self.params.reference != Reference::RaceMetadata {
                    return;
                }
                let start = if m.reference_start_ns != 0 {
                    Some(m.reference_start_ns)
                } else {
                    parse_iso8601_ns(&m.reference_start_time)
                };
                let Some(start) = start else {
                    self.malformed("race_metadata without a readable reference_start_time");
                    return;
                };
                let session = self.session(&m.session_key, t);
                match session.reference {
                    None => {
                        session.reference = Some(start);
                        self.wake_at = i64::MIN;
                    }
                    Some(current) if current != start => tracing::debug!(
                        session = %m.session_key,
                        "resample: ignoring a later race_metadata; frames keep their clock"
                    ),
                    Some(_) => {}
                }
            }
            Record::SessionEnd(end) => {
                let session = self.session(&end.session_key, t);
                session.closing = true;
                session.end = Some(event.clone());
                self.closing = true;
            }
            _ => {}
        }
    }

    /// The input has ended: flush every session up to its last sample (no `SessionEnd`).
    pub fn finish(&mut self) {
        for session in &mut self.sessions {
            session.closing = true;
        }
        self.closing = true;
    }

    /// Append what is due to `out`, stopping once `out` holds `limit` events. Returns true
    /// when it stopped for that reason: send `out` and call again.
    pub fn pump(&mut self, out: &mut Vec<Event>, limit: usize) -> bool {
        if !self.closing && self.watermark < self.wake_at {
            return false;
        }
        let params = self.params;
        let watermark = self.watermark;
        let mut wake = i64::MAX;
        let mut i = 0;
        while i < self.sessions.len() {
            let session = &mut self.sessions[i];
            let reference = match session.reference {
                Some(reference) => reference,
                None => {
                    let deadline = session.first_seen.saturating_add(params.wait_ns);
                    let event_waiting = watermark < deadline;
                    let wall_waiting = session.first_seen_wall.elapsed() < params.wait_wall;
                    if !session.closing && (event_waiting || wall_waiting) {
                        // Past the event-time deadline, look again on the next input.
                        wake = wake.min(if event_waiting {
                            deadline
                        } else {
                            watermark.saturating_add(1)
                        });
                        i += 1;
                        continue;
                    }
                    tracing::warn!(
                        session = %session.key,
                        "resample: no race_metadata within {} ms of event time; frame clocks count from the session's first event",
                        params.wait_ns / 1_000_000
                    );
                    session.reference = Some(session.first_seen);
                    session.first_seen
                }
            };
            if session.next_grid.is_none() {
                if let Some(first) = session.first_sample {
                    let start = if params.emit_before_reference {
                        first
                    } else {
                        first.max(reference)
                    };
                    session.next_grid = Some(ceil_grid(reference, params.interval_ns, start));
                    session.first_sample = None;
                }
            }
            if let Some(mut g) = session.next_grid {
                let due = if session.closing {
                    session.last_sample
                } else {
                    watermark.saturating_sub(params.lag_ns)
                };
                while g <= due {
                    if out.len() >= limit {
                        session.next_grid = Some(g);
                        self.wake_at = i64::MIN;
                        return true;
                    }
                    match session.build(g, &params) {
                        Built::Frame(frame) => {
                            out.push(Event::new(g, Record::Frame(Arc::new(frame))));
                            g = g.saturating_add(params.interval_ns);
                        }
                        Built::Empty(next) => {
                            let to = match next {
                                Some(next) => next,
                                None if session.closing => break,
                                None => due.saturating_add(1),
                            };
                            g = ceil_grid(reference, params.interval_ns, to);
                        }
                    }
                    if g == i64::MAX {
                        break;
                    }
                }
                session.next_grid = Some(g);
                if !session.closing {
                    wake = wake.min(g.saturating_add(params.lag_ns));
                }
            }
            if session.closing {
                if out.len() >= limit {
                    self.wake_at = i64::MIN;
                    return true;
                }
                if session.refused_cars > 0 {
                    tracing::warn!(
                        session = %session.key,
                        refused = session.refused_cars,
                        "resample: session had more than {MAX_CARS} cars; the rest were ignored"
                    );
                }
                let session = self.sessions.remove(i);
                if let Some(end) = session.end {
                    out.push(end);
                }
                continue;
            }
            i += 1;
        }
        self.closing = false;
        self.wake_at = wake;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::record::{
        format_iso8601_ns, CarPosition, RaceMetadata, RacePosition, SessionEnd,
    };
    use pitwall_api::testing::run_config;

    /// 2024-05-26T13:00:00Z, a reference start.
    const R: i64 = 1_716_728_400_000_000_000;
    const MS: i64 = 1_000_000;

    fn pos(t_ms: i64, car: u32, x: f64, y: f64) -> Event {
        Event::new(
            R + t_ms * MS,
            Record::Position(CarPosition {
                session_key: "9158".into(),
                car,
                x,
                y,
                z: 0.0,
                spline: None,
            }),
        )
    }

    fn race_pos(t_ms: i64, car: u32, position: u32) -> Event {
        Event::new(
            R + t_ms * MS,
            Record::RacePosition(RacePosition {
                session_key: "9158".into(),
                car,
                position,
            }),
        )
    }

    fn metadata(t_ms: i64, start_ns: i64) -> Event {
        Event::new(
            R + t_ms * MS,
            Record::RaceMetadata(Arc::new(RaceMetadata {
                session_key: "9158".into(),
                reference_start_time: format_iso8601_ns(start_ns),
                reference_start_ns: start_ns,
                ..Default::default()
            })),
        )
    }

    fn tick(t_ms: i64) -> Event {
        Event::new(R + t_ms * MS, Record::Tick)
    }

    fn end(t_ms: i64) -> Event {
        Event::new(
            R + t_ms * MS,
            Record::SessionEnd(SessionEnd {
                session_key: "9158".into(),
            }),
        )
    }

    fn frames(events: &[Event]) -> Vec<Arc<Frame>> {
        events
            .iter()
            .filter_map(|e| match &e.record {
                Record::Frame(f) => Some(f.clone()),
                _ => None,
            })
            .collect()
    }

    /// Feed events one by one, pumping after each, and return everything emitted.
    fn feed(core: &mut Resampler, events: &[Event]) -> Vec<Event> {
        let mut out = Vec::new();
        for event in events {
            core.ingest(event);
            while core.pump(&mut out, usize::MAX) {}
        }
        out
    }

    fn car(frame: &Frame, number: u32) -> Option<FrameCar> {
        frame.cars.iter().copied().find(|c| c.car == number)
    }

    #[test]
    fn interpolates_between_samples_on_the_grid() {
        let mut core = Resampler::new(&ResampleConfig::default());
        let out = feed(
            &mut core,
            &[
                metadata(0, R),
                pos(0, 1, 100.0, 1000.0),
                pos(250, 1, 200.0, 500.0),
                pos(500, 1, 200.0, 1500.0),
                tick(1000),
            ],
        );
        let frames = frames(&out);
        // Due: g + 300 <= 1000 -> g in 0..=700; samples end at 500 so 600, 700 hold.
        let t: Vec<i64> = frames.iter().map(|f| f.t_ms).collect();
        assert_eq!(t, vec![0, 100, 200, 300, 400, 500, 600, 700]);
        let xy: Vec<(f64, f64)> = frames.iter().map(|f| (f.cars[0].x, f.cars[0].y)).collect();
        let expected = [
            (100.0, 1000.0),
            (140.0, 800.0),
            (180.0, 600.0),
            (200.0, 700.0),
            (200.0, 1100.0),
            (200.0, 1500.0),
            (200.0, 1500.0),
            (200.0, 1500.0),
        ];
        for (got, want) in xy.iter().zip(expected) {
            assert!(
                (got.0 - want.0).abs() < 1e-9 && (got.1 - want.1).abs() < 1e-9,
                "{got:?} != {want:?}"
            );
        }
        // Frames carry their grid instant as event time and the session key.
        assert_eq!(out[1].time_ns, R + 100 * MS);
        assert_eq!(&*frames[0].session_key, "9158");
    }

    #[test]
    fn grid_is_aligned_to_the_reference_not_the_first_sample() {
        let mut core = Resampler::new(&ResampleConfig::default());
        let out = feed(
            &mut core,
            &[
                metadata(0, R + 5 * MS), // reference at R + 5 ms
                pos(130, 1, 10.0, 10.0),
                pos(400, 1, 10.0, 10.0),
                tick(900),
            ],
        );
        let frames = frames(&out);
        // Grid: R+5, R+105, R+205, ...; first point at or after the first sample (R+130).
        assert_eq!(out[0].time_ns, R + 205 * MS);
        let t: Vec<i64> = frames.iter().map(|f| f.t_ms).collect();
        assert_eq!(t, vec![200, 300, 400, 500]);
    }

    #[test]
    fn frames_wait_for_the_lag() {
        let mut core = Resampler::new(&ResampleConfig::default());
        let mut out = feed(
            &mut core,
            &[metadata(0, R), pos(0, 1, 1.0, 1.0), pos(270, 1, 2.0, 2.0)],
        );
        // Newest event time 270: only g <= -30 would be due.
        assert!(frames(&out).is_empty());
        out.extend(feed(&mut core, &[tick(299)]));
        assert!(frames(&out).is_empty());
        out.extend(feed(&mut core, &[tick(300)]));
        assert_eq!(
            frames(&out).iter().map(|f| f.t_ms).collect::<Vec<_>>(),
            vec![0]
        );
        out.extend(feed(&mut core, &[tick(450)]));
        assert_eq!(
            frames(&out).iter().map(|f| f.t_ms).collect::<Vec<_>>(),
            vec![0, 100]
        );
    }

    #[test]
    fn holds_across_gaps_and_skips_unplaced_samples() {
        let mut core = Resampler::new(&ResampleConfig::default());
        let out = feed(
            &mut core,
            &[
                metadata(0, R),
                pos(0, 1, 100.0, 100.0),
                pos(100, 1, 0.0, 0.0), // not placed: ignored
                pos(200, 1, 300.0, 100.0),
                pos(3200, 1, 900.0, 900.0), // 3 s later: more than max_gap
                tick(3500),
            ],
        );
        let frames = frames(&out);
        let x_at = |t: i64| {
            frames
                .iter()
                .find(|f| f.t_ms == t)
                .map(|f| f.cars[0].x)
                .unwrap()
        };
        assert_eq!(x_at(100), 200.0); // interpolated over the 0,0 sample
        assert_eq!(x_at(200), 300.0);
        assert_eq!(x_at(1500), 300.0); // held
        assert_eq!(x_at(3100), 300.0); // still held, no interpolation across the gap
        assert_eq!(x_at(3200), 900.0);
    }

    #[test]
    fn race_positions_order_cars_and_apply_at_their_time() {
        let mut core = Resampler::new(&ResampleConfig::default());
        let out = feed(
            &mut core,
            &[
                metadata(0, R),
                race_pos(0, 44, 2),
                race_pos(0, 1, 1),
                pos(0, 1, 1.0, 1.0),
                pos(0, 44, 2.0, 2.0),
                pos(0, 3, 3.0, 3.0),
                pos(0, 2, 4.0, 4.0),
                race_pos(150, 44, 1),
                race_pos(150, 1, 2),
                tick(600),
            ],
        );
        let frames = frames(&out);
        let order = |f: &Frame| {
            f.cars
                .iter()
                .map(|c| (c.car, c.position))
                .collect::<Vec<_>>()
        };
        // Unknown positions (0) last, by car number.
        assert_eq!(order(&frames[0]), vec![(1, 1), (44, 2), (2, 0), (3, 0)]);
        assert_eq!(order(&frames[1]), vec![(1, 1), (44, 2), (2, 0), (3, 0)]);
        assert_eq!(order(&frames[2]), vec![(44, 1), (1, 2), (2, 0), (3, 0)]);
        assert_eq!(car(&frames[2], 3).unwrap().x, 3.0);
    }

    #[test]
    fn cars_without_a_sample_yet_are_left_out() {
        let mut core = Resampler::new(&ResampleConfig::default());
        let out = feed(
            &mut core,
            &[
                metadata(0, R),
                pos(0, 1, 1.0, 1.0),
                pos(250, 2, 5.0, 5.0),
                tick(700),
            ],
        );
        let frames = frames(&out);
        assert_eq!(frames[0].cars.len(), 1);
        assert_eq!(frames[2].cars.len(), 1); // t=200: car 2 starts at 250
        assert_eq!(frames[3].cars.len(), 2);
    }

    #[test]
    fn session_end_flushes_to_the_last_sample_then_forwards() {
        let mut core = Resampler::new(&ResampleConfig::default());
        let mut events = vec![metadata(0, R)];
        for i in 0..=4 {
            events.push(pos(i * 250, 7, i as f64 * 10.0, 0.5));
        }
        let out = feed(&mut core, &events);
        // Newest event time 1000 -> frames up to 700 so far.
        assert_eq!(frames(&out).last().unwrap().t_ms, 700);
        let out = feed(&mut core, &[end(1000)]);
        let t: Vec<i64> = frames(&out).iter().map(|f| f.t_ms).collect();
        assert_eq!(t, vec![800, 900, 1000]);
        assert_eq!(out.last().unwrap().kind(), RecordKind::SessionEnd);
        assert_eq!(car(&frames(&out)[2], 7).unwrap().x, 40.0);
        assert!(core.sessions.is_empty());
    }

    #[test]
    fn falls_back_to_the_first_event_without_metadata() {
        let mut core = Resampler::new(&ResampleConfig {
            metadata_wait_wall_ms: 0,
            ..ResampleConfig::default()
        });
        let mut out = feed(&mut core, &[pos(50, 1, 1.0, 1.0), tick(1900)]);
        assert!(out.is_empty(), "still waiting for race_metadata");
        out.extend(feed(&mut core, &[tick(2050)]));
        let frames = frames(&out);
        // Reference = first event (R+50); frames at R+50, R+150, ...
        assert_eq!(frames[0].t_ms, 0);
        assert_eq!(out[0].time_ns, R + 50 * MS);
        // A later race_metadata does not move the clock.
        let later = feed(&mut core, &[metadata(2100, R), tick(2500)]);
        let later_frames = self::frames(&later);
        assert_eq!(later_frames.len(), 4);
        for (event, frame) in later.iter().zip(&later_frames) {
            assert_eq!(event.time_ns, R + 50 * MS + frame.t_ms * MS);
        }
    }

    #[test]
    fn first_event_reference_and_metadata_from_text() {
        let config = ResampleConfig {
            reference: Reference::FirstEvent,
            ..Default::default()
        };
        let mut core = Resampler::new(&config);
        let out = feed(&mut core, &[pos(30, 1, 1.0, 1.0), tick(400)]);
        assert_eq!(out[0].time_ns, R + 30 * MS);
        assert_eq!(frames(&out)[0].t_ms, 0);

        // race_metadata read back from JSON has no reference_start_ns: the text is used.
        let mut core = Resampler::new(&ResampleConfig::default());
        let mut meta = metadata(0, R + 20 * MS);
        if let Record::RaceMetadata(m) = &mut meta.record {
            Arc::make_mut(m).reference_start_ns = 0;
        }
        let out = feed(&mut core, &[meta, pos(0, 1, 1.0, 1.0), tick(600)]);
        assert_eq!(out[0].time_ns, R + 20 * MS);
    }

    #[test]
    fn no_frames_before_the_reference_unless_asked() {
        let events = [
            metadata(0, R + 10_000 * MS),
            pos(0, 1, 1.0, 1.0),
            pos(9_900, 1, 2.0, 2.0),
            pos(10_200, 1, 3.0, 3.0),
            tick(11_000),
        ];
        let mut core = Resampler::new(&ResampleConfig::default());
        let out = frames(&feed(&mut core, &events));
        assert_eq!(out[0].t_ms, 0);
        assert!(out.iter().all(|f| f.t_ms >= 0));

        let config = ResampleConfig {
            emit_before_reference: true,
            ..Default::default()
        };
        let mut core = Resampler::new(&config);
        let out = frames(&feed(&mut core, &events));
        assert_eq!(out[0].t_ms, -10_000);
    }

    #[test]
    fn history_stays_small_and_absurd_times_do_not_hang() {
        let mut core = Resampler::new(&ResampleConfig::default());
        let mut events = vec![metadata(0, R)];
        for i in 0..20_000 {
            for car in 1..=20 {
                events.push(pos(i * 270, car, 100.0 + i as f64, 50.0));
            }
        }
        let out = feed(&mut core, &events);
        assert!(
            core.samples_held() <= 20 * 4,
            "held {}",
            core.samples_held()
        );
        assert_eq!(frames(&out).len() as i64, (19_999 * 270 - 300) / 100 + 1);
        // A sample a century ahead, then time jumps there: the grid skips, it does not crawl.
        let century = 100 * 365 * 86_400_000;
        let start = std::time::Instant::now();
        let out = feed(
            &mut core,
            &[pos(century, 1, 5.0, 5.0), tick(century + 1000)],
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        // Held frames until max_hold (60 s), then the frames of the far sample.
        let frames = frames(&out);
        assert!(frames.len() < 700, "{} frames", frames.len());
        assert_eq!(frames.last().unwrap().t_ms, century + 700);
    }

    #[test]
    fn out_of_order_and_duplicate_samples() {
        let mut core = Resampler::new(&ResampleConfig::default());
        let out = feed(
            &mut core,
            &[
                metadata(0, R),
                pos(0, 1, 0.5, 0.5),
                pos(200, 1, 20.0, 20.0),
                pos(100, 1, 99.0, 99.0), // late but still useful
                pos(200, 1, 30.0, 30.0), // replaces the sample at 200
                tick(600),
            ],
        );
        let frames = frames(&out);
        assert_eq!(frames[1].cars[0].x, 99.0);
        assert_eq!(frames[2].cars[0].x, 30.0);
    }

    #[test]
    fn a_looping_replay_resamples_every_pass() {
        let mut pass = vec![metadata(0, R)];
        for i in 0..400 {
            pass.push(pos(i * 250, 1, i as f64, 1.0));
        }
        pass.push(end(100_000));
        let mut core = Resampler::new(&ResampleConfig::default());
        let first = feed(&mut core, &pass);
        let second = feed(&mut core, &pass);
        assert_eq!(frames(&first).len(), 998);
        assert_eq!(first, second);
    }

    #[tokio::test]
    async fn component_flushes_and_forwards_session_end() {
        let mut events = vec![metadata(0, R)];
        for i in 0..10 {
            events.push(pos(i * 270, 16, i as f64, 1.0));
        }
        events.push(end(2430));
        let out = run_config::<ResampleConfig>("interval_ms = 500", events).await;
        let t: Vec<i64> = frames(&out).iter().map(|f| f.t_ms).collect();
        assert_eq!(t, vec![0, 500, 1000, 1500, 2000]);
        assert_eq!(out.len(), 6);
        assert_eq!(out[5].kind(), RecordKind::SessionEnd);
        // Input ended without SessionEnd: frames are still flushed, nothing else.
        let out = run_config::<ResampleConfig>(
            "reference = \"first_event\"",
            vec![pos(0, 1, 1.0, 1.0), pos(250, 1, 2.0, 2.0)],
        )
        .await;
        assert_eq!(frames(&out).len(), 3);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn options_are_checked() {
        let config: ResampleConfig = pitwall_api::testing::parse_config("interval_ms = 0");
        assert_eq!(config.check()[0].key, "interval_ms");
        let config: ResampleConfig = pitwall_api::testing::parse_config("lag_ms = 100000000");
        assert_eq!(config.check()[0].key, "lag_ms");
        assert!(ResampleConfig::default().check().is_empty());
    }
}
