//! Transform `lap_timer`: lap and sector times from car positions.
//!
//! Sources that report where cars are but not when they cross lines (Emperor / Assetto
//! Corsa Server Manager race control, simulators, GPS trackers) get lap and sector times
//! here. Timing gates are given one of two ways:
//!
//! - `gates`: normalised spline positions of the sector ends, e.g. `[0.33, 0.66]`; 0.0 is
//!   the start/finish line and is implied. Needs positions with `spline`. A step from about
//!   1.0 to about 0.0 is a start/finish crossing. Steps backwards are not crossings: a car
//!   must get past the furthest point it reached before a gate counts again, so reversing
//!   over a line and driving on does not time a gate twice. A step forward of more than
//!   `max_jump` (a teleport to the pits, a reset) cancels the lap in progress.
//! - `lines`: line segments `[x1, y1, x2, y2]` in the positions' x/y frame, the first being
//!   start/finish. A gate counts when the path between two samples crosses its segment.
//!   Each line's forward direction is the direction of its first crossing; a crossing the
//!   other way is backwards motion, and the next forward crossing of that line only undoes
//!   it. A step longer than `max_jump_m` cancels the lap in progress.
//!
//! The crossing instant is interpolated linearly between the two samples that straddle the
//! gate. Samples further apart than `max_gap_ms` (a car that stopped reporting) also cancel
//! the lap in progress, as does crossing a sector gate out of order.
//!
//! Per car (session and car number) it emits:
//!
//! - a [`Lap`] at each start/finish crossing after the first: `lap_number` counts the car's
//!   laps from 1 (the lap begun at its first crossing), `date_start` is the lap's start,
//!   `lap_duration` its time, `duration_sector_1..3` the sector times when there are 2 or 3
//!   sectors (more sectors than 3 do not fit the record: see `best_sectors`). A lap that was
//!   cancelled is still emitted, with no times, so lap numbers stay right. The event time is
//!   the interpolated crossing instant;
//! - with `best_sectors = true` (default), a `json` record whenever one of the car's bests
//!   improves: `{"record": "best_sectors", "session_key", "driver_number", "best_lap",
//!   "best_sectors": [s1, s2, ...], "ideal_lap"}` (seconds; `null` while unknown; `ideal_lap` is
//!   the sum of the best sectors once all are known). A sector's time counts as soon as it is
//!   completed, even if the lap is later cancelled.
//!
//! `SessionEnd` drops the session's state; ticks are ignored. Nothing else is forwarded.
//!
//! ```toml
//! [transforms.timing]
//! type = "lap_timer"
//! inputs = ["race"]
//! gates = [0.33, 0.66]        # spline positions of sector ends (0.0 = start/finish)
//! # lines = [[x1, y1, x2, y2], ...]   # or line gates in x/y, start/finish first
//! max_jump = 0.1              # spline: a longer step forward is a teleport
//! max_jump_m = 200.0          # lines: a longer step is a teleport
//! max_gap_ms = 5000           # samples further apart cancel the lap in progress
//! best_sectors = true         # emit best sector / best lap updates as json records
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::record::{format_iso8601_ns, Lap, SessionKey};
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io, Kinds,
    Record, RecordKind, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LapTimerConfig {
    /// Spline positions (0 < g < 1, increasing) where sectors end; start/finish (0.0) is
    /// implied. Used when `lines` is empty.
    #[serde(default)]
    pub gates: Vec<f64>,
    /// Line gates `[x1, y1, x2, y2]` in the positions' x/y frame; the first is start/finish.
    #[serde(default)]
    pub lines: Vec<[f64; 4]>,
    /// Spline mode: a step forward longer than this (fraction of a lap) is a teleport and
    /// cancels the lap in progress.
    #[serde(default = "default_max_jump")]
    pub max_jump: f64,
    /// Lines mode: a step longer than this (x/y units) is a teleport.
    #[serde(default = "default_max_jump_m")]
    pub max_jump_m: f64,
    /// Two samples further apart than this (ms of event time) cancel the lap in progress.
    #[serde(default = "default_max_gap_ms")]
    pub max_gap_ms: u64,
    /// Emit a `json` record `best_sectors` when a car's best lap or a best sector improves.
    #[serde(default = "default_true")]
    pub best_sectors: bool,
}

fn default_max_jump() -> f64 {
    0.1
}
fn default_max_jump_m() -> f64 {
    200.0
}
fn default_max_gap_ms() -> u64 {
    5000
}
fn default_true() -> bool {
    true
}

impl ComponentConfig for LapTimerConfig {
    fn emits(&self) -> Kinds {
        if self.best_sectors {
            Kinds::of(&[RecordKind::Lap, RecordKind::Json])
        } else {
            Kinds::of(&[RecordKind::Lap])
        }
    }

    fn accepts(&self) -> Kinds {
        Kinds::of(&[
            RecordKind::Position,
            RecordKind::Tick,
            RecordKind::SessionEnd,
        ])
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if !self.gates.is_empty() && !self.lines.is_empty() {
            problems.push(OptionProblem::new(
                "lines",
                "give either `gates` (spline positions) or `lines` (x/y segments), not both",
            ));
        }
        let mut last = 0.0;
        for (i, g) in self.gates.iter().enumerate() {
            if !(g.is_finite() && *g > last && *g < 1.0) {
                problems.push(OptionProblem::new(
                    format!("gates[{i}]"),
                    format!("must be increasing and between 0 and 1 (exclusive), not {g}"),
                ));
                break;
            }
            last = *g;
        }
        for (i, line) in self.lines.iter().enumerate() {
            if line.iter().any(|v| !v.is_finite()) || (line[0] == line[2] && line[1] == line[3]) {
                problems.push(OptionProblem::new(
                    format!("lines[{i}]"),
                    "must be two different points [x1, y1, x2, y2]",
                ));
            }
        }
        if !(self.max_jump.is_finite() && self.max_jump > 0.0 && self.max_jump < 0.5) {
            problems.push(OptionProblem::new(
                "max_jump",
                "must be a fraction of a lap between 0 and 0.5",
            ));
        }
        if !(self.max_jump_m.is_finite() && self.max_jump_m > 0.0) {
            problems.push(OptionProblem::new("max_jump_m", "must be positive"));
        }
        if self.max_gap_ms == 0 {
            problems.push(OptionProblem::new("max_gap_ms", "must be at least 1"));
        }
        problems
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        Ok(Box::new(LapTimerComponent {
            timer: LapTimer::new(self),
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<LapTimerConfig>(
        "lap_timer",
        Role::Transform,
        "Lap and sector times from positions crossing spline or line gates",
    )
}

struct LapTimerComponent {
    timer: LapTimer,
}

#[async_trait]
impl Component for LapTimerComponent {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let Some(input) = io.input.as_mut() else {
            return Ok(());
        };
        while let Some(batch) = input.recv().await {
            let mut out = Vec::new();
            for event in batch.iter() {
                self.timer.observe(event, &mut out);
            }
            if !out.is_empty() {
                io.output.send(out).await;
            }
        }
        Ok(())
    }
}

enum Mode {
    /// Sector-end spline positions, start/finish (0.0) first.
    Spline(Vec<f64>),
    Lines(Vec<[f64; 4]>),
}

/// One car's timing state.
#[derive(Default)]
struct CarTimer {
    /// Last sample: time and (spline mode) unwrapped progress or (lines mode) x/y.
    last: Option<(i64, f64, f64)>,
    /// Spline mode: furthest unwrapped progress reached.
    high_water: f64,
    /// Lines mode: learnt forward sign per line, and forward crossings owed after going back.
    direction: Vec<f64>,
    owed: Vec<u32>,
    /// Start of the lap in progress (None before the first start/finish crossing).
    lap_start: Option<i64>,
    /// Crossing times of the sector gates in this lap.
    crossings: Vec<Option<i64>>,
    /// The lap in progress lost its timing (teleport, gap, gate out of order).
    cancelled: bool,
    laps: u32,
    best_lap: Option<f64>,
    best_sectors: Vec<Option<f64>>,
}

/// The timing rules, without I/O.
pub struct LapTimer {
    mode: Mode,
    max_jump: f64,
    max_jump_m: f64,
    max_gap_ns: i64,
    emit_best: bool,
    cars: HashMap<(SessionKey, u32), CarTimer>,
}

/// Where a segment from a to b crosses the segment p-q: (fraction along a-b, side sign).
fn segment_crossing(a: (f64, f64), b: (f64, f64), line: &[f64; 4]) -> Option<(f64, f64)> {
    let (p, q) = ((line[0], line[1]), (line[2], line[3]));
    let r = (b.0 - a.0, b.1 - a.1);
    let s = (q.0 - p.0, q.1 - p.1);
    let denom = r.0 * s.1 - r.1 * s.0;
    if denom == 0.0 {
        return None;
    }
    let ap = (p.0 - a.0, p.1 - a.1);
    let t = (ap.0 * s.1 - ap.1 * s.0) / denom;
    let u = (ap.0 * r.1 - ap.1 * r.0) / denom;
    // Half-open on the path so a sample exactly on the line counts once.
    if t > 0.0 && t <= 1.0 && (0.0..=1.0).contains(&u) {
        Some((t, denom.signum()))
    } else {
        None
    }
}

impl LapTimer {
    pub fn new(config: &LapTimerConfig) -> Self {
        let mode = if config.lines.is_empty() {
            let mut gates = vec![0.0];
            gates.extend(config.gates.iter().copied());
            Mode::Spline(gates)
        } else {
            Mode::Lines(config.lines.clone())
        };
        Self {
            mode,
            max_jump: config.max_jump,
            max_jump_m: config.max_jump_m,
            max_gap_ns: i64::try_from(config.max_gap_ms.saturating_mul(1_000_000))
                .unwrap_or(i64::MAX),
            emit_best: config.best_sectors,
            cars: HashMap::new(),
        }
    }

    fn gate_count(&self) -> usize {
        match &self.mode {
            Mode::Spline(gates) => gates.len(),
            Mode::Lines(lines) => lines.len(),
        }
    }

    /// Take one event in; Laps and best-sector records go to `out`.
    pub fn observe(&mut self, event: &Event, out: &mut Vec<Event>) {
        let position = match &event.record {
            Record::Position(p) => p,
            Record::SessionEnd(end) => {
                self.cars.retain(|(key, _), _| *key != end.session_key);
                return;
            }
            _ => return,
        };
        let t = event.time_ns;
        let gates = self.gate_count();
        let key = (position.session_key.clone(), position.car);
        let mut crossings: Vec<(i64, usize)> = Vec::new();
        let car = self.cars.entry(key.clone()).or_insert_with(|| CarTimer {
            crossings: vec![None; gates.saturating_sub(1)],
            best_sectors: vec![None; gates],
            direction: vec![0.0; gates],
            owed: vec![0; gates],
            ..Default::default()
        });
        match &self.mode {
            Mode::Spline(gate_positions) => {
                let Some(s) = position.spline.filter(|s| s.is_finite()) else {
                    return;
                };
                let Some((t0, u0, _)) = car.last else {
                    car.last = Some((t, s, 0.0));
                    car.high_water = s;
                    return;
                };
                if t <= t0 {
                    return; // out of order or duplicate
                }
                let mut d = s - u0.rem_euclid(1.0);
                if d < -0.5 {
                    d += 1.0;
                } else if d > 0.5 {
                    d -= 1.0;
                }
                let u1 = u0 + d;
                car.last = Some((t, u1, 0.0));
                if t - t0 > self.max_gap_ns || d > self.max_jump {
                    car.cancelled = true;
                    car.high_water = u1;
                    return;
                }
                if d <= 0.0 || u1 <= car.high_water {
                    car.high_water = car.high_water.max(u1);
                    return; // backwards, or catching up to where it had been
                }
                let from = car.high_water.max(u0);
                let lap_base = from.floor();
                // Gates between `from` (exclusive) and `u1` (inclusive), in order.
                'laps: for lap in [lap_base, lap_base + 1.0] {
                    for (i, g) in gate_positions.iter().enumerate() {
                        let p = lap + g;
                        if p > u1 {
                            break 'laps;
                        }
                        if p > from {
                            let frac = (p - u0) / (u1 - u0);
                            crossings.push((t0 + ((t - t0) as f64 * frac).round() as i64, i));
                        }
                    }
                }
                car.high_water = u1;
            }
            Mode::Lines(lines) => {
                let here = (position.x, position.y);
                let Some((t0, x0, y0)) = car.last else {
                    car.last = Some((t, here.0, here.1));
                    return;
                };
                if t <= t0 {
                    return;
                }
                car.last = Some((t, here.0, here.1));
                let step = (here.0 - x0).hypot(here.1 - y0);
                if t - t0 > self.max_gap_ns || step > self.max_jump_m {
                    car.cancelled = true;
                    return;
                }
                let mut found: Vec<(f64, usize, f64)> = lines
                    .iter()
                    .enumerate()
                    .filter_map(|(i, line)| {
                        segment_crossing((x0, y0), here, line).map(|(f, sign)| (f, i, sign))
                    })
                    .collect();
                found.sort_by(|a, b| a.0.total_cmp(&b.0));
                for (frac, i, sign) in found {
                    if car.direction[i] == 0.0 {
                        car.direction[i] = sign;
                    }
                    if sign != car.direction[i] {
                        car.owed[i] += 1;
                        continue;
                    }
                    if car.owed[i] > 0 {
                        car.owed[i] -= 1;
                        continue;
                    }
                    crossings.push((t0 + ((t - t0) as f64 * frac).round() as i64, i));
                }
            }
        }
        for (time, gate) in crossings {
            Self::cross(car, &key, time, gate, gates, self.emit_best, out);
        }
    }

    /// A car crossed `gate` (0 = start/finish) at `time`.
    fn cross(
        car: &mut CarTimer,
        key: &(SessionKey, u32),
        time: i64,
        gate: usize,
        gates: usize,
        emit_best: bool,
        out: &mut Vec<Event>,
    ) {
        let mut improved = false;
        // The sector ending here: sector `gate` for sector gates, the last one at start/finish.
        let sector = if gate == 0 { gates - 1 } else { gate - 1 };
        let sector_start = if sector == 0 {
            car.lap_start
        } else {
            car.crossings[sector - 1]
        };
        let sector_time = match sector_start {
            Some(start) if !car.cancelled && car.lap_start.is_some() => {
                Some((time - start) as f64 / 1e9)
            }
            _ => None,
        };
        if gate > 0 {
            let in_order = car.crossings[..gate - 1].iter().all(Option::is_some)
                && car.crossings[gate - 1].is_none();
            if car.lap_start.is_none() || !in_order {
                car.cancelled = true;
            } else {
                car.crossings[gate - 1] = Some(time);
            }
        }
        if let Some(seconds) = sector_time.filter(|_| gate == 0 || !car.cancelled) {
            if car.best_sectors[sector].is_none_or(|best| seconds < best) {
                car.best_sectors[sector] = Some(seconds);
                improved = true;
            }
        }
        if gate == 0 {
            if let Some(start) = car.lap_start {
                car.laps += 1;
                let complete = !car.cancelled && car.crossings.iter().all(Option::is_some);
                let mut lap = Lap {
                    session_key: key.0.clone(),
                    driver_number: key.1,
                    lap_number: car.laps,
                    date_start: Some(format_iso8601_ns(start)),
                    ..Default::default()
                };
                if complete {
                    let duration = (time - start) as f64 / 1e9;
                    lap.lap_duration = Some(duration);
                    if (2..=3).contains(&gates) {
                        let mut bounds = vec![start];
                        bounds.extend(car.crossings.iter().flatten());
                        bounds.push(time);
                        let sectors: Vec<f64> = bounds
                            .windows(2)
                            .map(|w| (w[1] - w[0]) as f64 / 1e9)
                            .collect();
                        lap.duration_sector_1 = sectors.first().copied();
                        lap.duration_sector_2 = sectors.get(1).copied();
                        lap.duration_sector_3 = sectors.get(2).copied();
                    }
                    if car.best_lap.is_none_or(|best| duration < best) {
                        car.best_lap = Some(duration);
                        improved = true;
                    }
                }
                out.push(Event::new(time, Record::Lap(Arc::new(lap))));
            } else {
                car.laps = 0;
            }
            car.lap_start = Some(time);
            car.crossings.iter_mut().for_each(|c| *c = None);
            car.cancelled = false;
        }
        if improved && emit_best {
            let ideal = car.best_sectors.iter().copied().sum::<Option<f64>>();
            out.push(Event::new(
                time,
                Record::Json(Arc::new(serde_json::json!({
                    "record": "best_sectors",
                    "session_key": key.0.as_ref(),
                    "driver_number": key.1,
                    "best_lap": car.best_lap,
                    "best_sectors": car.best_sectors,
                    "ideal_lap": ideal,
                }))),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::record::{CarPosition, SessionEnd};
    use pitwall_api::testing::{parse_config, run_config};

    const MS: i64 = 1_000_000;

    fn spline(t_ms: i64, car: u32, s: f64) -> Event {
        Event::new(
            t_ms * MS,
            Record::Position(CarPosition {
                session_key: "s".into(),
                car,
                x: 0.0,
                y: 0.0,
                z: 0.0,
                spline: Some(s),
            }),
        )
    }

    fn xy(t_ms: i64, x: f64, y: f64) -> Event {
        Event::new(
            t_ms * MS,
            Record::Position(CarPosition {
                session_key: "s".into(),
                car: 7,
                x,
                y,
                z: 0.0,
                spline: None,
            }),
        )
    }

    /// (event time, car, lap number, duration, sectors)
    type LapRow = (i64, u32, u32, Option<f64>, [Option<f64>; 3]);

    fn laps(out: &[Event]) -> Vec<LapRow> {
        out.iter()
            .filter_map(|e| match &e.record {
                Record::Lap(l) => Some((
                    e.time_ns,
                    l.driver_number,
                    l.lap_number,
                    l.lap_duration,
                    [
                        l.duration_sector_1,
                        l.duration_sector_2,
                        l.duration_sector_3,
                    ],
                )),
                _ => None,
            })
            .collect()
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[tokio::test]
    async fn spline_gates_interpolate_crossings_and_wrap() {
        // 0.25 per second; gates at 0.25 and 0.5 (exact in binary, so times are exact).
        let events = vec![
            spline(0, 1, 0.9),
            spline(1000, 1, 0.15), // wraps: S/F crossed at 400 ms
            spline(1500, 1, 0.3),  // 0.25 crossed at 1000 + 0.1/0.15*500 = 1333.33 ms
            spline(2000, 1, 0.45),
            spline(2200, 1, 0.55), // 0.5 crossed at 2100 ms
            spline(3000, 1, 0.8),
            spline(4000, 1, 0.95),
            spline(4200, 1, 0.05), // S/F at 4100 ms
        ];
        let out = run_config::<LapTimerConfig>(
            "gates = [0.25, 0.5]\nmax_jump = 0.3\nbest_sectors = false",
            events,
        )
        .await;
        let got = laps(&out);
        assert_eq!(got.len(), 1, "{got:?}");
        let (t, car, n, duration, sectors) = got[0];
        assert_eq!((t, car, n), (4100 * MS, 1, 1));
        assert!(close(duration, 3.7), "{duration:?}");
        // 1333.333.. ms rounded to the ns.
        assert!(close(sectors[0], 0.933_333_333), "{sectors:?}");
        assert!(close(sectors[1], 0.766_666_667), "{sectors:?}");
        assert!(close(sectors[2], 2.0), "{sectors:?}");
    }

    #[tokio::test]
    async fn backwards_motion_and_teleports() {
        let events = vec![
            spline(0, 2, 0.99),
            spline(100, 2, 0.01), // S/F at 50 ms: lap 1 starts
            spline(200, 2, 0.98), // backwards over the line: nothing
            spline(300, 2, 0.03), // forward again: not a new lap
            spline(400, 2, 0.5),  // teleport (0.47 > max_jump): lap 1 cancelled
            spline(500, 2, 0.55),
            spline(5000, 2, 0.8),
            spline(10_000, 2, 0.99),
            spline(10_100, 2, 0.01), // S/F at 10050: lap 1 ends untimed, lap 2 starts
            spline(11_000, 2, 0.09),
        ];
        let out = run_config::<LapTimerConfig>("max_jump = 0.45", events.clone()).await;
        assert_eq!(
            laps(&out)
                .iter()
                .map(|l| (l.0 / MS, l.2, l.3))
                .collect::<Vec<_>>(),
            vec![(10_050, 1, None)],
            "a jump of 0.47 is a teleport"
        );
        // With a generous max_jump the lap is timed: backwards motion still adds no lap.
        let out = run_config::<LapTimerConfig>("max_jump = 0.49", events).await;
        let got = laps(&out);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(close(got[0].3, 10.0), "{got:?}");
        // Best lap record for car 2.
        let best: Vec<&serde_json::Value> = out
            .iter()
            .filter_map(|e| match &e.record {
                Record::Json(v) => Some(v.as_ref()),
                _ => None,
            })
            .collect();
        assert_eq!(best.len(), 1, "{best:?}");
        assert_eq!(best[0]["record"], "best_sectors");
        assert_eq!(best[0]["driver_number"], 2);
        assert_eq!(best[0]["best_lap"], 10.0);
        assert_eq!(best[0]["ideal_lap"], 10.0);
    }

    #[tokio::test]
    async fn line_gates() {
        // Start/finish: vertical line x = 0 for y in [-10, 10]; sector line x = 100.
        // The car drives an oval: east along y = 0, back west along y = 50 (outside the
        // lines), then east again.
        let config =
            "lines = [[0.0, -10.0, 0.0, 10.0], [100.0, -10.0, 100.0, 10.0]]\nbest_sectors = false";
        let events = vec![
            xy(0, -10.0, 0.0),
            xy(1000, 30.0, 0.0),  // crosses x=0 at 250 ms: lap starts
            xy(2000, 20.0, 0.0),  // backwards over nothing
            xy(3000, -5.0, 0.0),  // backwards over S/F: owed
            xy(4000, 10.0, 0.0),  // forward over S/F: only undoes it
            xy(5000, 110.0, 0.0), // sector line x=100 at 4900 ms
            xy(6000, 110.0, 50.0),
            xy(7000, -10.0, 50.0),
            xy(8000, -10.0, 0.0),
            xy(9000, 10.0, 0.0), // S/F at 8500 ms
        ];
        let out = run_config::<LapTimerConfig>(config, events).await;
        let got = laps(&out);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, 8500 * MS);
        assert!(close(got[0].3, 8.25), "{got:?}");
        assert!(close(got[0].4[0], 4.65), "{got:?}");
        assert!(close(got[0].4[1], 3.6), "{got:?}");
        assert_eq!(got[0].4[2], None);
    }

    #[tokio::test]
    async fn session_end_forgets_and_cars_are_separate() {
        let out = run_config::<LapTimerConfig>(
            "max_jump = 0.4\nbest_sectors = false",
            vec![
                spline(0, 1, 0.9),
                spline(0, 3, 0.9),
                spline(500, 1, 0.1),
                Event::new(
                    600 * MS,
                    Record::SessionEnd(SessionEnd {
                        session_key: "s".into(),
                    }),
                ),
                spline(1000, 3, 0.95),
                spline(1100, 3, 0.05), // lap 1 starts
                spline(1500, 3, 0.3),
                spline(2000, 3, 0.6),
                spline(2500, 3, 0.85),
                spline(3000, 3, 0.95),
                spline(3100, 3, 0.05), // lap 1 ends
                spline(3500, 1, 0.2),  // car 1 starts over after the session end
            ],
        )
        .await;
        let got: Vec<(u32, u32)> = laps(&out).iter().map(|l| (l.1, l.2)).collect();
        assert_eq!(got, vec![(3, 1)]);
    }

    #[test]
    fn options_are_checked() {
        let config: LapTimerConfig =
            parse_config("gates = [0.5, 0.4]\nlines = [[0.0, 0.0, 0.0, 0.0]]\nmax_jump = 0.7");
        let keys: Vec<String> = config.check().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["lines", "gates[1]", "lines[0]", "max_jump"]);
        let config: LapTimerConfig = parse_config("gates = [0.33, 0.66]");
        assert!(config.check().is_empty());
    }
}
