//! Transform `bounds`: the smallest box around every car position seen so far.
//!
//! A display that scales a map needs the extent of the world coordinates before it can draw
//! (FORMATS.md section 3: the Cardputer scales by `min(160/(max_x-min_x), 115/(max_y-min_y))`).
//! This transform watches positions (raw [`Position`](Record::Position)s, the cars of
//! [`Frame`](Record::Frame)s, or the track and pit points of a
//! [`TrackLayout`](Record::TrackLayout)) and emits a [`Bounds`] record:
//!
//! - always for the first point;
//! - after that only when the box has grown by more than `min_growth` (world units) on some
//!   side, and at most once every `emit_interval_ms` of event time, so a growing box does not
//!   flood the consumer. Growth held back by the interval is emitted with the next event
//!   after it, or when the input ends.
//!
//! Points at exactly `0,0` (car not placed) and non-finite points are ignored. The emitted box
//! is the raw min/max widened on each side by `padding` world units plus `padding_pct` percent
//! of its width (x) or height (y). Bounds are global: the record has no session, so feed one
//! circuit per `bounds` instance.
//!
//! ```toml
//! [transforms.extent]
//! type = "bounds"
//! inputs = ["f1"]
//! padding = 0.0             # world units added on each side
//! padding_pct = 0.0         # percent of width/height added on each side
//! min_growth = 0.0          # re-emit only when a side grew by more than this
//! emit_interval_ms = 1000   # at most one Bounds per interval of event time
//! ```

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::record::Bounds;
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io, Kinds,
    Record, RecordKind, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BoundsConfig {
    /// World units added to each side of the emitted box.
    #[serde(default)]
    pub padding: f64,
    /// Percent of the box's width (x) and height (y) added to each side.
    #[serde(default)]
    pub padding_pct: f64,
    /// Re-emit only when a side has grown by more than this many world units since the
    /// last emitted box.
    #[serde(default)]
    pub min_growth: f64,
    /// At most one Bounds record per this many ms of event time (the first is always emitted).
    #[serde(default = "default_emit_interval_ms")]
    pub emit_interval_ms: u64,
}

fn default_emit_interval_ms() -> u64 {
    1000
}

impl Default for BoundsConfig {
    fn default() -> Self {
        Self {
            padding: 0.0,
            padding_pct: 0.0,
            min_growth: 0.0,
            emit_interval_ms: default_emit_interval_ms(),
        }
    }
}

impl ComponentConfig for BoundsConfig {
    fn emits(&self) -> Kinds {
        Kinds::of(&[RecordKind::Bounds])
    }

    fn accepts(&self) -> Kinds {
        Kinds::of(&[
            RecordKind::Position,
            RecordKind::Frame,
            RecordKind::TrackLayout,
        ])
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        for (key, value) in [
            ("padding", self.padding),
            ("padding_pct", self.padding_pct),
            ("min_growth", self.min_growth),
        ] {
            if !value.is_finite() || value < 0.0 {
                problems.push(OptionProblem::new(
                    key,
                    format!("must be a number of at least 0, not {value}"),
                ));
            }
        }
        if self.padding_pct > 1000.0 {
            problems.push(OptionProblem::new(
                "padding_pct",
                "is a percentage of the width/height per side; more than 1000 is surely a mistake",
            ));
        }
        problems
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        Ok(Box::new(BoundsComponent {
            tracker: BoundsTracker::new(self),
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<BoundsConfig>(
        "bounds",
        Role::Transform,
        "Min/max of world x/y over positions, re-emitted when it grows",
    )
}

struct BoundsComponent {
    tracker: BoundsTracker,
}

#[async_trait]
impl Component for BoundsComponent {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let Some(input) = io.input.as_mut() else {
            return Ok(());
        };
        while let Some(batch) = input.recv().await {
            let mut out = Vec::new();
            for event in batch.iter() {
                if let Some(bounds) = self.tracker.observe(event) {
                    out.push(bounds);
                }
            }
            io.output.send(out).await;
        }
        if let Some(bounds) = self.tracker.finish() {
            io.output.send(vec![bounds]).await;
        }
        Ok(())
    }
}

/// The running min/max and the emission rules, without I/O.
pub struct BoundsTracker {
    padding: f64,
    padding_frac: f64,
    min_growth: f64,
    interval_ns: i64,
    raw: Option<Bounds>,
    /// The raw box at the last emission.
    emitted: Option<Bounds>,
    last_emit_ns: i64,
    last_event_ns: i64,
}

impl BoundsTracker {
    pub fn new(config: &BoundsConfig) -> Self {
        let clean = |v: f64| if v.is_finite() { v.max(0.0) } else { 0.0 };
        Self {
            padding: clean(config.padding),
            padding_frac: clean(config.padding_pct) / 100.0,
            min_growth: clean(config.min_growth),
            interval_ns: (config.emit_interval_ms.min(i64::MAX as u64 / 1_000_000) as i64)
                * 1_000_000,
            raw: None,
            emitted: None,
            last_emit_ns: i64::MIN,
            last_event_ns: i64::MIN,
        }
    }

    fn include(&mut self, x: f64, y: f64) {
        if (x == 0.0 && y == 0.0) || !x.is_finite() || !y.is_finite() {
            return;
        }
        match &mut self.raw {
            Some(raw) => raw.include(x, y),
            None => {
                self.raw = Some(Bounds {
                    min_x: x,
                    max_x: x,
                    min_y: y,
                    max_y: y,
                })
            }
        }
    }

    /// The padded box of the current raw bounds.
    pub fn current(&self) -> Option<Bounds> {
        let raw = self.raw?;
        let pad_x = self.padding + (raw.max_x - raw.min_x) * self.padding_frac;
        let pad_y = self.padding + (raw.max_y - raw.min_y) * self.padding_frac;
        Some(Bounds {
            min_x: raw.min_x - pad_x,
            max_x: raw.max_x + pad_x,
            min_y: raw.min_y - pad_y,
            max_y: raw.max_y + pad_y,
        })
    }

    fn grown(&self) -> bool {
        match (self.raw, self.emitted) {
            (Some(_), None) => true,
            (Some(raw), Some(old)) => {
                let g = self.min_growth;
                raw.min_x < old.min_x - g
                    || raw.max_x > old.max_x + g
                    || raw.min_y < old.min_y - g
                    || raw.max_y > old.max_y + g
            }
            (None, _) => false,
        }
    }

    fn emit(&mut self, time_ns: i64) -> Option<Event> {
        let bounds = self.current()?;
        self.emitted = self.raw;
        self.last_emit_ns = time_ns;
        Some(Event::new(time_ns, Record::Bounds(bounds)))
    }

    /// Take one event in; returns a Bounds event when one is due.
    pub fn observe(&mut self, event: &Event) -> Option<Event> {
        match &event.record {
            Record::Position(p) => self.include(p.x, p.y),
            Record::Frame(frame) => {
                for car in &frame.cars {
                    self.include(car.x, car.y);
                }
            }
            Record::TrackLayout(layout) => {
                let mut any = false;
                for point in layout.track_path.iter().chain(&layout.pit_path) {
                    self.include(point.x, point.y);
                    any = true;
                }
                if !any && layout.bounds != Bounds::default() {
                    self.include(layout.bounds.min_x, layout.bounds.min_y);
                    self.include(layout.bounds.max_x, layout.bounds.max_y);
                }
            }
            _ => return None,
        }
        let t = event.time_ns;
        self.last_event_ns = self.last_event_ns.max(t);
        if !self.grown() {
            return None;
        }
        let first = self.emitted.is_none();
        if first || t.saturating_sub(self.last_emit_ns) >= self.interval_ns {
            return self.emit(t);
        }
        None
    }

    /// The input ended: emit growth the interval held back.
    pub fn finish(&mut self) -> Option<Event> {
        if self.grown() {
            self.emit(self.last_event_ns)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::record::{CarPosition, Point, TrackLayout};
    use pitwall_api::testing::{parse_config, run_config};
    use std::sync::Arc;

    const MS: i64 = 1_000_000;

    fn pos(t_ms: i64, x: f64, y: f64) -> Event {
        Event::new(
            t_ms * MS,
            Record::Position(CarPosition {
                session_key: "1".into(),
                car: 1,
                x,
                y,
                z: 0.0,
                spline: None,
            }),
        )
    }

    fn bounds(events: &[Event]) -> Vec<(i64, Bounds)> {
        events
            .iter()
            .filter_map(|e| match &e.record {
                Record::Bounds(b) => Some((e.time_ns / MS, *b)),
                _ => None,
            })
            .collect()
    }

    fn b(min_x: f64, max_x: f64, min_y: f64, max_y: f64) -> Bounds {
        Bounds {
            min_x,
            max_x,
            min_y,
            max_y,
        }
    }

    #[tokio::test]
    async fn emits_first_then_growth_at_most_every_interval() {
        let out = run_config::<BoundsConfig>(
            "",
            vec![
                pos(0, 0.0, 0.0), // not placed: ignored
                pos(10, 10.0, 20.0),
                pos(20, 5.0, 20.0),   // growth, too soon
                pos(500, 7.0, 21.0),  // growth, still too soon
                pos(1010, 8.0, 20.0), // no new growth, but held-back growth is due
                pos(1020, 9.0, 20.0), // inside: nothing
                pos(1500, 4.0, 20.0), // growth, too soon: emitted at the end
            ],
        )
        .await;
        assert_eq!(
            bounds(&out),
            vec![
                (10, b(10.0, 10.0, 20.0, 20.0)),
                (1010, b(5.0, 10.0, 20.0, 21.0)),
                (1500, b(4.0, 10.0, 20.0, 21.0)),
            ]
        );
    }

    #[tokio::test]
    async fn padding_and_min_growth() {
        let out = run_config::<BoundsConfig>(
            "padding = 1.0\npadding_pct = 10.0\nmin_growth = 5.0\nemit_interval_ms = 0",
            vec![
                pos(0, 0.0, 10.0),
                pos(1, 100.0, 60.0),
                pos(2, 104.0, 60.0), // grew 4 <= 5: not re-emitted
                pos(3, 110.0, 60.0), // grew 10 since the last emission
            ],
        )
        .await;
        let got = bounds(&out);
        assert_eq!(got.len(), 3, "{got:?}");
        // First point alone: zero size, padding only.
        assert_eq!(got[0].1, b(-1.0, 1.0, 9.0, 11.0));
        // 0..100 x 10..60: pad x = 1 + 10, pad y = 1 + 5.
        assert_eq!(got[1].1, b(-11.0, 111.0, 4.0, 66.0));
        assert_eq!(got[2].1, b(-12.0, 122.0, 4.0, 66.0));
    }

    #[tokio::test]
    async fn frames_and_layouts_count() {
        let layout = TrackLayout {
            track_path: vec![Point { x: -50.0, y: 5.0 }, Point { x: 50.0, y: 7.0 }],
            pit_path: vec![Point { x: 0.0, y: -9.0 }],
            ..Default::default()
        };
        let frame = pitwall_api::record::Frame {
            session_key: "1".into(),
            t_ms: 0,
            cars: vec![pitwall_api::record::FrameCar {
                car: 1,
                x: 60.0,
                y: 1.0,
                position: 1,
            }],
        };
        let out = run_config::<BoundsConfig>(
            "emit_interval_ms = 0",
            vec![
                Event::new(0, Record::TrackLayout(Arc::new(layout))),
                Event::new(MS, Record::Frame(Arc::new(frame))),
            ],
        )
        .await;
        assert_eq!(
            bounds(&out),
            vec![
                (0, b(-50.0, 50.0, -9.0, 7.0)),
                (1, b(-50.0, 60.0, -9.0, 7.0))
            ]
        );
    }

    #[test]
    fn bad_options_are_reported() {
        let config: BoundsConfig = parse_config("padding = -1.0\npadding_pct = 5000.0");
        let keys: Vec<String> = config.check().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["padding", "padding_pct"]);
        assert!(BoundsConfig::default().check().is_empty());
    }
}
