//! Transform `project`: world coordinates to a device's pixel grid.
//!
//! A microcontroller such as the Cardputer (240x135 screen, FORMATS.md section 3) should not
//! have to scale, rotate or flip anything: this transform does it once, server side. Every
//! [`Frame`] car and every point of a [`TrackLayout`] is mapped to whole pixel coordinates of a
//! `width` x `height` screen:
//!
//! 1. rotate by `rotation_deg` (counter-clockwise, around the centre of the world bounds; use
//!    MultiViewer's `rotation`, e.g. 95 for Monza, to get the broadcast orientation);
//! 2. scale uniformly by `min((width - 2*margin) / dx, (height - 2*margin) / dy)` where
//!    dx, dy are the size of the rotated bounds, and centre the result on the screen;
//! 3. flip y (`flip_y`, default true) because screens count rows downwards.
//!
//! Without rotation the corners land exactly on the margins: `min_x -> margin`,
//! `max_x -> width - margin` on the limiting axis, and with `flip_y` `max_y` lands on the top
//! margin. Pixels are rounded to whole numbers and not clamped (a car slightly outside the
//! bounds gets a coordinate slightly outside the margin). A car at exactly `0,0` (not placed)
//! is left at `0,0` so that the device still skips it.
//!
//! The world bounds are, in order of preference: the static `bounds` option; the latest
//! [`Bounds`](Record::Bounds) record (from a `bounds` transform); the bounds of the latest
//! [`TrackLayout`]. When the bounds change, the layouts already seen are projected again and
//! re-emitted, so a document sink always holds a layout matching the frames.
//!
//! Frames that arrive before any bounds are known are **dropped** (counted as discarded and
//! logged): world coordinates in a stream of pixels would draw nonsense on the device, and the
//! first bounds normally follow within one event.
//!
//! ```toml
//! [transforms.pixels]
//! type = "project"
//! inputs = ["frames", "layout", "extent"]
//! width = 240
//! height = 135
//! margin = 10
//! flip_y = true
//! rotation_deg = 0.0
//! # bounds = { min_x = -9000.0, max_x = 8000.0, min_y = -5000.0, max_y = 6000.0 }
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::record::{Bounds, Frame, Point, SectorPoint, TrackLayout};
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io, Kinds,
    Record, RecordKind, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::keys::should_log;

/// A fixed world box.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticBounds {
    pub min_x: f64,
    pub max_x: f64,
    pub min_y: f64,
    pub max_y: f64,
}

impl From<StaticBounds> for Bounds {
    fn from(b: StaticBounds) -> Self {
        Bounds {
            min_x: b.min_x,
            max_x: b.max_x,
            min_y: b.min_y,
            max_y: b.max_y,
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Screen width in pixels.
    #[serde(default = "default_width")]
    pub width: u32,
    /// Screen height in pixels.
    #[serde(default = "default_height")]
    pub height: u32,
    /// Empty pixels kept on every side.
    #[serde(default = "default_margin")]
    pub margin: u32,
    /// Flip y so that world "up" is the top of the screen (screens count rows downwards).
    #[serde(default = "default_flip_y")]
    pub flip_y: bool,
    /// Rotate the world counter-clockwise by this many degrees around the centre of the
    /// bounds before scaling (MultiViewer's `rotation`, e.g. 95 for Monza).
    #[serde(default)]
    pub rotation_deg: f64,
    /// A fixed world box {min_x, max_x, min_y, max_y}. Without it: the latest Bounds record,
    /// else the latest TrackLayout's bounds.
    #[serde(default)]
    pub bounds: Option<StaticBounds>,
}

fn default_width() -> u32 {
    240
}
fn default_height() -> u32 {
    135
}
fn default_margin() -> u32 {
    10
}
fn default_flip_y() -> bool {
    true
}

impl Default for ProjectConfig {
    fn default() -> Self {
        Self {
            width: default_width(),
            height: default_height(),
            margin: default_margin(),
            flip_y: true,
            rotation_deg: 0.0,
            bounds: None,
        }
    }
}

fn bounds_ok(b: &Bounds) -> bool {
    [b.min_x, b.max_x, b.min_y, b.max_y]
        .iter()
        .all(|v| v.is_finite())
        && b.min_x <= b.max_x
        && b.min_y <= b.max_y
}

impl ComponentConfig for ProjectConfig {
    fn emits(&self) -> Kinds {
        Kinds::of(&[RecordKind::Frame, RecordKind::TrackLayout])
    }

    fn accepts(&self) -> Kinds {
        Kinds::of(&[
            RecordKind::Frame,
            RecordKind::TrackLayout,
            RecordKind::Bounds,
        ])
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        for (key, size) in [("width", self.width), ("height", self.height)] {
            if size == 0 || size > 100_000 {
                problems.push(OptionProblem::new(
                    key,
                    format!("must be between 1 and 100000 pixels, not {size}"),
                ));
            } else if u64::from(self.margin) * 2 >= u64::from(size) {
                problems.push(OptionProblem::new(
                    "margin",
                    format!(
                        "{} px on both sides leaves nothing of the {key} ({size} px)",
                        self.margin
                    ),
                ));
            }
        }
        if !self.rotation_deg.is_finite() {
            problems.push(OptionProblem::new(
                "rotation_deg",
                "must be a finite number",
            ));
        }
        if let Some(b) = self.bounds {
            if !bounds_ok(&b.into()) {
                problems.push(OptionProblem::new(
                    "bounds",
                    "needs finite numbers with min_x <= max_x and min_y <= max_y",
                ));
            }
        }
        problems
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        Ok(Box::new(ProjectComponent {
            projector: Projector::new(self),
            dropped: 0,
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<ProjectConfig>(
        "project",
        Role::Transform,
        "Maps world x/y of frames and track layouts to a device's pixel grid",
    )
}

/// A fixed mapping from world to pixel coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Projection {
    centre_x: f64,
    centre_y: f64,
    cos: f64,
    sin: f64,
    /// Rotated bounds' lower corner, relative to the centre.
    low_x: f64,
    low_y: f64,
    scale: f64,
    /// Left and bottom pixel of the drawn area, margins and centring included.
    left: f64,
    bottom: f64,
    height: f64,
    flip_y: bool,
}

impl Projection {
    /// The projection of `bounds` onto a `width` x `height` screen.
    pub fn new(bounds: &Bounds, config: &ProjectConfig) -> Self {
        let (w, h, m) = (
            f64::from(config.width),
            f64::from(config.height),
            f64::from(config.margin),
        );
        let radians = config.rotation_deg.to_radians();
        let (sin, cos) = if config.rotation_deg == 0.0 {
            (0.0, 1.0)
        } else {
            radians.sin_cos()
        };
        let centre_x = (bounds.min_x + bounds.max_x) / 2.0;
        let centre_y = (bounds.min_y + bounds.max_y) / 2.0;
        let (half_x, half_y) = (
            (bounds.max_x - bounds.min_x) / 2.0,
            (bounds.max_y - bounds.min_y) / 2.0,
        );
        let mut low = (f64::INFINITY, f64::INFINITY);
        let mut high = (f64::NEG_INFINITY, f64::NEG_INFINITY);
        for (dx, dy) in [
            (-half_x, -half_y),
            (half_x, -half_y),
            (-half_x, half_y),
            (half_x, half_y),
        ] {
            let (rx, ry) = (dx * cos - dy * sin, dx * sin + dy * cos);
            low = (low.0.min(rx), low.1.min(ry));
            high = (high.0.max(rx), high.1.max(ry));
        }
        let (size_x, size_y) = (high.0 - low.0, high.1 - low.1);
        let (room_x, room_y) = ((w - 2.0 * m).max(0.0), (h - 2.0 * m).max(0.0));
        let fit = |room: f64, size: f64| {
            if size > 0.0 {
                room / size
            } else {
                f64::INFINITY
            }
        };
        let mut scale = fit(room_x, size_x).min(fit(room_y, size_y));
        if !scale.is_finite() {
            scale = 1.0; // a single point: put it in the middle
        }
        Self {
            centre_x,
            centre_y,
            cos,
            sin,
            low_x: low.0,
            low_y: low.1,
            scale,
            left: m + (room_x - size_x * scale) / 2.0,
            bottom: m + (room_y - size_y * scale) / 2.0,
            height: h,
            flip_y: config.flip_y,
        }
    }

    /// Pixel coordinates of a world point, rounded to whole pixels.
    pub fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        let (dx, dy) = (x - self.centre_x, y - self.centre_y);
        let (rx, ry) = (dx * self.cos - dy * self.sin, dx * self.sin + dy * self.cos);
        let px = self.left + (rx - self.low_x) * self.scale;
        let up = self.bottom + (ry - self.low_y) * self.scale;
        let py = if self.flip_y { self.height - up } else { up };
        (px.round(), py.round())
    }

    fn point(&self, p: &Point) -> Point {
        let (x, y) = self.apply(p.x, p.y);
        Point { x, y }
    }

    /// A layout in pixels, with pixel bounds over its track and pit points.
    pub fn layout(&self, layout: &TrackLayout) -> TrackLayout {
        let track_path: Vec<Point> = layout.track_path.iter().map(|p| self.point(p)).collect();
        let pit_path: Vec<Point> = layout.pit_path.iter().map(|p| self.point(p)).collect();
        let sector_points = layout
            .sector_points
            .iter()
            .map(|s| {
                let (x, y) = self.apply(s.x, s.y);
                SectorPoint {
                    id: s.id.clone(),
                    x,
                    y,
                }
            })
            .collect();
        let bounds = Bounds::of_points(track_path.iter().chain(&pit_path).map(|p| (p.x, p.y)))
            .unwrap_or_else(|| {
                let b = &layout.bounds;
                Bounds::of_points(
                    [
                        (b.min_x, b.min_y),
                        (b.max_x, b.min_y),
                        (b.min_x, b.max_y),
                        (b.max_x, b.max_y),
                    ]
                    .map(|(x, y)| self.apply(x, y)),
                )
                .unwrap_or_default()
            });
        TrackLayout {
            session_key: layout.session_key.clone(),
            track_path,
            pit_path,
            sector_points,
            bounds,
        }
    }

    pub fn frame(&self, frame: &Frame) -> Frame {
        let mut cars = frame.cars.clone();
        for car in &mut cars {
            if car.x == 0.0 && car.y == 0.0 {
                continue; // not placed: the device skips 0,0
            }
            (car.x, car.y) = self.apply(car.x, car.y);
        }
        Frame {
            session_key: frame.session_key.clone(),
            t_ms: frame.t_ms,
            cars,
        }
    }
}

/// Layouts remembered for re-projection (one per session).
const MAX_LAYOUTS: usize = 16;

/// Chooses the bounds, keeps the projection current, and maps records; no I/O.
pub struct Projector {
    config: ProjectConfig,
    static_bounds: Option<Bounds>,
    from_records: Option<Bounds>,
    from_layout: Option<Bounds>,
    /// The bounds the projection was made from.
    current: Option<(Bounds, Projection)>,
    /// World layouts seen, latest last.
    layouts: Vec<(i64, Arc<TrackLayout>)>,
    errors: u64,
}

impl Projector {
    pub fn new(config: &ProjectConfig) -> Self {
        let static_bounds = config.bounds.map(Bounds::from).filter(bounds_ok);
        let mut projector = Self {
            config: config.clone(),
            static_bounds,
            from_records: None,
            from_layout: None,
            current: None,
            layouts: Vec::new(),
            errors: 0,
        };
        projector.refresh();
        projector
    }

    pub fn projection(&self) -> Option<&Projection> {
        self.current.as_ref().map(|(_, p)| p)
    }

    /// Recompute the projection from the preferred bounds; true when it changed.
    fn refresh(&mut self) -> bool {
        let Some(bounds) = self
            .static_bounds
            .or(self.from_records)
            .or(self.from_layout)
        else {
            return false;
        };
        if self.current.as_ref().is_some_and(|(b, _)| *b == bounds) {
            return false;
        }
        self.current = Some((bounds, Projection::new(&bounds, &self.config)));
        true
    }

    fn reemit_layouts(&self, out: &mut Vec<Event>) {
        if let Some((_, projection)) = &self.current {
            for (time_ns, layout) in &self.layouts {
                out.push(Event::new(
                    *time_ns,
                    Record::TrackLayout(Arc::new(projection.layout(layout))),
                ));
            }
        }
    }

    /// Map one event; pushes what it produces to `out`. Returns false when a frame was
    /// dropped for lack of bounds.
    pub fn process(&mut self, event: &Event, out: &mut Vec<Event>) -> bool {
        match &event.record {
            Record::Frame(frame) => match &self.current {
                Some((_, projection)) => {
                    out.push(Event::new(
                        event.time_ns,
                        Record::Frame(Arc::new(projection.frame(frame))),
                    ));
                }
                None => return false,
            },
            Record::Bounds(bounds) => {
                if !bounds_ok(bounds) {
                    self.errors += 1;
                    if should_log(self.errors) {
                        tracing::warn!(?bounds, "project: ignoring invalid bounds");
                    }
                    return true;
                }
                self.from_records = Some(*bounds);
                if self.refresh() {
                    self.reemit_layouts(out);
                }
            }
            Record::TrackLayout(layout) => {
                let layout_bounds =
                    if bounds_ok(&layout.bounds) && layout.bounds != Bounds::default() {
                        Some(layout.bounds)
                    } else {
                        Bounds::of_points(
                            layout
                                .track_path
                                .iter()
                                .chain(&layout.pit_path)
                                .map(|p| (p.x, p.y)),
                        )
                        .filter(bounds_ok)
                    };
                self.layouts
                    .retain(|(_, l)| l.session_key != layout.session_key);
                if self.layouts.len() >= MAX_LAYOUTS {
                    self.layouts.remove(0);
                }
                self.layouts.push((event.time_ns, layout.clone()));
                if layout_bounds.is_some() {
                    self.from_layout = layout_bounds;
                }
                if self.refresh() {
                    self.reemit_layouts(out);
                } else if let Some((_, projection)) = &self.current {
                    out.push(Event::new(
                        event.time_ns,
                        Record::TrackLayout(Arc::new(projection.layout(layout))),
                    ));
                }
            }
            _ => {}
        }
        true
    }

    pub fn take_errors(&mut self) -> u64 {
        std::mem::take(&mut self.errors)
    }
}

struct ProjectComponent {
    projector: Projector,
    dropped: u64,
}

#[async_trait]
impl Component for ProjectComponent {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let Some(input) = io.input.as_mut() else {
            return Ok(());
        };
        while let Some(batch) = input.recv().await {
            let mut out = Vec::with_capacity(batch.len());
            for event in batch.iter() {
                if !self.projector.process(event, &mut out) {
                    self.dropped += 1;
                    io.metrics.add_discarded(1);
                    if should_log(self.dropped) {
                        tracing::warn!(
                            dropped = self.dropped,
                            "project: dropping frames until bounds are known (add a `bounds` transform, a track layout or the `bounds` option)"
                        );
                    }
                }
            }
            for _ in 0..self.projector.take_errors() {
                io.metrics.add_error();
            }
            io.output.send(out).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::record::FrameCar;
    use pitwall_api::testing::{parse_config, run_config};

    fn world() -> Bounds {
        // 2200 x 500 world units: x limits (220/2200 = 0.1 < 115/500 = 0.23).
        Bounds {
            min_x: -1000.0,
            max_x: 1200.0,
            min_y: 300.0,
            max_y: 800.0,
        }
    }

    #[test]
    fn corners_land_on_the_margins() {
        let p = Projection::new(&world(), &ProjectConfig::default());
        // scale 0.1 (x limits); y uses 50 of the 115 px, centred: 32.5 px above and below,
        // so y rows are 135 - 10 - 32.5 = 92.5 -> 93 and 92.5 - 50 = 42.5 -> 43.
        assert_eq!(p.apply(-1000.0, 300.0), (10.0, 93.0));
        assert_eq!(p.apply(1200.0, 800.0), (230.0, 43.0));
        assert_eq!(p.apply(100.0, 550.0), (120.0, 68.0));

        // The limiting axis is y: min_y -> bottom margin, max_y -> top margin exactly.
        let tall = Bounds {
            min_x: 0.0,
            max_x: 100.0,
            min_y: 0.0,
            max_y: 1150.0,
        };
        let p = Projection::new(&tall, &ProjectConfig::default());
        assert_eq!(p.apply(0.0, 0.0).1, 125.0);
        assert_eq!(p.apply(0.0, 1150.0).1, 10.0);
        // centred: 10 px wide map in 220 px of room -> starts at 10 + 105.
        assert_eq!(p.apply(0.0, 0.0).0, 115.0);
        assert_eq!(p.apply(100.0, 0.0).0, 125.0);

        // Without flip_y, min_y is at the top margin.
        let config = ProjectConfig {
            flip_y: false,
            ..Default::default()
        };
        let p = Projection::new(&tall, &config);
        assert_eq!(p.apply(0.0, 0.0).1, 10.0);
        assert_eq!(p.apply(0.0, 1150.0).1, 125.0);
    }

    #[test]
    fn rotation_turns_around_the_centre() {
        // A square world rotated by 90 degrees: the right edge's midpoint goes to the top.
        let square = Bounds {
            min_x: -100.0,
            max_x: 100.0,
            min_y: -100.0,
            max_y: 100.0,
        };
        let config = ProjectConfig {
            width: 220,
            height: 220,
            rotation_deg: 90.0,
            ..Default::default()
        };
        let p = Projection::new(&square, &config);
        assert_eq!(p.apply(0.0, 0.0), (110.0, 110.0));
        assert_eq!(p.apply(100.0, 0.0), (110.0, 10.0)); // +x -> +y (up, row 10)
        assert_eq!(p.apply(0.0, 100.0), (10.0, 110.0)); // +y -> -x (left)
                                                        // 45 degrees: the rotated box is larger (diagonal), so everything still fits.
        let config = ProjectConfig {
            rotation_deg: 45.0,
            ..config
        };
        let p = Projection::new(&square, &config);
        let (x, y) = p.apply(100.0, 100.0);
        assert_eq!((x, y), (110.0, 10.0));
    }

    #[tokio::test]
    async fn frames_wait_for_bounds_and_layouts_are_reprojected() {
        let frame = |x: f64, y: f64| {
            Event::new(
                1,
                Record::Frame(Arc::new(Frame {
                    session_key: "9".into(),
                    t_ms: 100,
                    cars: vec![
                        FrameCar {
                            car: 1,
                            x,
                            y,
                            position: 1,
                        },
                        FrameCar {
                            car: 2,
                            x: 0.0,
                            y: 0.0,
                            position: 2,
                        },
                    ],
                })),
            )
        };
        let layout = TrackLayout {
            session_key: "9".into(),
            track_path: vec![Point { x: 0.0, y: 10.0 }, Point { x: 220.0, y: 60.0 }],
            pit_path: vec![Point { x: 100.0, y: 20.0 }],
            sector_points: vec![SectorPoint {
                id: "Start/Finish".into(),
                x: 220.0,
                y: 10.0,
            }],
            bounds: Bounds {
                min_x: 0.0,
                max_x: 220.0,
                min_y: 10.0,
                max_y: 60.0,
            },
        };
        let out = run_config::<ProjectConfig>(
            "",
            vec![
                frame(5.0, 5.0), // no bounds yet: dropped
                Event::new(2, Record::TrackLayout(Arc::new(layout))),
                frame(220.0, 60.0),
                Event::new(
                    3,
                    Record::Bounds(Bounds {
                        min_x: 0.0,
                        max_x: 440.0,
                        min_y: 10.0,
                        max_y: 60.0,
                    }),
                ),
                frame(220.0, 60.0),
            ],
        )
        .await;
        let kinds: Vec<RecordKind> = out.iter().map(|e| e.kind()).collect();
        assert_eq!(
            kinds,
            vec![
                RecordKind::TrackLayout,
                RecordKind::Frame,
                RecordKind::TrackLayout,
                RecordKind::Frame
            ]
        );
        let Record::TrackLayout(first) = &out[0].record else {
            unreachable!()
        };
        // Scale 1 (220 world units in 220 px); y room 115 for 50 units: centred.
        assert_eq!(first.track_path[0], Point { x: 10.0, y: 93.0 });
        assert_eq!(first.track_path[1], Point { x: 230.0, y: 43.0 });
        assert_eq!(first.sector_points[0].x, 230.0);
        assert_eq!(
            first.bounds,
            Bounds {
                min_x: 10.0,
                max_x: 230.0,
                min_y: 43.0,
                max_y: 93.0
            }
        );
        let Record::Frame(f) = &out[1].record else {
            unreachable!()
        };
        assert_eq!((f.cars[0].x, f.cars[0].y), (230.0, 43.0));
        assert_eq!((f.cars[1].x, f.cars[1].y), (0.0, 0.0), "0,0 stays unplaced");
        // After the Bounds record (twice as wide) the same point sits in the middle.
        let Record::Frame(f) = &out[3].record else {
            unreachable!()
        };
        assert_eq!(f.cars[0].x, 120.0);
        let Record::TrackLayout(second) = &out[2].record else {
            unreachable!()
        };
        assert_eq!(second.track_path[1].x, 120.0);
        assert_eq!(out[2].time_ns, 2);
    }

    #[tokio::test]
    async fn static_bounds_win() {
        let out = run_config::<ProjectConfig>(
            "width = 100\nheight = 100\nmargin = 0\nbounds = { min_x = 0.0, max_x = 10.0, min_y = 0.0, max_y = 10.0 }",
            vec![
                Event::new(
                    0,
                    Record::Bounds(Bounds {
                        min_x: -100.0,
                        max_x: 100.0,
                        min_y: -100.0,
                        max_y: 100.0,
                    }),
                ),
                Event::new(
                    1,
                    Record::Frame(Arc::new(Frame {
                        session_key: "1".into(),
                        t_ms: 0,
                        cars: vec![FrameCar {
                            car: 1,
                            x: 10.0,
                            y: 10.0,
                            position: 0,
                        }],
                    })),
                ),
            ],
        )
        .await;
        let Record::Frame(f) = &out[0].record else {
            unreachable!()
        };
        assert_eq!((f.cars[0].x, f.cars[0].y), (100.0, 0.0));
    }

    #[test]
    fn options_are_checked() {
        let config: ProjectConfig = parse_config("margin = 70");
        let problems = config.check();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "margin");
        let config: ProjectConfig =
            parse_config("bounds = { min_x = 5.0, max_x = 1.0, min_y = 0.0, max_y = 1.0 }");
        assert_eq!(config.check()[0].key, "bounds");
        assert!(ProjectConfig::default().check().is_empty());
    }
}
