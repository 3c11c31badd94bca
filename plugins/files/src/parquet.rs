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
//!   (UTC) and `n` the first number whose file does not exist yet, so nothing is overwritten.
//!   A kind's file is created when its first row group is written.
//! - Schema (kinds other than `car_telemetry`): inferred per kind from that kind's first row
//!   group (Arrow JSON inference).
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
//! ```toml
//! [sinks.archive]
//! type = "parquet"
//! inputs = ["f1"]
//! path = "recordings/parquet"
//! # kinds = ["lap", "race_position"]   # default: every kind
//! row_group_rows = 65536
//! row_group_bytes = 67108864           # car_telemetry row groups also end at ~64 MiB
//! compression = "snappy"               # or "none"
//! ```

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{SystemTime, UNIX_EPOCH};

use ::parquet::arrow::ArrowWriter;
use ::parquet::basic::Compression;
use ::parquet::file::properties::{EnabledStatistics, WriterProperties};
use ::parquet::schema::types::ColumnPath;
use arrow_array::RecordBatch;
use arrow_json::reader::{infer_json_schema_from_iterator, ReaderBuilder};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::record::format_iso8601_ns;
use pitwall_api::{
    Batch, BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io,
    Kinds, Record, RecordKind, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::car_columns::{self, CarColumns};
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

/// An open Parquet file of one kind.
struct KindFile {
    schema: SchemaRef,
    writer: ArrowWriter<File>,
    path: PathBuf,
}

#[derive(Default)]
struct KindState {
    /// Rows waiting for the next row group.
    pending: Vec<Value>,
    file: Option<KindFile>,
}

/// `car_telemetry`: typed columns and their file.
struct CarState {
    columns: CarColumns,
    file: Option<CarWriter>,
}

/// The `car_telemetry` file, written by a thread of its own: encoding and compressing one
/// row group overlaps gathering the next. The hand-over is a rendezvous, so at most one row
/// group is being encoded while the next one is gathered.
struct CarWriter {
    sender: Option<mpsc::SyncSender<RecordBatch>>,
    thread: Option<std::thread::JoinHandle<Result<(), ComponentError>>>,
    path: PathBuf,
}

impl CarWriter {
    fn create(path: PathBuf, settings: &Settings) -> Result<Self, ComponentError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let mut properties = WriterProperties::builder()
            .set_compression(settings.compression.parquet())
            .set_max_row_group_row_count(Some(settings.row_group_rows.max(1)))
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
        let mut writer =
            ArrowWriter::try_new(file, car_columns::schema(), Some(properties.build()))?;
        tracing::debug!(path = %path.display(), "parquet: writing car_telemetry");
        let (sender, batches) = mpsc::sync_channel::<RecordBatch>(0);
        let thread = std::thread::Builder::new()
            .name("parquet-car".into())
            .spawn(move || -> Result<(), ComponentError> {
                let mut written = Ok(());
                for batch in batches {
                    written = writer.write(&batch).and_then(|()| writer.flush());
                    if written.is_err() {
                        break;
                    }
                }
                // The footer is written whatever happened, so the row groups already
                // written stay readable.
                let closed = writer
                    .into_inner()
                    .map_err(ComponentError::from)
                    .and_then(|file| file.sync_all().map_err(ComponentError::from));
                written?;
                closed
            })?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
            path,
        })
    }

    /// Hand a row group to the writing thread (waits while it writes the previous one).
    fn write(&mut self, batch: RecordBatch) -> Result<(), ComponentError> {
        let sent = match &self.sender {
            Some(sender) => sender.send(batch).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            // The thread has stopped: it failed, and says why.
            self.close()?;
            Err("the parquet writing thread has stopped".into())
        }
    }

    /// Write the footer, fsync and close the file; the first error of the thread if any.
    fn close(&mut self) -> Result<(), ComponentError> {
        self.sender = None;
        match self.thread.take() {
            Some(thread) => match thread.join() {
                Ok(result) => {
                    tracing::debug!(path = %self.path.display(), "parquet: closed");
                    result
                }
                Err(_) => Err("the parquet writing thread panicked".into()),
            },
            None => Ok(()),
        }
    }
}

/// The row buffering and file writing of one run, without async: runs on the blocking pool.
pub struct Recorder {
    settings: Settings,
    stamp: String,
    kinds: BTreeMap<RecordKind, KindState>,
    car: CarState,
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
                file: None,
            },
            kinds: BTreeMap::new(),
            settings,
        }
    }

    /// The files opened so far, by kind.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.car
            .file
            .iter()
            .map(|f| f.path.clone())
            .chain(
                self.kinds
                    .values()
                    .filter_map(|state| state.file.as_ref().map(|f| f.path.clone())),
            )
            .collect()
    }

    /// Buffer `events` (of the selected kinds) and write every row group that fills up.
    /// Returns how many errors were counted (rows skipped, fields dropped).
    pub fn write(&mut self, events: &[Event]) -> Result<u64, ComponentError> {
        let mut errors = 0;
        for event in events {
            let kind = event.kind();
            if self.settings.kinds.is_some_and(|k| !k.contains(kind)) {
                continue;
            }
            if let Record::CarTelemetry(car) = &event.record {
                self.car.columns.push(event.time_ns, car);
                if self.car.columns.len() >= self.settings.row_group_rows
                    || self.car.columns.bytes() >= self.settings.row_group_bytes
                {
                    self.flush_car()?;
                }
                continue;
            }
            let Some(row) = row_of(event) else {
                errors += 1;
                continue;
            };
            let state = self.kinds.entry(kind).or_default();
            state.pending.push(row);
            if state.pending.len() >= self.settings.row_group_rows {
                errors += self.flush_kind(kind)?;
            }
        }
        Ok(errors)
    }

    /// Write the buffered rows of `kind` as one row group, opening its file if needed.
    fn flush_kind(&mut self, kind: RecordKind) -> Result<u64, ComponentError> {
        let Some(state) = self.kinds.get_mut(&kind) else {
            return Ok(0);
        };
        if state.pending.is_empty() {
            return Ok(0);
        }
        let rows = std::mem::take(&mut state.pending);
        if state.file.is_none() {
            let schema = Arc::new(infer_schema(&rows)?);
            let path = create_path(&self.settings.dir, kind, &self.stamp)?;
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            let properties = WriterProperties::builder()
                .set_compression(self.settings.compression.parquet())
                .set_max_row_group_row_count(Some(self.settings.row_group_rows.max(1)))
                .build();
            let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties))?;
            tracing::debug!(path = %path.display(), "parquet: writing");
            state.file = Some(KindFile {
                schema,
                writer,
                path,
            });
        }
        let Some(file) = state.file.as_mut() else {
            return Ok(0);
        };
        let (batch, errors) = decode_rows(&file.schema, &rows);
        if let Some(batch) = batch {
            file.writer.write(&batch)?;
            file.writer.flush()?;
        }
        Ok(errors)
    }

    /// Write the buffered `car_telemetry` rows as one row group, opening the file if needed.
    fn flush_car(&mut self) -> Result<(), ComponentError> {
        if self.car.columns.is_empty() {
            return Ok(());
        }
        let batch = self.car.columns.finish()?;
        if self.car.file.is_none() {
            let path = create_path(&self.settings.dir, RecordKind::CarTelemetry, &self.stamp)?;
            self.car.file = Some(CarWriter::create(path, &self.settings)?);
        }
        match self.car.file.as_mut() {
            Some(file) => file.write(batch),
            None => Ok(()),
        }
    }

    /// Write every kind's remaining rows, then finish (footer), fsync and close every file.
    /// Goes on after an error so that as many files as possible are left readable, and
    /// returns the errors counted and the first failure.
    pub fn finish(&mut self) -> (u64, Result<(), ComponentError>) {
        let mut errors = 0;
        let mut result: Result<(), ComponentError> = self.flush_car();
        if let Some(mut file) = self.car.file.take() {
            if let Err(error) = file.close() {
                if result.is_ok() {
                    result = Err(error);
                }
            }
        }
        self.car.columns =
            CarColumns::for_row_group(self.settings.row_group_rows, self.settings.row_group_bytes);
        let kinds: Vec<RecordKind> = self.kinds.keys().copied().collect();
        for kind in kinds {
            match self.flush_kind(kind) {
                Ok(n) => errors += n,
                Err(error) => {
                    if result.is_ok() {
                        result = Err(error);
                    }
                }
            }
            if let Some(state) = self.kinds.get_mut(&kind) {
                state.pending.clear();
                if let Some(file) = state.file.take() {
                    if let Err(error) = close(file) {
                        if result.is_ok() {
                            result = Err(error);
                        }
                    }
                }
            }
        }
        self.kinds.clear();
        (errors, result)
    }
}

impl Drop for Recorder {
    /// A recorder dropped without `finish` (its task was cancelled) still closes its files.
    fn drop(&mut self) {
        if self.car.file.is_some() || self.kinds.values().any(|s| s.file.is_some()) {
            let (_, result) = self.finish();
            if let Err(error) = result {
                tracing::warn!(%error, "parquet: closing files failed");
            }
        }
    }
}

fn close(file: KindFile) -> Result<(), ComponentError> {
    let inner = file.writer.into_inner()?;
    inner.sync_all()?;
    tracing::debug!(path = %file.path.display(), "parquet: closed");
    Ok(())
}

/// The first `{kind}-{stamp}-{n}.parquet` in `dir` that does not exist yet.
fn create_path(dir: &Path, kind: RecordKind, stamp: &str) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    for n in 0..1_000_000u32 {
        let path = dir.join(format!("{kind}-{stamp}-{n}.parquet"));
        if !path.exists() {
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

    fn count_errors(&mut self, io: &Io, errors: u64) {
        for _ in 0..errors {
            io.metrics.add_error();
            self.errors += 1;
            if should_log(self.errors) {
                tracing::warn!(
                    count = self.errors,
                    "parquet: a row did not fit its kind's schema (skipped) or had fields the schema lacks (dropped)"
                );
            }
        }
    }

    async fn record(
        &mut self,
        io: &Io,
        input: &mut pitwall_api::Input,
    ) -> Result<(), ComponentError> {
        while let Some(batch) = input.recv().await {
            let events: Batch = batch;
            let errors = self.blocking(move |r| r.write(&events)).await??;
            self.count_errors(io, errors);
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
            Ok((errors, close_result)) => {
                self.count_errors(io, errors);
                close_result
            }
            Err(error) => Err(error),
        };
        result.and(close_result)
    }
}

#[cfg(test)]
mod tests {
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
}
