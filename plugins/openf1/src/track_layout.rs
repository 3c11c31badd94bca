//! Transform `track_layout`: the circuit map and the race facts the Cardputer asks for.
//!
//! From the facts of a session it builds the two documents of FORMATS.md section 3, as
//! [`TrackLayout`] and [`RaceMetadata`] records (their serialised shapes are the documents):
//!
//! - **track_path**: the circuit outline. From the MultiViewer circuit JSON named by
//!   `circuit_info` when set (its `x[]`/`y[]`, same frame as OpenF1 `location`), otherwise
//!   from the [`ReferencePath`] of kind `lap` (the fastest lap's location samples, which the
//!   `openf1` source emits; its ends are joined into a loop). Thinned to at most `max_points` points with Ramer-Douglas-Peucker,
//!   which keeps corners and drops points along straights.
//! - **pit_path**: the [`ReferencePath`] of kind `pit_lane`, thinned the same way (empty
//!   until one arrives).
//! - **sector_points**: `Start/Finish` where the lap path starts (at the lap's `date_start`),
//!   `Sector 1 End` and `Sector 2 End` where the car was at `date_start + s1` and
//!   `date_start + s1 + s2` (positions interpolated in time between samples; sector
//!   durations from the path, else from the matching [`Lap`]). With `circuit_info` and no lap
//!   path yet, `Start/Finish` is the outline's first point (MultiViewer outlines start at the
//!   line) and the sector ends split the outline's length in thirds: an approximation until
//!   a timed lap is known.
//! - **bounds**: min/max over the emitted track and pit points.
//! - **race_metadata**: `reference_start_time` is the pole sitter's lap-1 start minus
//!   `lead_in_s` (20 s is the Pocket Pitwall convention, and frame clocks count from it; see
//!   [`crate::race::reference_start_ns`]); `race_winner` and `podium_drivers` come from
//!   [`SessionResultEntry`] positions 1 to 3, or, before there is a result, from the latest
//!   [`RacePosition`]s; `fastest_lap` is the quickest lap with a duration, preferring laps
//!   whose three sector times are known.
//!
//! Both documents are kept per session. After each input batch a document is emitted only
//! if it differs from the one last emitted for that session: a live session grows lap by
//! lap, while a replay sends all its facts in one preamble batch and gets one emission.
//! On [`SessionEnd`](Record::SessionEnd) both are emitted again as final versions.
//!
//! ```toml
//! [transforms.layout]
//! type = "track_layout"
//! inputs = ["f1"]
//! # circuit_info = "monza-2024.json"  # MultiViewer circuit JSON, relative to this file
//! max_points = 300                     # thin outlines to at most this many points
//! lead_in_s = 20.0                     # reference start = pole's lap-1 start minus this
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::record::{
    format_iso8601_ns, parse_iso8601_ns, Bounds, FastestLap, GridSlot, Lap, PathKind, Point,
    RaceMetadata, ReferencePath, SectorPoint, SessionKey, SessionResultEntry, TrackLayout,
};
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io, Kinds,
    Record, RecordKind, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::race::reference_start_ns;

/// The lead-in that [`reference_start_ns`] applies.
const RACE_LEAD_IN_NS: i64 = 20_000_000_000;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackLayoutConfig {
    /// A MultiViewer circuit JSON file (`https://api.multiviewer.app/api/v1/circuits/{circuit_key}/{year}`),
    /// relative to the pipeline file. When set, the outline is its `x[]`/`y[]` instead of the
    /// fastest lap's path. Read when the component is built: a missing or invalid file is an
    /// error then (and a reload that introduces one is rolled back).
    #[serde(default)]
    pub circuit_info: Option<PathBuf>,
    /// Thin the outline and the pit lane to at most this many points each, keeping their shape.
    #[serde(default = "default_max_points")]
    pub max_points: usize,
    /// Seconds between the reference start (the replay clock's zero) and the pole sitter's
    /// lap-1 start. 20 is the Pocket Pitwall convention the Cardputer firmware expects.
    #[serde(default = "default_lead_in_s")]
    pub lead_in_s: f64,
}

fn default_max_points() -> usize {
    300
}

fn default_lead_in_s() -> f64 {
    20.0
}

impl Default for TrackLayoutConfig {
    fn default() -> Self {
        Self {
            circuit_info: None,
            max_points: default_max_points(),
            lead_in_s: default_lead_in_s(),
        }
    }
}

impl ComponentConfig for TrackLayoutConfig {
    fn emits(&self) -> Kinds {
        Kinds::of(&[RecordKind::TrackLayout, RecordKind::RaceMetadata])
    }

    fn accepts(&self) -> Kinds {
        Kinds::of(&[
            RecordKind::Session,
            RecordKind::Lap,
            RecordKind::ReferencePath,
            RecordKind::StartingGrid,
            RecordKind::SessionResult,
            RecordKind::RacePosition,
            RecordKind::SessionEnd,
        ])
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if self.max_points < 3 {
            problems.push(OptionProblem::new(
                "max_points",
                format!(
                    "must be at least 3 to draw a circuit, not {}",
                    self.max_points
                ),
            ));
        }
        if !self.lead_in_s.is_finite() || !(0.0..=3600.0).contains(&self.lead_in_s) {
            problems.push(OptionProblem::new(
                "lead_in_s",
                format!("must be between 0 and 3600 seconds, not {}", self.lead_in_s),
            ));
        }
        problems
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        let outline = match &self.circuit_info {
            Some(path) => {
                let path = ctx.resolve_path(path);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("circuit_info: cannot read {}: {e}", path.display()))?;
                let outline = parse_circuit_outline(&text).map_err(|e| {
                    format!(
                        "circuit_info: {} is not a MultiViewer circuit: {e}",
                        path.display()
                    )
                })?;
                Some(Arc::new(outline))
            }
            None => None,
        };
        Ok(Box::new(TrackLayoutComponent {
            builder: LayoutBuilder::new(self, outline),
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<TrackLayoutConfig>(
        "track_layout",
        Role::Transform,
        "Circuit outline, pit lane, sector points and race metadata for the Cardputer",
    )
}

/// The `x[]`/`y[]` outline of a MultiViewer circuit JSON.
pub fn parse_circuit_outline(text: &str) -> Result<Vec<(f64, f64)>, String> {
    #[derive(Deserialize)]
    struct Circuit {
        x: Vec<f64>,
        y: Vec<f64>,
    }
    let circuit: Circuit = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if circuit.x.len() != circuit.y.len() {
        return Err(format!(
            "x[] has {} points but y[] has {}",
            circuit.x.len(),
            circuit.y.len()
        ));
    }
    let points: Vec<(f64, f64)> = circuit
        .x
        .into_iter()
        .zip(circuit.y)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if points.len() < 3 {
        return Err("the outline has fewer than 3 points".into());
    }
    Ok(points)
}

struct TrackLayoutComponent {
    builder: LayoutBuilder,
}

#[async_trait]
impl Component for TrackLayoutComponent {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let Some(input) = io.input.as_mut() else {
            return Ok(());
        };
        while let Some(batch) = input.recv().await {
            let out = self.builder.observe_batch(&batch);
            io.output.send(out).await;
        }
        Ok(())
    }
}

/// What is known about one session.
#[derive(Default)]
struct SessionFacts {
    /// By (driver, lap number): a live lap is sent again when it completes.
    laps: BTreeMap<(u32, u32), Lap>,
    grid: BTreeMap<u32, GridSlot>,
    results: BTreeMap<u32, SessionResultEntry>,
    /// Latest race position per car, with its event time.
    positions: BTreeMap<u32, (i64, u32)>,
    lap_path: Option<Arc<ReferencePath>>,
    pit_path: Option<Arc<ReferencePath>>,
    last_layout: Option<Arc<TrackLayout>>,
    last_metadata: Option<Arc<RaceMetadata>>,
    /// Whether `last_layout` / `last_metadata` still reflect the facts: rebuilding them
    /// (thinning an outline, sorting laps) on every batch of a replay would dominate its cost.
    layout_current: bool,
    metadata_current: bool,
}

/// The transform's state and rules, without I/O.
pub struct LayoutBuilder {
    outline: Option<Arc<Vec<(f64, f64)>>>,
    max_points: usize,
    lead_in_ns: i64,
    sessions: HashMap<SessionKey, SessionFacts>,
}

impl LayoutBuilder {
    pub fn new(config: &TrackLayoutConfig, outline: Option<Arc<Vec<(f64, f64)>>>) -> Self {
        let lead_in_s = if config.lead_in_s.is_finite() {
            config.lead_in_s.clamp(0.0, 3600.0)
        } else {
            default_lead_in_s()
        };
        Self {
            outline,
            max_points: config.max_points.max(3),
            lead_in_ns: (lead_in_s * 1e9).round() as i64,
            sessions: HashMap::new(),
        }
    }

    /// Take in one batch; return the documents that changed (or, at a session's end, all).
    pub fn observe_batch(&mut self, batch: &[Event]) -> Vec<Event> {
        // Sessions touched by this batch, in order of first appearance, with the latest
        // event time seen for each.
        let mut touched: Vec<(SessionKey, i64)> = Vec::new();
        let mut ended: HashSet<SessionKey> = HashSet::new();
        let mut out = Vec::new();
        for event in batch {
            let Some(key) = self.observe(event) else {
                continue;
            };
            match touched.iter_mut().find(|(k, _)| *k == key) {
                Some((_, time)) => *time = (*time).max(event.time_ns),
                None => touched.push((key.clone(), event.time_ns)),
            }
            if let Record::SessionEnd(_) = &event.record {
                // Emit what is known so far as final, then start afresh if the session
                // comes round again (a looping replay).
                let time = touched
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map_or(event.time_ns, |(_, t)| *t);
                out.extend(self.emit(&key, time, true));
                ended.insert(key);
            }
        }
        for (key, time) in touched {
            if !ended.contains(&key) {
                out.extend(self.emit(&key, time, false));
            }
        }
        out
    }

    /// Record one event's facts; returns its session when it was one this transform uses.
    fn observe(&mut self, event: &Event) -> Option<SessionKey> {
        let key = match &event.record {
            Record::Session(session) => session.session_key.clone(),
            Record::Lap(lap) => {
                let facts = self.sessions.entry(lap.session_key.clone()).or_default();
                facts
                    .laps
                    .insert((lap.driver_number, lap.lap_number), Lap::clone(lap));
                facts.metadata_current = false;
                lap.session_key.clone()
            }
            Record::StartingGrid(slot) => {
                let facts = self.sessions.entry(slot.session_key.clone()).or_default();
                facts.grid.insert(slot.driver_number, GridSlot::clone(slot));
                facts.metadata_current = false;
                slot.session_key.clone()
            }
            Record::SessionResult(result) => {
                let facts = self.sessions.entry(result.session_key.clone()).or_default();
                facts
                    .results
                    .insert(result.driver_number, SessionResultEntry::clone(result));
                facts.metadata_current = false;
                result.session_key.clone()
            }
            Record::RacePosition(position) => {
                let facts = self
                    .sessions
                    .entry(position.session_key.clone())
                    .or_default();
                let newer = facts
                    .positions
                    .get(&position.car)
                    .is_none_or(|(time, _)| *time <= event.time_ns);
                if newer {
                    facts
                        .positions
                        .insert(position.car, (event.time_ns, position.position));
                    // Positions only stand in for the podium while there are no results.
                    if facts.results.is_empty() {
                        facts.metadata_current = false;
                    }
                }
                position.session_key.clone()
            }
            Record::ReferencePath(path) => {
                let facts = self.sessions.entry(path.session_key.clone()).or_default();
                match path.path {
                    PathKind::Lap => facts.lap_path = Some(path.clone()),
                    PathKind::PitLane => facts.pit_path = Some(path.clone()),
                }
                facts.layout_current = false;
                path.session_key.clone()
            }
            Record::SessionEnd(end) => end.session_key.clone(),
            _ => return None,
        };
        self.sessions.entry(key.clone()).or_default();
        Some(key)
    }

    /// The documents of `key` that changed since last emitted (all of them when `final_`).
    fn emit(&mut self, key: &SessionKey, time_ns: i64, final_: bool) -> Vec<Event> {
        let Some(facts) = self.sessions.get(key) else {
            return Vec::new();
        };
        let layout = (final_ || !facts.layout_current)
            .then(|| self.layout(key))
            .flatten();
        let metadata = (final_ || !facts.metadata_current)
            .then(|| self.metadata(key))
            .flatten();
        let Some(facts) = self.sessions.get_mut(key) else {
            return Vec::new();
        };
        facts.layout_current = true;
        facts.metadata_current = true;
        let mut out = Vec::new();
        if let Some(layout) = layout {
            if final_ || facts.last_layout.as_deref() != Some(&layout) {
                let layout = Arc::new(layout);
                facts.last_layout = Some(layout.clone());
                out.push(Event::new(time_ns, Record::TrackLayout(layout)));
            }
        }
        if let Some(metadata) = metadata {
            if final_ || facts.last_metadata.as_deref() != Some(&metadata) {
                let metadata = Arc::new(metadata);
                facts.last_metadata = Some(metadata.clone());
                out.push(Event::new(time_ns, Record::RaceMetadata(metadata)));
            }
        }
        if final_ {
            // A replay that loops sends its facts again; start from a clean slate then.
            self.sessions.remove(key);
        }
        out
    }

    /// The track layout of a session, if there is an outline to draw.
    pub fn layout(&self, key: &SessionKey) -> Option<TrackLayout> {
        let facts = self.sessions.get(key)?;
        let lap_path: Option<Vec<(i64, f64, f64)>> = facts
            .lap_path
            .as_ref()
            .map(|p| clean_samples(&p.samples))
            .filter(|s| s.len() >= 3);
        let outline: Vec<(f64, f64)> = match (&self.outline, &lap_path) {
            (Some(outline), _) => outline.to_vec(),
            (None, Some(samples)) => {
                let mut points: Vec<(f64, f64)> = samples.iter().map(|&(_, x, y)| (x, y)).collect();
                close_loop(&mut points);
                points
            }
            (None, None) => return None,
        };
        let track_path = to_points(&thin(&outline, self.max_points));
        let pit_path = facts
            .pit_path
            .as_ref()
            .map(|p| {
                let points: Vec<(f64, f64)> = clean_samples(&p.samples)
                    .iter()
                    .map(|&(_, x, y)| (x, y))
                    .collect();
                to_points(&thin(&points, self.max_points))
            })
            .unwrap_or_default();
        let sector_points = match (&lap_path, &facts.lap_path) {
            (Some(samples), Some(path)) => lap_sector_points(samples, path, facts),
            _ => None,
        }
        .unwrap_or_else(|| outline_sector_points(&outline));
        let bounds =
            Bounds::of_points(track_path.iter().chain(pit_path.iter()).map(|p| (p.x, p.y)))
                .unwrap_or_default();
        Some(TrackLayout {
            session_key: key.clone(),
            track_path,
            pit_path,
            sector_points,
            bounds,
        })
    }

    /// The race metadata of a session, once its reference start is known.
    pub fn metadata(&self, key: &SessionKey) -> Option<RaceMetadata> {
        let facts = self.sessions.get(key)?;
        let laps: Vec<Lap> = facts.laps.values().cloned().collect();
        let grid: Vec<GridSlot> = facts.grid.values().cloned().collect();
        let pole_start = reference_start_ns(&laps, &grid)? + RACE_LEAD_IN_NS;
        let reference_start_ns = pole_start - self.lead_in_ns;

        let mut classified: Vec<(u32, u32)> = facts
            .results
            .values()
            .filter_map(|r| r.position.map(|p| (p, r.driver_number)))
            .filter(|(p, _)| (1..=3).contains(p))
            .collect();
        if classified.is_empty() {
            classified = facts
                .positions
                .iter()
                .map(|(&car, &(_, position))| (position, car))
                .filter(|(p, _)| (1..=3).contains(p))
                .collect();
        }
        classified.sort();
        classified.dedup_by_key(|(p, _)| *p);
        let podium_drivers: Vec<u32> = classified.iter().map(|&(_, car)| car).collect();
        let race_winner = classified
            .first()
            .filter(|(p, _)| *p == 1)
            .map(|&(_, car)| car);

        Some(RaceMetadata {
            session_key: key.clone(),
            reference_start_time: format_iso8601_ns(reference_start_ns),
            reference_start_ns,
            race_winner,
            podium_drivers,
            fastest_lap: fastest_lap(facts.laps.values()),
        })
    }
}

/// The quickest lap with a duration, preferring laps whose three sectors are known.
fn fastest_lap<'a>(laps: impl Iterator<Item = &'a Lap> + Clone) -> Option<FastestLap> {
    let valid = |d: Option<f64>| d.filter(|d| d.is_finite() && *d > 0.0);
    let complete = |lap: &&Lap| {
        valid(lap.duration_sector_1).is_some()
            && valid(lap.duration_sector_2).is_some()
            && valid(lap.duration_sector_3).is_some()
    };
    let quickest = |candidates: Vec<&'a Lap>| {
        candidates
            .into_iter()
            .filter_map(|lap| valid(lap.lap_duration).map(|d| (d, lap)))
            .min_by(|a, b| {
                a.0.total_cmp(&b.0)
                    .then(a.1.lap_number.cmp(&b.1.lap_number))
                    .then(a.1.driver_number.cmp(&b.1.driver_number))
            })
    };
    let (lap_time, lap) =
        quickest(laps.clone().filter(complete).collect()).or_else(|| quickest(laps.collect()))?;
    Some(FastestLap {
        driver_number: lap.driver_number,
        lap_number: lap.lap_number,
        lap_time,
        sector_1: valid(lap.duration_sector_1),
        sector_2: valid(lap.duration_sector_2),
        sector_3: valid(lap.duration_sector_3),
    })
}

/// Samples that can be drawn: finite, not the 0,0 of a car not placed, sorted by time.
fn clean_samples(samples: &[(i64, f64, f64)]) -> Vec<(i64, f64, f64)> {
    let mut clean: Vec<(i64, f64, f64)> = samples
        .iter()
        .copied()
        .filter(|&(_, x, y)| x.is_finite() && y.is_finite() && !(x == 0.0 && y == 0.0))
        .collect();
    clean.sort_by_key(|s| s.0);
    clean
}

/// Sector points from the lap path's timing.
fn lap_sector_points(
    samples: &[(i64, f64, f64)],
    path: &ReferencePath,
    facts: &SessionFacts,
) -> Option<Vec<SectorPoint>> {
    let lap = path.lap_number.and_then(|n| facts.laps.get(&(path.car, n)));
    let start = lap
        .and_then(|lap| lap.date_start.as_deref())
        .and_then(parse_iso8601_ns)
        .unwrap_or(samples[0].0);
    let sectors: Vec<f64> = if path.sector_durations.len() >= 2 {
        path.sector_durations.clone()
    } else {
        let lap = lap?;
        vec![lap.duration_sector_1?, lap.duration_sector_2?]
    };
    let (s1, s2) = (sectors[0], sectors[1]);
    if !(s1.is_finite() && s2.is_finite() && s1 > 0.0 && s2 > 0.0) {
        return None;
    }
    let at = |seconds: f64| position_at(samples, start + (seconds * 1e9).round() as i64);
    let point = |id: &str, (x, y): (f64, f64)| SectorPoint {
        id: id.to_string(),
        x,
        y,
    };
    Some(vec![
        point("Start/Finish", at(0.0)),
        point("Sector 1 End", at(s1)),
        point("Sector 2 End", at(s1 + s2)),
    ])
}

/// Where a path was at `time`, interpolated between samples. Just outside the samples (a lap
/// path starts at the first sample after the line) the motion is extrapolated from the two
/// nearest samples, for at most one second; further out the path's end stands in.
fn position_at(samples: &[(i64, f64, f64)], time: i64) -> (f64, f64) {
    const MAX_EXTRAPOLATION_NS: i64 = 1_000_000_000;
    let n = samples.len();
    let lerp = |a: (i64, f64, f64), b: (i64, f64, f64), time: i64| {
        let frac = if b.0 != a.0 {
            (time - a.0) as f64 / (b.0 - a.0) as f64
        } else {
            0.0
        };
        (a.1 + (b.1 - a.1) * frac, a.2 + (b.2 - a.2) * frac)
    };
    let i = samples.partition_point(|s| s.0 <= time);
    if i == 0 {
        let first = samples[0];
        if n >= 2 && first.0 - time <= MAX_EXTRAPOLATION_NS {
            return lerp(first, samples[1], time);
        }
        return (first.1, first.2);
    }
    if i == n {
        let last = samples[n - 1];
        if n >= 2 && time - last.0 <= MAX_EXTRAPOLATION_NS {
            return lerp(samples[n - 2], last, time);
        }
        return (last.1, last.2);
    }
    lerp(samples[i - 1], samples[i], time)
}

/// Without timing: the outline's first point, and the points a third and two thirds of the
/// way round it.
fn outline_sector_points(outline: &[(f64, f64)]) -> Vec<SectorPoint> {
    let mut cumulative = Vec::with_capacity(outline.len());
    let mut total = 0.0;
    cumulative.push(0.0);
    for pair in outline.windows(2) {
        total += (pair[1].0 - pair[0].0).hypot(pair[1].1 - pair[0].1);
        cumulative.push(total);
    }
    let at = |distance: f64| -> (f64, f64) {
        let i = cumulative
            .partition_point(|&c| c <= distance)
            .clamp(1, outline.len().max(2) - 1);
        let (c0, c1) = (cumulative[i - 1], cumulative[i]);
        let frac = if c1 > c0 {
            (distance - c0) / (c1 - c0)
        } else {
            0.0
        };
        let (a, b) = (outline[i - 1], outline[i]);
        (a.0 + (b.0 - a.0) * frac, a.1 + (b.1 - a.1) * frac)
    };
    [
        ("Start/Finish", 0.0),
        ("Sector 1 End", total / 3.0),
        ("Sector 2 End", total * 2.0 / 3.0),
    ]
    .into_iter()
    .map(|(id, distance)| {
        let (x, y) = if outline.len() >= 2 {
            at(distance)
        } else {
            outline[0]
        };
        SectorPoint {
            id: id.to_string(),
            x,
            y,
        }
    })
    .collect()
}

/// A lap ends where it began, short of the last sample interval: join the ends so the map
/// is a closed loop (only when the gap is small next to the lap's size).
fn close_loop(points: &mut Vec<(f64, f64)>) {
    let (Some(&first), Some(&last)) = (points.first(), points.last()) else {
        return;
    };
    let Some(extent) = Bounds::of_points(points.iter().copied()) else {
        return;
    };
    let size = (extent.max_x - extent.min_x).max(extent.max_y - extent.min_y);
    let gap = (first.0 - last.0).hypot(first.1 - last.1);
    if gap > 0.0 && gap < size * 0.05 {
        points.push(first);
    }
}

fn to_points(points: &[(f64, f64)]) -> Vec<Point> {
    points.iter().map(|&(x, y)| Point { x, y }).collect()
}

/// At most `max_points` points of `points`, keeping its shape: Ramer-Douglas-Peucker with the
/// smallest tolerance (found by bisection) that gets under the limit. Ends are always kept.
pub fn thin(points: &[(f64, f64)], max_points: usize) -> Vec<(f64, f64)> {
    let max_points = max_points.max(2);
    if points.len() <= max_points {
        return points.to_vec();
    }
    let extent = Bounds::of_points(points.iter().copied())
        .map_or(1.0, |b| (b.max_x - b.min_x).hypot(b.max_y - b.min_y));
    let (mut low, mut high) = (0.0, extent.max(1e-9));
    let mut best = keep_indices(points, high);
    for _ in 0..40 {
        let mid = (low + high) / 2.0;
        let kept = keep_indices(points, mid);
        if kept.len() <= max_points {
            best = kept;
            high = mid;
        } else {
            low = mid;
        }
    }
    if best.len() > max_points {
        // Degenerate input (e.g. all points on one line): fall back to an even stride.
        let step = points.len().div_ceil(max_points - 1).max(1);
        let mut picked: Vec<(f64, f64)> = points.iter().step_by(step).copied().collect();
        picked.truncate(max_points - 1);
        picked.push(points[points.len() - 1]);
        return picked;
    }
    best.into_iter().map(|i| points[i]).collect()
}

/// Indices kept by Ramer-Douglas-Peucker at `tolerance` (iterative, so long paths cannot
/// overflow the stack).
fn keep_indices(points: &[(f64, f64)], tolerance: f64) -> Vec<usize> {
    let n = points.len();
    let mut keep = vec![false; n];
    keep[0] = true;
    keep[n - 1] = true;
    let mut stack = vec![(0usize, n - 1)];
    while let Some((first, last)) = stack.pop() {
        if last <= first + 1 {
            continue;
        }
        let (a, b) = (points[first], points[last]);
        let mut farthest = (first, -1.0);
        for (i, &p) in points.iter().enumerate().take(last).skip(first + 1) {
            let d = distance_to_segment(p, a, b);
            if d > farthest.1 {
                farthest = (i, d);
            }
        }
        if farthest.1 > tolerance {
            keep[farthest.0] = true;
            stack.push((first, farthest.0));
            stack.push((farthest.0, last));
        }
    }
    (0..n).filter(|&i| keep[i]).collect()
}

fn distance_to_segment(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let length_sq = dx * dx + dy * dy;
    if length_sq == 0.0 {
        return (p.0 - a.0).hypot(p.1 - a.1);
    }
    let t = (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / length_sq).clamp(0.0, 1.0);
    (p.0 - (a.0 + t * dx)).hypot(p.1 - (a.1 + t * dy))
}

#[cfg(test)]
mod tests;
