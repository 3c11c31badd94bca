//! `pitwall-flow plot FILE.parquet -o lap.png`: stacked line charts of telemetry columns.
//!
//! One PNG, one panel per column, the panels sharing the x axis:
//! - x is time in seconds from the first sample (`t_ns`, `time_ns` or `monotonic_ns`; the
//!   row number when there is no time column), or with `--x distance` the lap distance:
//!   `distance_m`/`lap_distance_m` in metres, or `spline` (0..1 round the lap), plus the
//!   lap number (`lap`, `completed_laps`) when several laps are drawn, so laps follow on;
//! - each panel is titled with its column and unit, has axis labels and a light grid;
//! - a title line names the file, and the game, car and track when the file has them;
//! - `--lap N` keeps the rows whose lap column equals N; `--limit N` the first N rows.
//!
//! Columns default to speed, rpm, gear, throttle, brake and steering (whichever exist, by
//! the names of the original converter or of the `parquet` sink), else the first numeric
//! columns. Long series are decimated for drawing: per pixel column the minimum and maximum
//! are kept (in the order they occurred), so spikes survive and a million rows draw as fast
//! as a thousand. The file is read twice, batch by batch (x range first, then values), so
//! memory does not grow with the recording.
//!
//! Text needs a TrueType font, loaded at run time: `PITWALL_FONT` if set, else DejaVu Sans or
//! Liberation Sans from the usual system paths (Debian: `apt install fonts-dejavu-core`).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::{is_numeric, is_text, ParquetFile, ToolError};

/// Image width in pixels.
pub const WIDTH: u32 = 1600;
/// Height of one panel in pixels.
pub const PANEL_HEIGHT: u32 = 300;
/// Height of the title lines at the top.
const TITLE_HEIGHT: u32 = 76;
/// Height of a panel's own title above its chart.
const PANEL_TITLE_HEIGHT: u32 = 30;
const MARGIN_LEFT: u32 = 16;
const MARGIN_RIGHT: u32 = 36;
const Y_LABEL_AREA: u32 = 84;
const X_LABEL_AREA: u32 = 44;
/// Pixel columns of a chart's plotting area: one decimation bin each.
const PLOT_WIDTH: usize = (WIDTH - MARGIN_LEFT - MARGIN_RIGHT - Y_LABEL_AREA) as usize;

/// The default panels: the first column of each group that the file has.
const DEFAULT_COLUMNS: [&[&str]; 6] = [
    &["speed_kmh", "speed"],
    &["rpm", "engine_rpm"],
    &["gear"],
    &["gas", "throttle"],
    &["brake"],
    &["steer", "steering"],
];
const TIME_COLUMNS: [(&str, f64); 5] = [
    ("t_ns", 1e-9),
    ("time_ns", 1e-9),
    ("monotonic_ns", 1e-9),
    ("t_s", 1.0),
    ("time_s", 1.0),
];
const METRE_COLUMNS: [&str; 3] = ["lap_distance_m", "distance_m", "lap_distance"];
const FRACTION_COLUMNS: [&str; 2] = ["spline", "normalized_car_pos"];
const LAP_COLUMNS: [&str; 3] = ["lap", "completed_laps", "lap_number"];

/// What the x axis shows.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum XAxis {
    Time,
    Distance,
}

/// What `plot` was asked to do.
#[derive(Clone, Debug)]
pub struct PlotOptions {
    pub path: PathBuf,
    /// Columns to draw, one panel each; empty for the defaults.
    pub columns: Vec<String>,
    pub output: PathBuf,
    pub x: XAxis,
    /// Only the first N (selected) rows.
    pub limit: Option<usize>,
    /// Only rows whose lap column equals this.
    pub lap: Option<i64>,
}

/// What `plot` drew.
#[derive(Clone, Debug)]
pub struct PlotSummary {
    pub output: PathBuf,
    pub columns: Vec<String>,
    pub rows: u64,
    pub width: u32,
    pub height: u32,
}

/// Where x comes from.
#[derive(Clone, Debug)]
enum XSource {
    /// A time column: x = (value - first) * scale, in seconds.
    Time { column: String, scale: f64 },
    /// Lap distance in metres.
    Metres { column: String },
    /// Fraction of the lap, plus the lap number from `lap_column` when set.
    Fraction {
        column: String,
        lap_column: Option<String>,
    },
    /// No time column: the row number.
    Row,
}

impl XSource {
    fn column(&self) -> Option<&str> {
        match self {
            Self::Time { column, .. } | Self::Metres { column } | Self::Fraction { column, .. } => {
                Some(column)
            }
            Self::Row => None,
        }
    }

    fn label(&self) -> String {
        match self {
            Self::Time { .. } => "time (s)".to_string(),
            Self::Metres { column } => format!("lap distance (m, {column})"),
            Self::Fraction {
                column,
                lap_column: Some(lap),
            } => format!("laps ({lap} + {column})"),
            Self::Fraction { column, .. } => {
                format!("lap distance (fraction of the lap, {column})")
            }
            Self::Row => "row".to_string(),
        }
    }
}

/// A raw x value: integers stay exact until the origin is subtracted.
#[derive(Copy, Clone, Debug, PartialEq)]
enum Raw {
    Int(i64),
    Float(f64),
}

/// Reads x, the lap and the selection from batches the same way in both passes.
struct Selector {
    x: XSource,
    lap_column: Option<String>,
    lap: Option<i64>,
    limit: Option<usize>,
    /// Rows selected so far (for `limit` and the row-number x).
    taken: u64,
}

impl Selector {
    /// The selected rows of a batch with their raw x.
    fn select(&mut self, batch: &RecordBatch) -> Vec<(usize, Raw)> {
        let laps = self
            .lap_column
            .as_deref()
            .and_then(|name| batch.column_by_name(name))
            .and_then(|c| arrow_cast::cast(c, &DataType::Int64).ok());
        let laps = laps.as_ref().map(|l| l.as_primitive::<Int64Type>());
        let column = self.x.column().and_then(|name| batch.column_by_name(name));
        let ints = column
            .filter(|c| c.data_type().is_integer())
            .and_then(|c| arrow_cast::cast(c, &DataType::Int64).ok());
        let ints = ints.as_ref().map(|c| c.as_primitive::<Int64Type>());
        let floats = column
            .filter(|c| !c.data_type().is_integer())
            .and_then(|c| arrow_cast::cast(c, &DataType::Float64).ok());
        let floats = floats.as_ref().map(|c| c.as_primitive::<Float64Type>());

        let mut rows = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            if self.limit.is_some_and(|limit| self.taken >= limit as u64) {
                break;
            }
            let lap = laps.and_then(|l| l.is_valid(row).then(|| l.value(row)));
            if let Some(wanted) = self.lap {
                if lap != Some(wanted) {
                    continue;
                }
            }
            let raw = match &self.x {
                XSource::Row => Some(Raw::Int(self.taken as i64)),
                XSource::Fraction {
                    lap_column: Some(_),
                    ..
                } => {
                    let fraction = floats.and_then(|f| f.is_valid(row).then(|| f.value(row)));
                    match (fraction, lap) {
                        (Some(f), Some(lap)) => Some(Raw::Float(lap as f64 + f)),
                        _ => None,
                    }
                }
                _ => match (ints, floats) {
                    (Some(ints), _) => ints.is_valid(row).then(|| Raw::Int(ints.value(row))),
                    (_, Some(floats)) => floats
                        .is_valid(row)
                        .then(|| floats.value(row))
                        .filter(|v| v.is_finite())
                        .map(Raw::Float),
                    _ => None,
                },
            };
            // Rows count towards the limit whether or not their x is usable.
            self.taken += 1;
            if let Some(raw) = raw {
                rows.push((row, raw));
            }
        }
        rows
    }

    fn done(&self) -> bool {
        self.limit.is_some_and(|limit| self.taken >= limit as u64)
    }
}

/// The x mapping, known after the first pass.
#[derive(Copy, Clone, Debug)]
struct XMap {
    origin: Raw,
    scale: f64,
    min: f64,
    max: f64,
}

impl XMap {
    fn x(&self, raw: Raw) -> f64 {
        let offset = match (raw, self.origin) {
            (Raw::Int(v), Raw::Int(o)) => (v as i128 - o as i128) as f64,
            (Raw::Int(v), Raw::Float(o)) => v as f64 - o,
            (Raw::Float(v), Raw::Int(o)) => v - o as f64,
            (Raw::Float(v), Raw::Float(o)) => v - o,
        };
        offset * self.scale
    }
}

/// Min and max of one pixel column, with where they occurred (to draw them in order).
#[derive(Copy, Clone, Debug)]
struct Bin {
    min: f64,
    max: f64,
    min_at: u64,
    max_at: u64,
    count: u32,
}

impl Default for Bin {
    fn default() -> Self {
        Self {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            min_at: 0,
            max_at: 0,
            count: 0,
        }
    }
}

/// Decimated series of one column: a [`Bin`] per pixel column.
struct Series {
    name: String,
    integer: bool,
    bins: Vec<Bin>,
}

impl Series {
    fn add(&mut self, bin: usize, value: f64, at: u64) {
        let b = &mut self.bins[bin];
        if value < b.min {
            b.min = value;
            b.min_at = at;
        }
        if value > b.max {
            b.max = value;
            b.max_at = at;
        }
        b.count += 1;
    }

    fn range(&self) -> Option<(f64, f64)> {
        let used = self.bins.iter().filter(|b| b.count > 0);
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for b in used {
            lo = lo.min(b.min);
            hi = hi.max(b.max);
        }
        (lo <= hi).then_some((lo, hi))
    }

    /// The points to draw: per bin its min and max in the order they occurred.
    fn points(&self, x_min: f64, x_max: f64) -> Vec<(f64, f64)> {
        let width = self.bins.len() as f64;
        let mut points = Vec::with_capacity(self.bins.len() * 2);
        for (i, b) in self.bins.iter().enumerate() {
            if b.count == 0 {
                continue;
            }
            let x = x_min + (i as f64 + 0.5) / width * (x_max - x_min);
            if b.min == b.max {
                points.push((x, b.min));
            } else if b.min_at <= b.max_at {
                points.push((x, b.min));
                points.push((x, b.max));
            } else {
                points.push((x, b.max));
                points.push((x, b.min));
            }
        }
        points
    }
}

/// Draw the plot and write the PNG.
pub fn plot(options: &PlotOptions) -> Result<PlotSummary, ToolError> {
    let file = ParquetFile::open(&options.path)?;
    let columns = choose_columns(&file, &options.columns)?;
    let x = choose_x(&file, options)?;
    let lap_column = LAP_COLUMNS
        .iter()
        .find(|name| {
            file.data_type(name)
                .is_some_and(|t| t.is_integer() || t.is_floating())
        })
        .map(|s| s.to_string());
    if options.lap.is_some() && lap_column.is_none() {
        return Err(ToolError::NoNumeric {
            message: format!(
                "--lap needs a lap column, and {} has none",
                options.path.display()
            ),
            help: format!(
                "lap columns are named {}; leave out --lap to plot every row",
                LAP_COLUMNS.join(", ")
            ),
        });
    }
    load_fonts()?;

    let mut read_columns: Vec<String> = Vec::new();
    if let Some(name) = x.column() {
        read_columns.push(name.to_string());
    }
    if let Some(name) = &lap_column {
        read_columns.push(name.clone());
    }
    let make_selector = || Selector {
        x: x.clone(),
        lap_column: lap_column.clone(),
        lap: options.lap,
        limit: options.limit,
        taken: 0,
    };

    // Pass 1: the x range (and the laps there are, to explain an empty --lap).
    let meta = file.reopen()?;
    let title = title_values(meta)?;
    let pass1 = file.reopen()?;
    let indices = pass1.resolve_columns(&read_columns)?;
    let mut selector = make_selector();
    let (mut raw_min, mut raw_max): (Option<Raw>, Option<Raw>) = (None, None);
    let mut rows = 0u64;
    let mut laps_seen: Option<(i64, i64)> = None;
    let path = options.path.clone();
    let read_error = |e: arrow_schema::ArrowError| ToolError::Read {
        path: path.clone(),
        message: e.to_string(),
    };
    for batch in pass1.read(&indices, None)? {
        let batch = batch.map_err(read_error)?;
        if options.lap.is_some() {
            laps_seen = merge_lap_range(laps_seen, &batch, lap_column.as_deref());
        }
        for (_, raw) in selector.select(&batch) {
            rows += 1;
            if raw_min.is_none_or(|m| less(raw, m)) {
                raw_min = Some(raw);
            }
            if raw_max.is_none_or(|m| less(m, raw)) {
                raw_max = Some(raw);
            }
        }
        if selector.done() {
            break;
        }
    }
    let (Some(raw_min), Some(raw_max)) = (raw_min, raw_max) else {
        return Err(no_rows(options, &x, laps_seen));
    };
    let xmap = x_map(&x, raw_min, raw_max);

    // Pass 2: the values, binned per pixel column.
    let mut series: Vec<Series> = columns
        .iter()
        .map(|name| Series {
            name: name.clone(),
            integer: file.data_type(name).is_some_and(|t| t.is_integer()),
            bins: vec![Bin::default(); PLOT_WIDTH],
        })
        .collect();
    for name in &columns {
        if !read_columns.contains(name) {
            read_columns.push(name.clone());
        }
    }
    let indices = file.resolve_columns(&read_columns)?;
    let mut selector = make_selector();
    let mut ordinal = 0u64;
    let span = xmap.max - xmap.min;
    for batch in file.read(&indices, None)? {
        let batch = batch.map_err(read_error)?;
        let selected = selector.select(&batch);
        let values: Vec<Option<arrow_array::ArrayRef>> = columns
            .iter()
            .map(|name| {
                batch
                    .column_by_name(name)
                    .and_then(|c| arrow_cast::cast(c, &DataType::Float64).ok())
            })
            .collect();
        for (row, raw) in selected {
            let x = xmap.x(raw);
            let bin = (((x - xmap.min) / span) * PLOT_WIDTH as f64).floor();
            let bin = (bin.max(0.0) as usize).min(PLOT_WIDTH - 1);
            for (s, column) in series.iter_mut().zip(&values) {
                let Some(column) = column else { continue };
                let column = column.as_primitive::<Float64Type>();
                if column.is_valid(row) {
                    let v = column.value(row);
                    if v.is_finite() {
                        s.add(bin, v, ordinal);
                    }
                }
            }
            ordinal += 1;
        }
        if selector.done() {
            break;
        }
    }

    let height = TITLE_HEIGHT + PANEL_HEIGHT * series.len() as u32;
    let subtitle = subtitle(options, &x, &xmap, rows);
    let image = draw(
        &series,
        &x,
        &xmap,
        &title_line(options, &title),
        &subtitle,
        height,
    )?;
    write_png(&options.output, WIDTH, height, &image)?;
    Ok(PlotSummary {
        output: options.output.clone(),
        columns,
        rows,
        width: WIDTH,
        height,
    })
}

fn less(a: Raw, b: Raw) -> bool {
    match (a, b) {
        (Raw::Int(a), Raw::Int(b)) => a < b,
        (Raw::Int(a), Raw::Float(b)) => (a as f64) < b,
        (Raw::Float(a), Raw::Int(b)) => a < b as f64,
        (Raw::Float(a), Raw::Float(b)) => a < b,
    }
}

fn x_map(x: &XSource, raw_min: Raw, raw_max: Raw) -> XMap {
    let (origin, scale) = match x {
        XSource::Time { scale, .. } => (raw_min, *scale),
        _ => (Raw::Int(0), 1.0),
    };
    let mut map = XMap {
        origin,
        scale,
        min: 0.0,
        max: 0.0,
    };
    map.min = map.x(raw_min);
    map.max = map.x(raw_max);
    if matches!(
        x,
        XSource::Fraction {
            lap_column: None,
            ..
        }
    ) {
        // One lap: show all of it, not just the part that was recorded.
        map.min = map.min.min(0.0);
        map.max = map.max.max(1.0);
    }
    if map.max - map.min <= 0.0 {
        map.min -= 0.5;
        map.max += 0.5;
    }
    map
}

fn merge_lap_range(
    seen: Option<(i64, i64)>,
    batch: &RecordBatch,
    lap_column: Option<&str>,
) -> Option<(i64, i64)> {
    let column = batch.column_by_name(lap_column?)?;
    let laps = arrow_cast::cast(column, &DataType::Int64).ok()?;
    let laps = laps.as_primitive::<Int64Type>();
    let mut range = seen;
    for lap in laps.iter().flatten() {
        range = Some(match range {
            Some((lo, hi)) => (lo.min(lap), hi.max(lap)),
            None => (lap, lap),
        });
    }
    range
}

fn no_rows(options: &PlotOptions, x: &XSource, laps: Option<(i64, i64)>) -> ToolError {
    match (options.lap, laps) {
        (Some(lap), Some((lo, hi))) => ToolError::NoRows {
            message: format!("no rows of lap {lap} in {}", options.path.display()),
            help: format!("the file has laps {lo} to {hi}"),
        },
        (Some(lap), None) => ToolError::NoRows {
            message: format!("no rows of lap {lap} in {}", options.path.display()),
            help: "the lap column has no values".to_string(),
        },
        _ if options.limit == Some(0) => ToolError::NoRows {
            message: "--limit 0 keeps no rows".to_string(),
            help: "give --limit at least 1, or leave it out to plot every row".to_string(),
        },
        _ => ToolError::NoRows {
            message: format!("no rows to plot in {}", options.path.display()),
            help: match x.column() {
                Some(column) => format!("the x column `{column}` has no values (try --x time)"),
                None => "the file is empty".to_string(),
            },
        },
    }
}

/// The columns to draw: the user's (checked), else the defaults the file has, else its first
/// numeric columns.
fn choose_columns(file: &ParquetFile, wanted: &[String]) -> Result<Vec<String>, ToolError> {
    let numeric: Vec<String> = file
        .column_names()
        .into_iter()
        .filter(|name| file.data_type(name).is_some_and(|t| is_numeric(&t)))
        .collect();
    if !wanted.is_empty() {
        file.resolve_columns(wanted)?;
        let mut chosen: Vec<String> = Vec::new();
        for name in wanted {
            if chosen.contains(name) {
                continue;
            }
            let data_type = file.data_type(name).unwrap_or(DataType::Null);
            if !is_numeric(&data_type) {
                return Err(ToolError::NoNumeric {
                    message: format!(
                        "column `{name}` holds {}, not numbers: it cannot be plotted",
                        super::type_name(&data_type)
                    ),
                    help: numeric_help(&numeric),
                });
            }
            chosen.push(name.clone());
        }
        return Ok(chosen);
    }
    let defaults: Vec<String> = DEFAULT_COLUMNS
        .iter()
        .filter_map(|group| group.iter().find(|name| numeric.iter().any(|n| n == *name)))
        .map(|s| s.to_string())
        .collect();
    if !defaults.is_empty() {
        return Ok(defaults);
    }
    let skip = |name: &str| {
        TIME_COLUMNS.iter().any(|(t, _)| *t == name)
            || LAP_COLUMNS.contains(&name)
            || name.ends_with("_id")
    };
    let first: Vec<String> = numeric
        .iter()
        .filter(|name| !skip(name))
        .take(DEFAULT_COLUMNS.len())
        .cloned()
        .collect();
    if first.is_empty() {
        return Err(ToolError::NoNumeric {
            message: format!("{} has no numeric column to plot", file.path.display()),
            help: if numeric.is_empty() {
                "every column holds text or nested values; `pitwall-flow inspect` shows them"
                    .to_string()
            } else {
                format!(
                    "its only numeric columns are times or laps ({}); name one with --columns",
                    numeric.join(", ")
                )
            },
        });
    }
    Ok(first)
}

fn numeric_help(numeric: &[String]) -> String {
    if numeric.is_empty() {
        "the file has no numeric column".to_string()
    } else {
        format!("numeric columns: {}", numeric.join(", "))
    }
}

fn choose_x(file: &ParquetFile, options: &PlotOptions) -> Result<XSource, ToolError> {
    let numeric = |name: &str| {
        file.data_type(name)
            .is_some_and(|t| t.is_integer() || t.is_floating())
    };
    match options.x {
        XAxis::Time => Ok(TIME_COLUMNS
            .iter()
            .find(|(name, _)| numeric(name))
            .map(|(name, scale)| XSource::Time {
                column: name.to_string(),
                scale: *scale,
            })
            .unwrap_or(XSource::Row)),
        XAxis::Distance => {
            if let Some(name) = METRE_COLUMNS.iter().find(|name| numeric(name)) {
                return Ok(XSource::Metres {
                    column: name.to_string(),
                });
            }
            if let Some(name) = FRACTION_COLUMNS.iter().find(|name| numeric(name)) {
                let lap_column = LAP_COLUMNS
                    .iter()
                    .find(|lap| numeric(lap))
                    .filter(|_| options.lap.is_none());
                return Ok(XSource::Fraction {
                    column: name.to_string(),
                    lap_column: lap_column.map(|s| s.to_string()),
                });
            }
            Err(ToolError::NoNumeric {
                message: format!(
                    "--x distance needs a lap distance column, and {} has none",
                    options.path.display()
                ),
                help: format!(
                    "lap distance columns are named {}, {}; use --x time instead",
                    METRE_COLUMNS.join(", "),
                    FRACTION_COLUMNS.join(", ")
                ),
            })
        }
    }
}

/// Game, car, track... for the title: the first value of each such column.
#[derive(Default, Debug)]
struct TitleValues {
    game: Option<String>,
    car: Option<String>,
    track: Option<String>,
    track_configuration: Option<String>,
    driver: Option<String>,
}

fn title_values(file: ParquetFile) -> Result<TitleValues, ToolError> {
    let wanted: [(&str, &[&str]); 5] = [
        ("game", &["game"]),
        ("car", &["car_model", "car", "car_name"]),
        ("track", &["track", "track_name"]),
        ("config", &["track_configuration", "track_config"]),
        ("driver", &["driver", "driver_name"]),
    ];
    let mut names: Vec<(&str, String)> = Vec::new();
    for (slot, candidates) in wanted {
        if let Some(name) = candidates
            .iter()
            .find(|name| file.data_type(name).is_some_and(|t| is_text(&t)))
        {
            names.push((slot, name.to_string()));
        }
    }
    let mut values = TitleValues::default();
    if names.is_empty() {
        return Ok(values);
    }
    let columns: Vec<String> = names.iter().map(|(_, name)| name.clone()).collect();
    let indices = file.resolve_columns(&columns)?;
    let path = file.path.clone();
    for batch in file.read(&indices, Some(50_000))? {
        let batch = batch.map_err(|e| ToolError::Read {
            path: path.clone(),
            message: e.to_string(),
        })?;
        for (slot, name) in &names {
            let target = match *slot {
                "game" => &mut values.game,
                "car" => &mut values.car,
                "track" => &mut values.track,
                "config" => &mut values.track_configuration,
                _ => &mut values.driver,
            };
            if target.is_some() {
                continue;
            }
            let Some(column) = batch.column_by_name(name) else {
                continue;
            };
            if let Ok(text) = arrow_cast::cast(column, &DataType::Utf8) {
                *target = text
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .find(|v| !v.trim().is_empty())
                    .map(str::to_string);
            }
        }
    }
    Ok(values)
}

fn title_line(options: &PlotOptions, values: &TitleValues) -> String {
    let file = options
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| options.path.display().to_string());
    let mut parts = vec![file];
    parts.extend(values.game.clone());
    parts.extend(values.car.clone());
    parts.extend(values.driver.clone());
    match (&values.track, &values.track_configuration) {
        (Some(track), Some(config)) if config != track => parts.push(format!("{track} ({config})")),
        (Some(track), _) => parts.push(track.clone()),
        _ => {}
    }
    parts.join("  ·  ")
}

fn subtitle(options: &PlotOptions, x: &XSource, xmap: &XMap, rows: u64) -> String {
    let rows_text = super::inspect::thousands(rows);
    let mut parts = vec![match options.limit {
        Some(limit) if limit as u64 == rows => format!("first {rows_text} rows"),
        _ => format!("{rows_text} rows"),
    }];
    if let XSource::Time { .. } = x {
        parts.push(duration(xmap.max - xmap.min));
    }
    if let Some(lap) = options.lap {
        parts.push(format!("lap {lap}"));
    }
    parts.push(format!("x: {}", x.label()));
    parts.push("min/max per pixel column".to_string());
    parts.join("  ·  ")
}

/// The unit of a column, from its name.
pub fn unit_of(name: &str) -> Option<&'static str> {
    let name = name.to_lowercase();
    let exact = match name.as_str() {
        "gas" | "throttle" | "brake" | "clutch" => Some("0 to 1"),
        "steer" | "steering" => Some("-1 left to 1 right"),
        "gear" => Some("-1 R, 0 N"),
        "rpm" | "engine_rpm" | "max_rpm" => Some("rpm"),
        "spline" | "normalized_car_pos" => Some("fraction of the lap"),
        "ax_g" | "ay_g" | "az_g" => Some("g"),
        _ => None,
    };
    if exact.is_some() {
        return exact;
    }
    const SUFFIXES: [(&str, &str); 13] = [
        ("_kmh", "km/h"),
        ("_mps", "m/s"),
        ("_rpm", "rpm"),
        ("_ns", "ns"),
        ("_ms", "ms"),
        ("_s", "s"),
        ("_m", "m"),
        ("_g", "g"),
        ("_c", "°C"),
        ("_kpa", "kPa"),
        ("_deg", "°"),
        ("_rad", "rad"),
        ("_pct", "%"),
    ];
    SUFFIXES
        .iter()
        .find(|(suffix, _)| name.ends_with(suffix))
        .map(|(_, unit)| *unit)
}

/// The y axis label of a column: its unit, or what it is when it has none.
fn axis_label(name: &str) -> String {
    match name {
        "gas" | "throttle" | "brake" | "clutch" => "pedal".to_string(),
        "steer" | "steering" => "steering".to_string(),
        "gear" => "gear".to_string(),
        _ => unit_of(name)
            .filter(|unit| unit.len() <= 12)
            .unwrap_or(name)
            .to_string(),
    }
}

/// A duration for the subtitle: `81.1 s (1:21.1)`.
fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    let minutes = (seconds / 60.0).floor();
    if minutes < 60.0 {
        return format!(
            "{seconds:.1} s ({minutes:.0}:{:04.1})",
            seconds - minutes * 60.0
        );
    }
    let hours = (minutes / 60.0).floor();
    format!(
        "{seconds:.0} s ({hours:.0}:{:02.0}:{:02.0})",
        minutes - hours * 60.0,
        (seconds - minutes * 60.0).floor()
    )
}

/// The colour of a column's line: pedals green and red, the rest from a palette.
fn colour_of(name: &str, index: usize) -> RGBColor {
    const PALETTE: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(23, 160, 180),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(188, 189, 34),
        RGBColor(127, 127, 127),
    ];
    match name {
        "gas" | "throttle" => RGBColor(44, 160, 44),
        "brake" => RGBColor(214, 39, 40),
        "speed_kmh" | "speed" => PALETTE[0],
        "rpm" | "engine_rpm" => PALETTE[1],
        "gear" => PALETTE[2],
        "steer" | "steering" => PALETTE[3],
        _ => PALETTE[index % PALETTE.len()],
    }
}

/// The y range of a panel: the data's, padded, with the natural range of pedals and
/// steering when the data stays inside it.
fn y_range(series: &Series) -> (f64, f64) {
    let Some((lo, hi)) = series.range() else {
        return (0.0, 1.0);
    };
    let name = series.name.as_str();
    if matches!(name, "gas" | "throttle" | "brake" | "clutch") && lo >= 0.0 && hi <= 1.0 {
        return (-0.04, 1.04);
    }
    if matches!(name, "steer" | "steering") && lo >= -1.0 && hi <= 1.0 {
        let reach = lo.abs().max(hi.abs()).max(0.05) * 1.1;
        return (-reach, reach);
    }
    if series.integer {
        return (lo - 0.5, hi + 0.5);
    }
    let span = hi - lo;
    if span <= 0.0 {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    (lo - span * 0.06, hi + span * 0.06)
}

/// Decimals for tick labels of a range drawn with about `ticks` labels.
fn decimals(span: f64, ticks: usize) -> usize {
    let step = span / ticks.max(1) as f64;
    if step <= 0.0 || !step.is_finite() {
        return 0;
    }
    let digits = -step.log10().floor();
    digits.clamp(0.0, 6.0) as usize
}

/// A tick label: `decimals` at most, trailing zeros dropped (`0.10` is `0.1`, `10.0` is `10`).
fn tick_label(value: f64, decimals: usize) -> String {
    let mut text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.truncate(text.trim_end_matches('0').trim_end_matches('.').len());
    }
    if text == "-0" {
        text = "0".to_string();
    }
    text
}

fn draw_error<E: std::fmt::Display>(e: E) -> ToolError {
    ToolError::Draw(e.to_string())
}

/// Draw every panel into an RGB buffer.
fn draw(
    series: &[Series],
    x: &XSource,
    xmap: &XMap,
    title: &str,
    subtitle: &str,
    height: u32,
) -> Result<Vec<u8>, ToolError> {
    let mut buffer = vec![255u8; WIDTH as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let (top, body) = root.split_vertically(TITLE_HEIGHT);
        let dark = RGBColor(30, 30, 30);
        let grey = RGBColor(110, 110, 110);
        top.draw_text(
            title,
            &("sans-serif", 26, FontStyle::Bold).into_font().color(&dark),
            (MARGIN_LEFT as i32, 14),
        )
        .map_err(draw_error)?;
        top.draw_text(
            subtitle,
            &("sans-serif", 16).into_font().color(&grey),
            (MARGIN_LEFT as i32, 48),
        )
        .map_err(draw_error)?;

        let panels = body.split_evenly((series.len(), 1));
        let x_decimals = decimals(xmap.max - xmap.min, 16) + 1;
        let x_format = |v: &f64| tick_label(*v, x_decimals);
        for (i, (s, area)) in series.iter().zip(&panels).enumerate() {
            let colour = colour_of(&s.name, i);
            let (head, chart_area) = area.split_vertically(PANEL_TITLE_HEIGHT);
            let label = match unit_of(&s.name) {
                Some(unit) if unit != s.name => format!("{}  ({unit})", s.name),
                _ => s.name.clone(),
            };
            head.draw_text(
                &label,
                &("sans-serif", 19, FontStyle::Bold).into_font().color(&dark),
                ((MARGIN_LEFT + Y_LABEL_AREA) as i32, 8),
            )
            .map_err(draw_error)?;

            let (y0, y1) = y_range(s);
            let mut chart = ChartBuilder::on(&chart_area)
                .margin_left(MARGIN_LEFT)
                .margin_right(MARGIN_RIGHT)
                .margin_top(4)
                .margin_bottom(6)
                .x_label_area_size(X_LABEL_AREA)
                .y_label_area_size(Y_LABEL_AREA)
                .build_cartesian_2d(xmap.min..xmap.max, y0..y1)
                .map_err(draw_error)?;
            let y_decimals = if s.integer {
                0
            } else {
                decimals(y1 - y0, 6) + 1
            };
            let integer = s.integer;
            let y_format = move |v: &f64| {
                if integer && (v - v.round()).abs() > 1e-9 {
                    String::new()
                } else {
                    tick_label(*v, y_decimals)
                }
            };
            let y_desc = axis_label(&s.name);
            let x_desc = if i + 1 == series.len() {
                x.label()
            } else {
                String::new()
            };
            chart
                .configure_mesh()
                .light_line_style(RGBColor(243, 243, 243))
                .bold_line_style(RGBColor(218, 218, 218))
                .axis_style(RGBColor(150, 150, 150))
                .x_labels(16)
                .y_labels(6)
                .x_label_formatter(&x_format)
                .y_label_formatter(&y_format)
                .label_style(("sans-serif", 14).into_font().color(&grey))
                .axis_desc_style(("sans-serif", 15).into_font().color(&dark))
                .x_desc(x_desc)
                .y_desc(y_desc)
                .draw()
                .map_err(draw_error)?;
            // Segment by segment: plotters joins a thick polyline into one polygon, and the
            // sharp reversals of min/max decimation turn that polygon into long spikes.
            let points = s.points(xmap.min, xmap.max);
            let style = colour.stroke_width(2);
            if let [only] = points.as_slice() {
                chart
                    .draw_series(std::iter::once(Circle::new(*only, 2, style.filled())))
                    .map_err(draw_error)?;
            }
            chart
                .draw_series(
                    points
                        .windows(2)
                        .map(|pair| PathElement::new(vec![pair[0], pair[1]], style)),
                )
                .map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(buffer)
}

fn write_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<(), ToolError> {
    let write_error = |message: String| ToolError::Write {
        path: path.to_path_buf(),
        message,
    };
    let file = File::create(path).map_err(|e| write_error(e.to_string()))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| write_error(e.to_string()))?;
    writer
        .write_image_data(rgb)
        .map_err(|e| write_error(e.to_string()))?;
    writer.finish().map_err(|e| write_error(e.to_string()))
}

/// Where fonts usually are: DejaVu and Liberation on Linux distributions, then macOS and
/// Windows' own sans-serif fonts. Each entry: regular, bold.
const FONT_PATHS: [(&str, &str); 8] = [
    (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    ),
    (
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
    ),
    (
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    ),
    (
        "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans-Bold.ttf",
    ),
    (
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    ),
    (
        "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
        "/usr/share/fonts/liberation-sans/LiberationSans-Bold.ttf",
    ),
    (
        "/System/Library/Fonts/Supplemental/Arial.ttf",
        "/System/Library/Fonts/Supplemental/Arial Bold.ttf",
    ),
    (
        "C:\\Windows\\Fonts\\arial.ttf",
        "C:\\Windows\\Fonts\\arialbd.ttf",
    ),
];

const FONT_HELP: &str =
    "install DejaVu fonts (Debian/Ubuntu: `sudo apt install fonts-dejavu-core`, \
     Fedora: `sudo dnf install dejavu-sans-fonts`) or set PITWALL_FONT to a .ttf file";

/// Register a sans-serif font with plotters (once per process); returns the file used.
fn load_fonts() -> Result<PathBuf, ToolError> {
    static LOADED: OnceLock<Result<PathBuf, (String, String)>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let (regular, bold) = find_font()?;
            register(&regular, FontStyle::Normal)?;
            // Bold falls back to the regular face when there is no bold file.
            if let Some(bold) = bold {
                let _ = register(&bold, FontStyle::Bold);
            }
            Ok(regular)
        })
        .clone()
        .map_err(|(message, help)| ToolError::NoFont { message, help })
}

fn find_font() -> Result<(PathBuf, Option<PathBuf>), (String, String)> {
    if let Some(path) = std::env::var_os("PITWALL_FONT").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok((path, None));
        }
        return Err((
            format!("PITWALL_FONT is {}, which is not a file", path.display()),
            "set PITWALL_FONT to a TrueType (.ttf) or OpenType (.otf) font file, or unset it to \
             use DejaVu Sans or Liberation Sans from the system"
                .to_string(),
        ));
    }
    for (regular, bold) in FONT_PATHS {
        let regular = Path::new(regular);
        if regular.is_file() {
            let bold = Path::new(bold);
            return Ok((
                regular.to_path_buf(),
                bold.is_file().then(|| bold.to_path_buf()),
            ));
        }
    }
    Err((
        "none of DejaVu Sans or Liberation Sans is installed in the usual places".to_string(),
        FONT_HELP.to_string(),
    ))
}

fn register(path: &Path, style: FontStyle) -> Result<(), (String, String)> {
    let bytes = std::fs::read(path).map_err(|e| {
        (
            format!("cannot read {}: {e}", path.display()),
            FONT_HELP.to_string(),
        )
    })?;
    // plotters keeps fonts for the life of the process; a CLI run loads at most two.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", style, bytes).map_err(|_| {
        (
            format!("{} is not a font plotters can read", path.display()),
            "use a TrueType (.ttf) or OpenType (.otf) file".to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, integer: bool, values: &[(usize, f64)]) -> Series {
        let mut s = Series {
            name: name.to_string(),
            integer,
            bins: vec![Bin::default(); 10],
        };
        for (at, (bin, v)) in values.iter().enumerate() {
            s.add(*bin, *v, at as u64);
        }
        s
    }

    #[test]
    fn bins_keep_spikes_in_order() {
        // Bin 0: 5, 100 (spike), 4 -> min 4 occurs after the max: max first.
        let s = series("x", false, &[(0, 5.0), (0, 100.0), (0, 4.0), (3, 7.0)]);
        let points = s.points(0.0, 10.0);
        assert_eq!(points, vec![(0.5, 100.0), (0.5, 4.0), (3.5, 7.0)]);
        assert_eq!(s.range(), Some((4.0, 100.0)));
    }

    #[test]
    fn ranges_are_natural_for_pedals_and_integers() {
        assert_eq!(
            y_range(&series("brake", false, &[(0, 0.0), (1, 0.9)])),
            (-0.04, 1.04)
        );
        assert_eq!(
            y_range(&series("gear", true, &[(0, 1.0), (1, 6.0)])),
            (0.5, 6.5)
        );
        let (lo, hi) = y_range(&series("steer", false, &[(0, -0.2), (1, 0.5)]));
        assert!((lo + 0.55).abs() < 1e-9 && (hi - 0.55).abs() < 1e-9);
        let (lo, hi) = y_range(&series("rpm", false, &[(0, 1000.0), (1, 1000.0)]));
        assert!(lo < 1000.0 && hi > 1000.0);
    }

    #[test]
    fn units_come_from_names() {
        assert_eq!(unit_of("speed_kmh"), Some("km/h"));
        assert_eq!(unit_of("rpm"), Some("rpm"));
        assert_eq!(unit_of("tyre_temp_c"), Some("°C"));
        assert_eq!(unit_of("current_lap_s"), Some("s"));
        assert_eq!(unit_of("gas"), Some("0 to 1"));
        assert_eq!(unit_of("place"), None);
    }

    #[test]
    fn time_x_is_exact_for_nanoseconds() {
        let t0 = 1_700_000_000_000_000_001i64;
        let map = x_map(
            &XSource::Time {
                column: "t_ns".into(),
                scale: 1e-9,
            },
            Raw::Int(t0),
            Raw::Int(t0 + 2_500_000_000),
        );
        assert_eq!(map.min, 0.0);
        assert_eq!(map.max, 2.5);
        assert_eq!(map.x(Raw::Int(t0 + 1)), 1e-9);
    }

    #[test]
    fn durations_read_like_lap_times() {
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(81.078), "81.1 s (1:21.1)");
        assert_eq!(duration(3605.0), "3605 s (1:00:05)");
        assert_eq!(duration(6006.0), "6006 s (1:40:06)");
    }

    #[test]
    fn tick_labels_drop_trailing_zeros() {
        assert_eq!(tick_label(0.30000000000000004, 3), "0.3");
        assert_eq!(tick_label(0.05, 3), "0.05");
        assert_eq!(tick_label(10.0, 2), "10");
        assert_eq!(tick_label(7500.0, 0), "7500");
        assert_eq!(tick_label(-0.0001, 2), "0");
    }

    #[test]
    fn tick_decimals_follow_the_step() {
        assert_eq!(decimals(300.0, 6), 0);
        assert_eq!(decimals(1.0, 6), 1);
        assert_eq!(decimals(0.02, 4), 3);
    }
}
