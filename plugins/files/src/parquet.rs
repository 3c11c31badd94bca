//! Sink `parquet`: record events as Apache Parquet files, one file per record kind per run.
//!
//! Parquet is columnar and compressed, so a recording loads straight into pandas, polars,
//! DuckDB or Spark with its columns typed. The sink accepts every record kind; recordings
//! must not lose data, so edges into it `block` by default.
//!
//! Each event is turned into its serde form (`{"time_ns":..,"kind":..,<fields>}`, the same
//! object the `file` sink writes as a line), and rows are buffered per kind. When a kind has
//! `row_group_rows` rows buffered they are written as one row group, which bounds memory.
//!
//! `car_telemetry`, the highest-rate kind (hundreds of records per second per car, millions
//! when converting a recording), skips serde_json altogether: its records go straight into
//! typed Arrow columns ([`crate::car_columns`]) whose fixed schema starts with the original
//! `.pb.gz` converter's columns (`t_ns, game, session, speed_kmh, gas, brake, gear, steer,
//! rpm, ax_g, ay_g, az_g, lap, pos`) and goes on with every other field, arrays flattened
//! (`tyre_temp_c_fl`, ...). Its row groups end at `row_group_rows` rows or at about
//! `row_group_bytes` bytes buffered, whichever comes first, so memory stays bounded whatever
//! the size of the input; rows are sorted by `t_ns` within each row group (a recording
//! replayed in order is sorted throughout). Numbers are written plain, text with dictionaries;
//! row-group statistics (min/max) cover the columns readers filter by (`t_ns`, `time_ns`,
//! `game`, `session`, `track`, `lap`, `pos`, `car_id`), not the measurements.
//!
//! - Files: `{path}/{kind}-{yyyymmddThhmmss}-{n}.parquet`, the time being when the run started
//!   (UTC) and `n` the first number whose file (or `.failed` file) does not exist yet, so
//!   nothing is overwritten. A kind's file is created when its first row group is written.
//! - Schema (kinds other than `car_telemetry`): inferred per kind from that kind's first row
//!   group (Arrow JSON inference), and kept for every later file of the kind in the run.
//!   Columns are `time_ns`, `kind`, then the record's fields. Nested values (objects and
//!   arrays: an MQTT payload object, MQTT topic fields, reference path samples) are stored as
//!   JSON text in a string column; a JSON string stays a plain string, so a string payload
//!   `"on"` and an object payload `{"a":1}` both land in a string column as `on` and
//!   `{"a":1}`. Columns that were null in every inferred row become nullable strings.
//!   Numbers and booleans arriving later in a string column are kept as their text.
//! - Rows that do not fit the schema later (text where a number column was inferred) are
//!   counted as errors and skipped; fields that were never seen while inferring are dropped
//!   from their row (the row is kept) and also counted as errors.
//! - When the input ends (and also when a run stops early with an error) the remaining rows
//!   are written, every file gets its footer, is fsynced and closed: every file the sink
//!   leaves behind is readable. A new run (after a restart) starts new files.
//!
//! All file work (encoding, compression, writes) runs on tokio's blocking pool, one hop per
//! batch.
//!
//! # When writing fails (a full disk)
//!
//! A write error (`No space left on device`, a failing device) neither stops nor stalls the
//! sink, and other sinks of the same sources keep receiving everything:
//!
//! - The file that failed is repaired where possible ([`crate::parquet_file`]): a footer is
//!   written after its last complete row group, so every row group written before the error
//!   stays readable (on Linux the room for that footer is preallocated as the file grows).
//!   If even that fails, the file is cut to its complete row groups and renamed
//!   `*.parquet.failed` (never mistaken for a good file; not readable by Parquet readers);
//!   a file without a complete row group is removed.
//! - One error is logged, naming the component, the kind, the file and the OS error;
//!   failing retries are logged rate-limited (the first few, then every 1000th).
//! - The rows of the row group that failed, and the rows of that kind arriving until a
//!   retry succeeds, are dropped: the sink keeps draining its input, memory stays bounded
//!   (one row group per kind). `component_discarded_events_total` counts the rows lost,
//!   `component_errors_total` each failed file.
//! - With backoff (0.5 s doubling to 10 s, checked as row groups fill up) the next row group
//!   goes to a new file (the next `n`); when one is written the sink logs that it writes
//!   again and how many rows were lost. At the end of a run that lost rows, a warning gives
//!   the total (`lost_rows`).
//!
//! # What an unfinished file can lose
//!
//! A Parquet file is readable only once its footer is written, when it is closed. A process
//! that is killed (SIGKILL, power loss) leaves its open files without footers: their rows are
//! on disk but no reader finds them, and the rows still buffered are gone. `roll_interval_s`
//! bounds that: every kind's file is closed (its buffered rows written as a row group, however
//! small) at the first batch arriving that long after its first row, and the kind goes on in
//! a new file. The
//! price: more and smaller files and row groups (less compression, slower scans, a footer
//! each). Recordings that must survive a crash should also go to `proto_record` (`.pb.gz`),
//! which is flushed every `flush_interval_ms` and readable up to the cut, and can be converted
//! to Parquet afterwards.
//!
//! ```toml
//! [sinks.archive]
//! type = "parquet"
//! inputs = ["f1"]
//! path = "recordings/parquet"
//! # kinds = ["lap", "race_position"]   # default: every kind
//! row_group_rows = 65536
//! row_group_bytes = 67108864           # car_telemetry row groups also end at ~64 MiB
//! compression = "snappy"               # or "none"
//! # roll_interval_s = 300              # close files every 5 min (default: one file per run)
//! ```

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::parquet::basic::Compression;
use ::parquet::file::properties::{EnabledStatistics, WriterProperties};
use ::parquet::schema::types::ColumnPath;
use arrow_array::RecordBatch;
use arrow_json::reader::{infer_json_schema_from_iterator, ReaderBuilder};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use pitwall_api::backoff::Backoff;
use pitwall_api::component::OptionProblem;
use pitwall_api::record::format_iso8601_ns;
use pitwall_api::{
    Batch, BuildContext, CarTelemetry, Component, ComponentConfig, ComponentError, ComponentSpec,
    Event, Io, Kinds, Record, RecordKind, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::car_columns::{self, CarColumns};
use crate::parquet_file::{Failure, ParquetFile};
use crate::{parse_kind_names, should_log};

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetConfig {
    /// Directory to write into, relative to the pipeline file; created if missing. Files are
    /// named `{kind}-{yyyymmddThhmmss}-{n}.parquet`.
    pub path: String,
    /// Only record these kinds (default: every kind).
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// Rows buffered per kind before they are written as one row group (bounds memory).
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// `car_telemetry` row groups also end once their buffered columns take about this many
    /// bytes (bounds memory whatever the row count).
    #[serde(default = "default_row_group_bytes")]
    pub row_group_bytes: usize,
    /// Column compression.
    #[serde(default)]
    pub compression: ParquetCompression,
    /// Close each kind's file once this many seconds have passed since its first row
    /// (checked as batches arrive; buffered rows are written first) and go on in a new one:
    /// a killed process then loses about this much at most (a Parquet file is readable only
    /// once closed). Default: one file per kind per run.
    #[serde(default)]
    pub roll_interval_s: Option<u64>,
}

fn default_row_group_rows() -> usize {
    65_536
}

fn default_row_group_bytes() -> usize {
    64 * 1024 * 1024
}

/// Compression of the column chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParquetCompression {
    /// Snappy: fast, moderate ratio; every Parquet reader supports it.
    #[default]
    Snappy,
    /// No compression.
    None,
}

impl ParquetCompression {
    fn parquet(self) -> Compression {
        match self {
            Self::Snappy => Compression::SNAPPY,
            Self::None => Compression::UNCOMPRESSED,
        }
    }
}

impl ComponentConfig for ParquetConfig {
    fn accepts(&self) -> Kinds {
        match &self.kinds {
            Some(names) => match parse_kind_names("kinds", names) {
                Ok(kinds) => Kinds::of(&kinds),
                Err(_) => Kinds::any(),
            },
            None => Kinds::any(),
        }
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if self.path.trim().is_empty() {
            problems.push(OptionProblem::new("path", "must name a directory"));
        }
        if self.row_group_rows == 0 {
            problems.push(OptionProblem::new("row_group_rows", "must be at least 1"));
        }
        if self.row_group_bytes == 0 {
            problems.push(OptionProblem::new("row_group_bytes", "must be at least 1"));
        }
        if self.roll_interval_s == Some(0) {
            problems.push(OptionProblem::new(
                "roll_interval_s",
                "must be at least 1 (leave it out for one file per kind per run)",
            ));
        }
        if let Some(names) = &self.kinds {
            if names.is_empty() {
                problems.push(OptionProblem::new(
                    "kinds",
                    "must name at least one kind (leave it out to record every kind)",
                ));
            } else if let Err(problem) = parse_kind_names("kinds", names) {
                problems.push(problem);
            }
        }
        problems
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        let problems = self.check();
        if let Some(problem) = problems.first() {
            return Err(format!("{}: {}", problem.key, problem.message).into());
        }
        let kinds = match &self.kinds {
            Some(names) => Some(
                parse_kind_names("kinds", names).map_err(|p| format!("kinds: {}", p.message))?,
            ),
            None => None,
        };
        let dir = ctx.resolve_path(Path::new(&self.path));
        // Fail now, not at the first row group, if the directory cannot be made.
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
        Ok(Box::new(ParquetSink {
            settings: Settings {
                dir,
                kinds: kinds.map(|k| Kinds::of(&k)),
                row_group_rows: self.row_group_rows,
                row_group_bytes: self.row_group_bytes,
                compression: self.compression,
                roll_interval: self.roll_interval_s.map(Duration::from_secs),
                component: ctx.id.to_string(),
                #[cfg(test)]
                disk: None,
            },
            recorder: None,
            errors: 0,
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<ParquetConfig>(
        "parquet",
        Role::Sink,
        "Records events as Parquet files, one per record kind, schema inferred per kind",
    )
}

/// Where and how to write.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The directory files go to (already resolved).
    pub dir: PathBuf,
    /// Only these kinds, if set.
    pub kinds: Option<Kinds>,
    pub row_group_rows: usize,
    /// `car_telemetry` row groups end at about this many bytes too.
    pub row_group_bytes: usize,
    pub compression: ParquetCompression,
    /// Close each kind's file this long after its first row, if set.
    pub roll_interval: Option<Duration>,
    /// The component id, named in the log.
    pub component: String,
    /// A simulated disk (tests).
    #[cfg(test)]
    pub(crate) disk: Option<crate::parquet_file::TestDisk>,
}

impl Settings {
    /// Writer properties of the kinds other than `car_telemetry`.
    fn kind_properties(&self) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(self.compression.parquet())
            .set_max_row_group_row_count(Some(self.row_group_rows.max(1)))
            .build()
    }

    /// Writer properties of `car_telemetry`.
    fn car_properties(&self) -> WriterProperties {
        let mut properties = WriterProperties::builder()
            .set_compression(self.compression.parquet())
            .set_max_row_group_row_count(Some(self.row_group_rows.max(1)))
            .set_statistics_enabled(EnabledStatistics::None)
            .set_dictionary_enabled(false)
            .set_write_batch_size(8192);
        for name in car_columns::DICTIONARY_COLUMNS {
            properties = properties.set_column_dictionary_enabled(ColumnPath::from(name), true);
        }
        for name in car_columns::STATISTICS_COLUMNS {
            properties = properties
                .set_column_statistics_enabled(ColumnPath::from(name), EnabledStatistics::Chunk);
        }
        properties.build()
    }

    fn create(
        &self,
        path: PathBuf,
        schema: SchemaRef,
        properties: WriterProperties,
    ) -> Result<ParquetFile, Failure> {
        ParquetFile::create(
            path,
            schema,
            properties,
            #[cfg(test)]
            self.disk.clone(),
        )
    }
}

/// `yyyymmddThhmmss` (UTC) for a time in ns since the Unix epoch.
pub fn file_stamp(time_ns: i64) -> String {
    format_iso8601_ns(time_ns)[..19]
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect()
}

pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// First retry after a write error, and the longest wait between retries.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// What writes counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Rows skipped, or trimmed of fields, because they did not fit their kind's schema.
    pub misfits: u64,
    /// Rows lost to write errors: dropped, or left in a file that could not be repaired.
    pub lost: u64,
    /// Files whose writing failed (a failed retry counts too).
    pub failures: u64,
}

/// A kind whose writing failed, until a new file is written.
struct Outage {
    backoff: Backoff,
    /// Row groups due before this are dropped.
    retry_at: Instant,
    /// Failed attempts so far.
    attempts: u64,
    /// Rows lost since it began.
    lost: u64,
}

/// One kind's current file, when its rows started (for `roll_interval`), and an outage.
struct Lane<F> {
    file: Option<F>,
    since: Option<Instant>,
    outage: Option<Outage>,
}

impl<F> Default for Lane<F> {
    fn default() -> Self {
        Self {
            file: None,
            since: None,
            outage: None,
        }
    }
}

impl<F> Lane<F> {
    /// Whether a row group due now is dropped (an outage waiting for its retry). The last
    /// chance (the end of a run) always tries.
    fn dropping(&self, last_chance: bool) -> bool {
        !last_chance
            && self
                .outage
                .as_ref()
                .is_some_and(|o| Instant::now() < o.retry_at)
    }

    fn drop_rows(&mut self, rows: u64, counts: &mut Counts) {
        counts.lost += rows;
        if let Some(outage) = self.outage.as_mut() {
            outage.lost += rows;
        }
    }

    fn roll_due(&self, interval: Option<Duration>) -> bool {
        match (interval, self.since) {
            (Some(interval), Some(since)) => since.elapsed() >= interval,
            _ => false,
        }
    }

    /// A write or close failed: count it, log it (rate-limited) and schedule the retry.
    fn failed(
        &mut self,
        settings: &Settings,
        kind: RecordKind,
        failure: Failure,
        counts: &mut Counts,
    ) {
        counts.failures += 1;
        counts.lost += failure.lost_rows;
        match self.outage.as_mut() {
            None => {
                let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
                let delay = backoff.next_delay();
                tracing::error!(
                    component = %settings.component,
                    %kind,
                    path = %failure.path.display(),
                    error = %failure.error,
                    lost_rows = failure.lost_rows,
                    "parquet: writing failed; {}; rows of this kind are dropped until a new file can be written (retry in {:.1} s)",
                    failure.describe(),
                    delay.as_secs_f64()
                );
                self.outage = Some(Outage {
                    backoff,
                    retry_at: Instant::now() + delay,
                    attempts: 1,
                    lost: failure.lost_rows,
                });
            }
            Some(outage) => {
                outage.attempts += 1;
                outage.lost += failure.lost_rows;
                let delay = outage.backoff.next_delay();
                outage.retry_at = Instant::now() + delay;
                if should_log(outage.attempts) {
                    tracing::warn!(
                        component = %settings.component,
                        %kind,
                        path = %failure.path.display(),
                        error = %failure.error,
                        attempts = outage.attempts,
                        lost_rows = outage.lost,
                        "parquet: still cannot write; {}; next retry in {:.1} s",
                        failure.describe(),
                        delay.as_secs_f64()
                    );
                }
            }
        }
    }

    /// A row group reached `path`: an outage, if any, is over.
    fn written(&mut self, settings: &Settings, kind: RecordKind, path: &Path) {
        if let Some(outage) = self.outage.take() {
            tracing::info!(
                component = %settings.component,
                %kind,
                path = %path.display(),
                lost_rows = outage.lost,
                failed_attempts = outage.attempts,
                "parquet: writing again, into a new file"
            );
        }
    }
}

/// A kind other than `car_telemetry`: rows waiting for the next row group, the schema
/// inferred from its first row group, and its file.
#[derive(Default)]
struct KindState {
    pending: Vec<Value>,
    schema: Option<SchemaRef>,
    lane: Lane<ParquetFile>,
}

/// `car_telemetry`: typed columns and their file.
struct CarState {
    columns: CarColumns,
    lane: Lane<CarWriter>,
}

/// The `car_telemetry` file, written by a thread of its own: encoding and compressing one
/// row group overlaps gathering the next. The hand-over is a rendezvous, so at most one row
/// group is being encoded while the next one is gathered, and a hand-over that succeeds
/// means the previous row group was written.
struct CarWriter {
    sender: Option<mpsc::SyncSender<RecordBatch>>,
    thread: Option<std::thread::JoinHandle<Result<u64, Failure>>>,
    path: PathBuf,
    handed: u64,
}

impl CarWriter {
    fn create(path: PathBuf, settings: &Settings) -> Result<Self, Failure> {
        let mut file = settings.create(
            path.clone(),
            car_columns::schema(),
            settings.car_properties(),
        )?;
        tracing::debug!(path = %path.display(), "parquet: writing car_telemetry");
        let (sender, batches) = mpsc::sync_channel::<RecordBatch>(0);
        let spawned = std::thread::Builder::new()
            .name("parquet-car".into())
            .spawn(move || -> Result<u64, Failure> {
                for batch in batches {
                    if let Err(error) = file.write(&batch) {
                        let mut failure = file.salvage(error);
                        failure.lost_rows += batch.num_rows() as u64;
                        return Err(failure);
                    }
                }
                file.close()
            });
        match spawned {
            Ok(thread) => Ok(Self {
                sender: Some(sender),
                thread: Some(thread),
                path,
                handed: 0,
            }),
            Err(error) => {
                // The file was dropped with the thread's closure, holding no row group.
                let _ = std::fs::remove_file(&path);
                Err(Failure::not_created(
                    path,
                    format!("cannot start a writing thread: {error}"),
                    0,
                ))
            }
        }
    }

    /// Hand a row group to the writing thread (waits while it writes the previous one).
    /// `Ok(true)` once the previous row group is known to be written.
    fn write(&mut self, batch: RecordBatch) -> Result<bool, Failure> {
        let rows = batch.num_rows() as u64;
        let sent = match &self.sender {
            Some(sender) => sender.send(batch).is_ok(),
            None => false,
        };
        if sent {
            self.handed += 1;
            return Ok(self.handed >= 2);
        }
        // The thread has stopped: it failed, and says why.
        let mut failure = match self.close() {
            Err(failure) => failure,
            Ok(_) => Failure::not_created(
                self.path.clone(),
                "the parquet writing thread stopped".into(),
                0,
            ),
        };
        failure.lost_rows += rows;
        Err(failure)
    }

    /// Write the footer, fsync and close the file: its rows, or the thread's failure.
    fn close(&mut self) -> Result<u64, Failure> {
        self.sender = None;
        match self.thread.take() {
            Some(thread) => match thread.join() {
                Ok(result) => result,
                Err(_) => Err(Failure::not_created(
                    self.path.clone(),
                    "the parquet writing thread panicked".into(),
                    0,
                )),
            },
            None => Ok(0),
        }
    }
}

/// The row buffering and file writing of one run, without async: runs on the blocking pool.
pub struct Recorder {
    settings: Settings,
    stamp: String,
    kinds: BTreeMap<RecordKind, KindState>,
    car: CarState,
    /// Counted since the last [`Self::write`] or [`Self::finish`] returned.
    counts: Counts,
    /// Rows lost to write errors in this run.
    lost: u64,
}

impl Recorder {
    /// A recorder whose files are stamped with `time_ns` (ns since the Unix epoch, UTC).
    pub fn new(settings: Settings, time_ns: i64) -> Self {
        Self {
            stamp: file_stamp(time_ns),
            car: CarState {
                columns: CarColumns::for_row_group(
                    settings.row_group_rows,
                    settings.row_group_bytes,
                ),
                lane: Lane::default(),
            },
            kinds: BTreeMap::new(),
            settings,
            counts: Counts::default(),
            lost: 0,
        }
    }

    /// The files open now.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.car
            .lane
            .file
            .iter()
            .map(|f| f.path.clone())
            .chain(
                self.kinds
                    .values()
                    .filter_map(|state| state.lane.file.as_ref().map(|f| f.path().to_path_buf())),
            )
            .collect()
    }

    /// Tests: retry at the next row group, whatever the backoff says.
    #[cfg(test)]
    fn retry_now(&mut self) {
        let lanes = self
            .kinds
            .values_mut()
            .filter_map(|state| state.lane.outage.as_mut())
            .chain(self.car.lane.outage.as_mut());
        for outage in lanes {
            outage.retry_at = Instant::now();
        }
    }

    /// What was counted since the last call (or since the last `write`, which returns it).
    pub fn take_counts(&mut self) -> Counts {
        let counts = std::mem::take(&mut self.counts);
        self.lost += counts.lost;
        counts
    }

    /// Buffer `events` (of the selected kinds), write every row group that fills up, and
    /// close the files due to roll. Write errors are handled here (see the module docs):
    /// an `Err` is an internal failure, not a full disk.
    pub fn write(&mut self, events: &[Event]) -> Result<Counts, ComponentError> {
        if self.settings.roll_interval.is_some() {
            self.roll()?;
        }
        for event in events {
            let kind = event.kind();
            if self.settings.kinds.is_some_and(|k| !k.contains(kind)) {
                continue;
            }
            if let Record::CarTelemetry(car) = &event.record {
                self.write_car(event.time_ns, car)?;
                continue;
            }
            let Some(row) = row_of(event) else {
                self.counts.misfits += 1;
                continue;
            };
            let state = self.kinds.entry(kind).or_default();
            state.pending.push(row);
            state.lane.since.get_or_insert_with(Instant::now);
            if state.pending.len() >= self.settings.row_group_rows {
                self.flush_kind(kind, false)?;
            }
        }
        Ok(self.take_counts())
    }

    /// Buffer one `car_telemetry` row, as [`Recorder::write`] does for such an event, for a
    /// converter that decodes frames straight into rows (`pitwall-flow convert`). What was
    /// lost to write errors is in [`Recorder::take_counts`]. Rolling is not checked here.
    pub fn write_car(&mut self, time_ns: i64, car: &CarTelemetry) -> Result<(), ComponentError> {
        self.car.columns.push(time_ns, car);
        self.car.lane.since.get_or_insert_with(Instant::now);
        if self.car.columns.len() >= self.settings.row_group_rows
            || self.car.columns.bytes() >= self.settings.row_group_bytes
        {
            self.flush_car(false)?;
        }
        Ok(())
    }

    /// Close the files whose `roll_interval` has passed.
    fn roll(&mut self) -> Result<(), ComponentError> {
        let interval = self.settings.roll_interval;
        if self.car.lane.roll_due(interval) {
            self.close_car(false)?;
        }
        let due: Vec<RecordKind> = self
            .kinds
            .iter()
            .filter(|(_, state)| state.lane.roll_due(interval))
            .map(|(kind, _)| *kind)
            .collect();
        for kind in due {
            self.close_kind(kind, false)?;
        }
        Ok(())
    }

    /// Write the buffered rows of `kind` as one row group, opening its file if needed.
    fn flush_kind(&mut self, kind: RecordKind, last_chance: bool) -> Result<(), ComponentError> {
        let settings = &self.settings;
        let counts = &mut self.counts;
        let Some(state) = self.kinds.get_mut(&kind) else {
            return Ok(());
        };
        if state.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut state.pending);
        if state.lane.dropping(last_chance) {
            state.lane.drop_rows(rows.len() as u64, counts);
            return Ok(());
        }
        let schema = match &state.schema {
            Some(schema) => schema.clone(),
            None => state.schema.insert(Arc::new(infer_schema(&rows)?)).clone(),
        };
        let (batch, misfits) = decode_rows(&schema, &rows);
        counts.misfits += misfits;
        let Some(batch) = batch else {
            return Ok(());
        };
        let n = batch.num_rows() as u64;
        let file = match state.lane.file.as_mut() {
            Some(file) => file,
            None => {
                let created = create_path(&settings.dir, kind, &self.stamp)
                    .map_err(|e| Failure::not_created(settings.dir.clone(), e.to_string(), 0))
                    .and_then(|path| settings.create(path, schema, settings.kind_properties()));
                match created {
                    Ok(file) => {
                        tracing::debug!(path = %file.path().display(), "parquet: writing");
                        state.lane.file.insert(file)
                    }
                    Err(mut failure) => {
                        failure.lost_rows += n;
                        state.lane.failed(settings, kind, failure, counts);
                        return Ok(());
                    }
                }
            }
        };
        match file.write(&batch) {
            Ok(()) => {
                let path = file.path().to_path_buf();
                state.lane.written(settings, kind, &path);
            }
            Err(error) => {
                if let Some(file) = state.lane.file.take() {
                    let mut failure = file.salvage(error);
                    failure.lost_rows += n;
                    state.lane.failed(settings, kind, failure, counts);
                }
            }
        }
        Ok(())
    }

    /// Write the remaining rows of `kind` and close its file.
    fn close_kind(&mut self, kind: RecordKind, last_chance: bool) -> Result<(), ComponentError> {
        let flushed = self.flush_kind(kind, last_chance);
        let settings = &self.settings;
        let counts = &mut self.counts;
        if let Some(state) = self.kinds.get_mut(&kind) {
            state.lane.since = None;
            if let Some(file) = state.lane.file.take() {
                if let Err(failure) = file.close() {
                    state.lane.failed(settings, kind, failure, counts);
                }
            }
        }
        flushed
    }

    /// Write the buffered `car_telemetry` rows as one row group, opening the file if needed.
    fn flush_car(&mut self, last_chance: bool) -> Result<(), ComponentError> {
        let settings = &self.settings;
        let counts = &mut self.counts;
        let car = &mut self.car;
        if car.columns.is_empty() {
            return Ok(());
        }
        if car.lane.dropping(last_chance) {
            let rows = car.columns.len() as u64;
            car.columns =
                CarColumns::for_row_group(settings.row_group_rows, settings.row_group_bytes);
            car.lane.drop_rows(rows, counts);
            return Ok(());
        }
        let batch = car.columns.finish()?;
        let kind = RecordKind::CarTelemetry;
        let file = match car.lane.file.as_mut() {
            Some(file) => file,
            None => {
                let created = create_path(&settings.dir, kind, &self.stamp)
                    .map_err(|e| Failure::not_created(settings.dir.clone(), e.to_string(), 0))
                    .and_then(|path| CarWriter::create(path, settings));
                match created {
                    Ok(file) => car.lane.file.insert(file),
                    Err(mut failure) => {
                        failure.lost_rows += batch.num_rows() as u64;
                        car.lane.failed(settings, kind, failure, counts);
                        return Ok(());
                    }
                }
            }
        };
        match file.write(batch) {
            Ok(true) => {
                let path = file.path.clone();
                car.lane.written(settings, kind, &path);
            }
            Ok(false) => {}
            Err(failure) => {
                car.lane.file = None;
                car.lane.failed(settings, kind, failure, counts);
            }
        }
        Ok(())
    }

    /// Write the remaining `car_telemetry` rows and close the file.
    fn close_car(&mut self, last_chance: bool) -> Result<(), ComponentError> {
        let flushed = self.flush_car(last_chance);
        self.car.lane.since = None;
        if let Some(mut file) = self.car.lane.file.take() {
            match file.close() {
                Ok(_) => {
                    self.car
                        .lane
                        .written(&self.settings, RecordKind::CarTelemetry, &file.path)
                }
                Err(failure) => self.car.lane.failed(
                    &self.settings,
                    RecordKind::CarTelemetry,
                    failure,
                    &mut self.counts,
                ),
            }
        }
        self.car.columns =
            CarColumns::for_row_group(self.settings.row_group_rows, self.settings.row_group_bytes);
        flushed
    }

    /// Write every kind's remaining rows, then finish (footer), fsync and close every file.
    /// Goes on after an error so that as many files as possible are left readable, and
    /// returns what was counted and the first internal failure.
    pub fn finish(&mut self) -> (Counts, Result<(), ComponentError>) {
        let mut result = self.close_car(true);
        let kinds: Vec<RecordKind> = self.kinds.keys().copied().collect();
        for kind in kinds {
            let closed = self.close_kind(kind, true);
            if result.is_ok() {
                result = closed;
            }
        }
        self.kinds.clear();
        let counts = self.take_counts();
        if self.lost > 0 {
            tracing::warn!(
                component = %self.settings.component,
                lost_rows = self.lost,
                "parquet: finished; rows were lost to write errors in this run"
            );
        }
        self.lost = 0;
        (counts, result)
    }
}

impl Drop for Recorder {
    /// A recorder dropped without `finish` (its task was cancelled) still closes its files.
    fn drop(&mut self) {
        if self.car.lane.file.is_some() || self.kinds.values().any(|s| s.lane.file.is_some()) {
            let (_, result) = self.finish();
            if let Err(error) = result {
                tracing::warn!(%error, "parquet: closing files failed");
            }
        }
    }
}

/// The first `{kind}-{stamp}-{n}.parquet` in `dir` that does not exist yet.
fn create_path(dir: &Path, kind: RecordKind, stamp: &str) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    for n in 0..1_000_000u32 {
        let path = dir.join(format!("{kind}-{stamp}-{n}.parquet"));
        if !path.exists()
            && !dir
                .join(format!("{kind}-{stamp}-{n}.parquet.failed"))
                .exists()
        {
            return Ok(path);
        }
    }
    Err(io::Error::other(format!(
        "no free file name for {kind}-{stamp}-{{n}}.parquet in {}",
        dir.display()
    )))
}

/// The event's serde form with nested values (objects, arrays) replaced by their JSON text.
/// `None` if it has no object form (a raw JSON record that is not an object).
fn row_of(event: &Event) -> Option<Value> {
    let Ok(Value::Object(map)) = serde_json::to_value(event) else {
        return None;
    };
    let row: Map<String, Value> = map
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                Value::Object(_) | Value::Array(_) => Value::String(value.to_string()),
                scalar => scalar,
            };
            (key, value)
        })
        .collect();
    Some(Value::Object(row))
}

/// Infer the Arrow schema of a kind's rows: `time_ns` and `kind` first, then the other
/// columns in the order the rows name them; all-null columns become strings.
fn infer_schema(rows: &[Value]) -> Result<Schema, ArrowError> {
    let inferred = infer_json_schema_from_iterator(rows.iter().map(Ok::<_, ArrowError>))?;
    let mut order: Vec<&str> = vec!["time_ns", "kind"];
    for row in rows {
        if let Value::Object(map) = row {
            for key in map.keys() {
                if !order.contains(&key.as_str()) {
                    order.push(key);
                }
            }
        }
    }
    let fields: Vec<Field> = order
        .iter()
        .filter_map(|name| inferred.field_with_name(name).ok())
        .map(|field| {
            let data_type = match field.data_type() {
                DataType::Null => DataType::Utf8,
                other => other.clone(),
            };
            Field::new(field.name(), data_type, true)
        })
        .collect();
    Ok(Schema::new(fields))
}

fn decoder_batch(schema: &SchemaRef, rows: &[Value]) -> Result<Option<RecordBatch>, ArrowError> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .with_coerce_primitive(true)
        .build_decoder()?;
    decoder.serialize(rows)?;
    decoder.flush()
}

/// Decode rows into one batch. Rows that do not fit the schema are skipped; each skipped
/// row, and each row with fields the schema does not have, counts as one error.
fn decode_rows(schema: &SchemaRef, rows: &[Value]) -> (Option<RecordBatch>, u64) {
    let mut errors = rows
        .iter()
        .filter(|row| match row {
            Value::Object(map) => map.keys().any(|k| schema.field_with_name(k).is_err()),
            _ => true,
        })
        .count() as u64;
    if let Ok(batch) = decoder_batch(schema, rows) {
        return (batch, errors);
    }
    // Some row does not fit: find the ones that do.
    let fitting: Vec<Value> = rows
        .iter()
        .filter(|row| decoder_batch(schema, std::slice::from_ref(*row)).is_ok())
        .cloned()
        .collect();
    errors += (rows.len() - fitting.len()) as u64;
    match decoder_batch(schema, &fitting) {
        Ok(batch) => (batch, errors),
        Err(_) => (None, errors + fitting.len() as u64),
    }
}

struct ParquetSink {
    settings: Settings,
    /// On the blocking pool while a batch is written; `None` between runs.
    recorder: Option<Recorder>,
    errors: u64,
}

impl ParquetSink {
    /// Run `f` on the recorder on the blocking pool.
    async fn blocking<T, F>(&mut self, f: F) -> Result<T, ComponentError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Recorder) -> T + Send + 'static,
    {
        let settings = &self.settings;
        crate::on_blocking_pool(
            &mut self.recorder,
            || Recorder::new(settings.clone(), now_ns()),
            f,
        )
        .await
    }

    /// Misfit rows and write failures are errors; rows lost to write errors are lost events
    /// (the failures themselves are logged by the recorder), which the run's exit code
    /// reports.
    fn count(&mut self, io: &Io, counts: Counts) {
        for _ in 0..counts.misfits {
            io.metrics.add_error();
            self.errors += 1;
            if should_log(self.errors) {
                tracing::warn!(
                    count = self.errors,
                    "parquet: a row did not fit its kind's schema (skipped) or had fields the schema lacks (dropped)"
                );
            }
        }
        for _ in 0..counts.failures {
            io.metrics.add_error();
        }
        if counts.lost > 0 {
            io.metrics.add_lost(counts.lost);
        }
    }

    async fn record(
        &mut self,
        io: &Io,
        input: &mut pitwall_api::Input,
    ) -> Result<(), ComponentError> {
        while let Some(batch) = input.recv().await {
            let events: Batch = batch;
            let counts = self.blocking(move |r| r.write(&events)).await??;
            self.count(io, counts);
        }
        Ok(())
    }
}

#[async_trait]
impl Component for ParquetSink {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let Some(mut input) = io.input.take() else {
            return Ok(());
        };
        let result = self.record(io, &mut input).await;
        io.input = Some(input);
        let finished = self.blocking(|r| r.finish()).await;
        // The next run starts new files.
        self.recorder = None;
        let close_result = match finished {
            Ok((counts, close_result)) => {
                self.count(io, counts);
                close_result
            }
            Err(error) => Err(error),
        };
        result.and(close_result)
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;

    #[test]
    fn stamps_and_rows() {
        assert_eq!(file_stamp(1_716_726_896_500_000_000), "20240526T123456");
        let row = row_of(&Event::new(
            5,
            Record::Json(Arc::new(serde_json::json!({"a": {"b": [1, 2]}, "c": 1.5}))),
        ))
        .unwrap();
        assert_eq!(
            row,
            serde_json::json!({"time_ns": 5, "kind": "json", "a": "{\"b\":[1,2]}", "c": 1.5})
        );
        assert!(row_of(&Event::new(
            5,
            Record::Json(Arc::new(serde_json::json!([1])))
        ))
        .is_none());
    }

    #[test]
    fn schema_order_nulls_and_misfits() {
        let rows = vec![
            serde_json::json!({"time_ns": 1, "kind": "json", "z": 2, "n": null}),
            serde_json::json!({"time_ns": 2, "kind": "json", "z": 3, "n": null}),
        ];
        let schema = Arc::new(infer_schema(&rows).unwrap());
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names[..2], ["time_ns", "kind"]);
        assert_eq!(names.len(), 4);
        assert_eq!(
            schema.field_with_name("n").unwrap().data_type(),
            &DataType::Utf8
        );
        assert_eq!(
            schema.field_with_name("z").unwrap().data_type(),
            &DataType::Int64
        );
        let later = vec![
            serde_json::json!({"time_ns": 3, "kind": "json", "z": "not a number", "n": 7}),
            serde_json::json!({"time_ns": 4, "kind": "json", "z": 4, "n": true}),
            serde_json::json!({"time_ns": 5, "kind": "json", "z": 5, "extra": 1}),
        ];
        let (batch, errors) = decode_rows(&schema, &later);
        let batch = batch.unwrap();
        // Row 3 skipped, row 5 kept without `extra`.
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(errors, 2);
    }

    use std::sync::atomic::{AtomicI64, Ordering};

    use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use pitwall_api::CarTelemetry;

    use crate::parquet_file::TestDisk;

    const GROUP: usize = 1000;
    const G: u64 = GROUP as u64;

    fn settings(dir: &Path, disk: Option<TestDisk>) -> Settings {
        Settings {
            dir: dir.to_path_buf(),
            kinds: None,
            row_group_rows: GROUP,
            row_group_bytes: 1 << 30,
            compression: ParquetCompression::None,
            roll_interval: None,
            component: "archive".into(),
            disk,
        }
    }

    fn car(i: u64) -> Event {
        Event::new(
            i as i64,
            Record::CarTelemetry(Arc::new(CarTelemetry {
                game: "assetto_corsa".into(),
                session: "rig-1".into(),
                monotonic_ns: i,
                speed_kmh: i as f32,
                ..Default::default()
            })),
        )
    }

    fn json(i: u64) -> Event {
        Event::new(
            i as i64,
            Record::Json(Arc::new(
                serde_json::json!({"i": i, "text": "x".repeat(200)}),
            )),
        )
    }

    /// The files in `dir`, sorted by name.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Every value of an Int64 column of a Parquet file (which must be readable).
    fn column(path: &Path, name: &str) -> Vec<i64> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap_or_else(|e| panic!("{} is not readable: {e}", path.display()))
            .build()
            .unwrap();
        let mut values = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let array = batch.column_by_name(name).unwrap();
            values.extend(array.as_primitive::<Int64Type>().values().iter().copied());
        }
        values
    }

    /// Bytes one row group of `events(0..GROUP)` takes in a file (compression off, so every
    /// row group of these events takes as much).
    fn group_bytes(schema: SchemaRef, properties: WriterProperties, batch: RecordBatch) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut file = ParquetFile::create(dir.path().join("m.parquet"), schema, properties, None)
            .map_err(|f| f.error)
            .unwrap();
        file.write(&batch).unwrap();
        let one = file.committed_bytes();
        file.write(&batch).unwrap();
        file.committed_bytes() - one
    }

    fn car_group_bytes() -> u64 {
        let mut columns = CarColumns::new();
        for i in 0..GROUP as u64 {
            if let Record::CarTelemetry(c) = &car(i).record {
                columns.push(i as i64, c);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), None);
        group_bytes(
            car_columns::schema(),
            s.car_properties(),
            columns.finish().unwrap(),
        )
    }

    #[test]
    fn a_full_disk_keeps_car_row_groups_readable_and_recovers_in_a_new_file() {
        let group = car_group_bytes();
        let dir = tempfile::tempdir().unwrap();
        // Room for the magic, two row groups and half a third (some of it preallocated for
        // the footer).
        let disk: TestDisk = Arc::new(AtomicI64::new((4 + 2 * group + group / 2) as i64));
        let mut recorder = Recorder::new(settings(dir.path(), Some(disk.clone())), 0);
        let events: Vec<Event> = (0..5 * G).map(car).collect();
        let mut counts = Counts::default();
        for chunk in events.chunks(250) {
            let c = recorder.write(chunk).unwrap();
            counts.lost += c.lost;
            counts.failures += c.failures;
        }
        // Row group 3 failed on the writing thread (found when group 4 was handed over,
        // which is lost too); group 5 fell in the outage (dropped, or a retry that failed).
        assert_eq!(counts.lost, 3 * G);
        assert!(counts.failures >= 1);
        let first = dir.path().join("car_telemetry-19700101T000000-0.parquet");
        assert_eq!(
            names(dir.path()),
            ["car_telemetry-19700101T000000-0.parquet"]
        );
        assert_eq!(
            column(&first, "t_ns"),
            (0..2 * G as i64).collect::<Vec<i64>>()
        );

        // Space comes back; at the retry rows land in a new file.
        disk.store(i64::MAX / 2, Ordering::Relaxed);
        recorder.retry_now();
        let events: Vec<Event> = (5 * G..7 * G + 500).map(car).collect();
        for chunk in events.chunks(250) {
            assert_eq!(recorder.write(chunk).unwrap(), Counts::default());
        }
        let (counts, result) = recorder.finish();
        result.unwrap();
        assert_eq!(counts, Counts::default());
        assert_eq!(
            names(dir.path()),
            [
                "car_telemetry-19700101T000000-0.parquet",
                "car_telemetry-19700101T000000-1.parquet"
            ]
        );
        assert_eq!(
            column(&first, "t_ns"),
            (0..2 * G as i64).collect::<Vec<i64>>()
        );
        let second = dir.path().join("car_telemetry-19700101T000000-1.parquet");
        assert_eq!(
            column(&second, "t_ns"),
            (5 * G as i64..7 * G as i64 + 500).collect::<Vec<i64>>()
        );
    }

    #[test]
    fn a_full_disk_without_room_for_a_footer_leaves_a_failed_file_not_a_parquet_one() {
        let rows: Vec<Value> = (0..G).filter_map(|i| row_of(&json(i))).collect();
        let schema = Arc::new(infer_schema(&rows).unwrap());
        let (batch, _) = decode_rows(&schema, &rows);
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), None);
        let group = group_bytes(schema, s.kind_properties(), batch.unwrap());

        // Exactly one row group fits: no room is left to preallocate for the footer, the
        // second row group fails before writing a byte, and the footer does not fit.
        let disk: TestDisk = Arc::new(AtomicI64::new((4 + group) as i64));
        let mut recorder = Recorder::new(settings(dir.path(), Some(disk.clone())), 0);
        let events: Vec<Event> = (0..3 * G).map(json).collect();
        let counts = recorder.write(&events).unwrap();
        // The complete row group is on disk but not readable; the others are lost.
        assert_eq!(counts.lost, 3 * G);
        assert!(counts.failures >= 1);
        assert_eq!(names(dir.path()), ["json-19700101T000000-0.parquet.failed"]);
        // Still full: the last chance at the end fails too, and leaves nothing behind.
        let more: Vec<Event> = (3 * G..3 * G + 50).map(json).collect();
        assert_eq!(recorder.write(&more).unwrap().lost, 0);
        let (counts, result) = recorder.finish();
        result.unwrap();
        assert_eq!(counts.lost, 50);
        assert_eq!(counts.failures, 1);
        assert_eq!(names(dir.path()), ["json-19700101T000000-0.parquet.failed"]);

        // Space back: a new run does not reuse the failed file's number.
        disk.store(i64::MAX / 2, Ordering::Relaxed);
        let mut recorder = Recorder::new(settings(dir.path(), Some(disk)), 0);
        recorder.write(&[json(1_000_000)]).unwrap();
        let (counts, result) = recorder.finish();
        result.unwrap();
        assert_eq!(counts, Counts::default());
        let second = dir.path().join("json-19700101T000000-1.parquet");
        assert_eq!(column(&second, "i"), [1_000_000]);
    }

    #[test]
    fn a_failed_kind_does_not_stop_the_others() {
        let group = car_group_bytes();
        let dir = tempfile::tempdir().unwrap();
        // The car file fills the disk during its third row group; json rows come later.
        let disk: TestDisk = Arc::new(AtomicI64::new((4 + 2 * group + group / 2) as i64));
        let mut recorder = Recorder::new(settings(dir.path(), Some(disk.clone())), 0);
        let cars: Vec<Event> = (0..4 * G).map(car).collect();
        assert_eq!(recorder.write(&cars).unwrap().lost, 2 * G);
        // Space back (the car kind waits for its retry); the json kind writes at once.
        disk.store(i64::MAX / 2, Ordering::Relaxed);
        let jsons: Vec<Event> = (0..G + 50).map(json).collect();
        assert_eq!(recorder.write(&jsons).unwrap(), Counts::default());
        let (counts, result) = recorder.finish();
        result.unwrap();
        assert_eq!(counts, Counts::default());
        let json_file = dir.path().join("json-19700101T000000-0.parquet");
        assert_eq!(
            column(&json_file, "i"),
            (0..G as i64 + 50).collect::<Vec<i64>>()
        );
        let car_file = dir.path().join("car_telemetry-19700101T000000-0.parquet");
        assert_eq!(
            column(&car_file, "t_ns"),
            (0..2 * G as i64).collect::<Vec<i64>>()
        );
    }

    #[test]
    fn roll_interval_closes_readable_files_with_the_rows_so_far() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path(), None);
        s.roll_interval = Some(Duration::from_millis(300));
        let mut recorder = Recorder::new(s, 0);
        // Fewer rows than a row group: buffered only.
        let first: Vec<Event> = (0..30).map(car).chain((0..20).map(json)).collect();
        recorder.write(&first).unwrap();
        assert!(names(dir.path()).is_empty());
        std::thread::sleep(Duration::from_millis(350));
        // The next batch closes both kinds' files first (readable now, as after a crash).
        let second: Vec<Event> = (30..40).map(car).chain((20..25).map(json)).collect();
        recorder.write(&second).unwrap();
        let car0 = dir.path().join("car_telemetry-19700101T000000-0.parquet");
        let json0 = dir.path().join("json-19700101T000000-0.parquet");
        assert_eq!(column(&car0, "t_ns"), (0..30).collect::<Vec<i64>>());
        assert_eq!(column(&json0, "i"), (0..20).collect::<Vec<i64>>());
        let (counts, result) = recorder.finish();
        result.unwrap();
        assert_eq!(counts, Counts::default());
        let car1 = dir.path().join("car_telemetry-19700101T000000-1.parquet");
        let json1 = dir.path().join("json-19700101T000000-1.parquet");
        assert_eq!(column(&car1, "t_ns"), (30..40).collect::<Vec<i64>>());
        assert_eq!(column(&json1, "i"), (20..25).collect::<Vec<i64>>());
        assert_eq!(names(dir.path()).len(), 4);
    }

    #[test]
    fn roll_interval_is_checked() {
        let config: ParquetConfig = toml::from_str("path = \"out\"\nroll_interval_s = 0").unwrap();
        assert_eq!(config.check()[0].key, "roll_interval_s");
        let config: ParquetConfig = toml::from_str("path = \"out\"\nroll_interval_s = 60").unwrap();
        assert!(config.check().is_empty());
    }
}
