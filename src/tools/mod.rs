//! Tools for looking at Parquet recordings from the command line, without Python:
//!
//! - [`inspect`] (`pitwall-flow inspect FILE.parquet`): the schema, the first rows as a table,
//!   per-column statistics, and an optional CSV export of chosen columns.
//! - [`plot`] (`pitwall-flow plot FILE.parquet -o lap.png`): stacked line charts of chosen
//!   columns against time or lap distance, as one PNG.
//! - [`convert`] (`pitwall-flow convert REC.pb.gz OUT.parquet`): a `.pb.gz` recording to
//!   Parquet, as fast as the machine inflates gzip.
//!
//! Both read any Parquet file the project writes: the `parquet` sink's files (`time_ns`,
//! `kind`, then the record's fields), and the original converter's car telemetry files
//! (`t_ns, game, session, speed_kmh, gas, brake, gear, steer, rpm, ...`). Files are read
//! batch by batch, so memory stays bounded however long the recording is.
//!
//! Problems (a missing file, a file that is not Parquet, an unknown column, nothing numeric
//! to plot, no font) are [`ToolError`]s: miette diagnostics with a hint, rendered like the
//! rest of the CLI's errors.

pub mod convert;
pub mod inspect;
pub mod plot;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use arrow_schema::{DataType, SchemaRef};
use miette::{GraphicalReportHandler, GraphicalTheme};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

/// Rows per batch when reading: large enough to be fast, small enough to bound memory.
pub const BATCH_ROWS: usize = 8192;

/// Everything that can stop `inspect` or `plot`.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ToolError {
    #[error("cannot open {path}: {reason}")]
    #[diagnostic(help("{help}"))]
    Open {
        path: PathBuf,
        reason: String,
        help: String,
    },

    #[error("{path} is not a Parquet file: {reason}")]
    #[diagnostic(help("{help}"))]
    NotParquet {
        path: PathBuf,
        reason: String,
        help: String,
    },

    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },

    #[error("unknown column `{name}` in {path}")]
    #[diagnostic(help("{help}"))]
    UnknownColumn {
        name: String,
        path: PathBuf,
        help: String,
    },

    #[error("{message}")]
    #[diagnostic(help("{help}"))]
    NoNumeric { message: String, help: String },

    #[error("{message}")]
    #[diagnostic(help("{help}"))]
    NoRows { message: String, help: String },

    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },

    #[error("{path} already exists")]
    #[diagnostic(help(
        "choose another output name, or remove the file first: nothing is overwritten"
    ))]
    Exists { path: PathBuf },

    #[error("no font to draw text with: {message}")]
    #[diagnostic(help("{help}"))]
    NoFont { message: String, help: String },

    #[error("cannot draw the plot: {0}")]
    Draw(String),
}

/// A [`ToolError`] rendered like the CLI's other diagnostics.
pub fn render_error(error: &ToolError, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    if handler.render_report(&mut out, error).is_err() {
        out = format!("error: {error}\n");
    }
    out
}

/// An opened Parquet file: its reader builder (footer read, nothing else yet).
pub struct ParquetFile {
    pub path: PathBuf,
    pub file_bytes: u64,
    builder: ParquetRecordBatchReaderBuilder<File>,
}

impl ParquetFile {
    /// Open `path` and read its footer, telling a missing file, a file that is not Parquet
    /// and a Parquet file without its footer apart.
    pub fn open(path: &Path) -> Result<Self, ToolError> {
        let mut file = File::open(path).map_err(|error| ToolError::Open {
            path: path.to_path_buf(),
            help: match error.kind() {
                std::io::ErrorKind::NotFound => {
                    "check the path; relative paths are relative to the current directory"
                        .to_string()
                }
                std::io::ErrorKind::PermissionDenied => "check the file's permissions".to_string(),
                _ => "check that the path names a readable file".to_string(),
            },
            reason: error.to_string(),
        })?;
        let not_parquet = |reason: &str, help: &str| ToolError::NotParquet {
            path: path.to_path_buf(),
            reason: reason.to_string(),
            help: help.to_string(),
        };
        let meta = file.metadata().map_err(|e| ToolError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if meta.is_dir() {
            return Err(not_parquet(
                "it is a directory",
                "name one .parquet file inside it (the parquet sink writes {kind}-{time}-{n}.parquet)",
            ));
        }
        let file_bytes = meta.len();
        let mut head = [0u8; 4];
        let head_ok = file.read_exact(&mut head).is_ok() && &head == b"PAR1";
        if !head_ok {
            return Err(not_parquet(
                "it does not start with the Parquet magic bytes `PAR1`",
                "inspect and plot read Parquet files (.parquet); convert .pb.gz recordings with a \
                 pipeline (proto_replay source -> parquet sink)",
            ));
        }
        let mut tail = [0u8; 4];
        let tail_ok = file_bytes >= 12
            && file.seek(SeekFrom::End(-4)).is_ok()
            && file.read_exact(&mut tail).is_ok()
            && &tail == b"PAR1";
        if !tail_ok {
            return Err(not_parquet(
                "it has no footer (the file ends without `PAR1`)",
                "the writer did not finish it (a run killed before it closed its files?); \
                 nothing in it can be read without the footer",
            ));
        }
        file.seek(SeekFrom::Start(0)).map_err(|e| ToolError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
            not_parquet(
                &format!("its footer cannot be read ({e})"),
                "the file is damaged or was written by an unsupported writer",
            )
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            file_bytes,
            builder,
        })
    }

    /// The Arrow schema of the whole file.
    pub fn schema(&self) -> SchemaRef {
        self.builder.schema().clone()
    }

    pub fn num_rows(&self) -> i64 {
        self.builder.metadata().file_metadata().num_rows()
    }

    pub fn num_row_groups(&self) -> usize {
        self.builder.metadata().num_row_groups()
    }

    pub fn created_by(&self) -> Option<String> {
        self.builder
            .metadata()
            .file_metadata()
            .created_by()
            .map(str::to_string)
    }

    /// The names of the top-level columns, in file order.
    pub fn column_names(&self) -> Vec<String> {
        self.builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// Index of a column by exact name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.builder
            .schema()
            .fields()
            .iter()
            .position(|f| f.name() == name)
    }

    /// The type of a column by name.
    pub fn data_type(&self, name: &str) -> Option<DataType> {
        self.index_of(name)
            .map(|i| self.builder.schema().field(i).data_type().clone())
    }

    /// Check that every name is a column, or explain which is not and what there is.
    pub fn resolve_columns(&self, names: &[String]) -> Result<Vec<usize>, ToolError> {
        let available = self.column_names();
        names
            .iter()
            .map(|name| {
                self.index_of(name).ok_or_else(|| ToolError::UnknownColumn {
                    name: name.clone(),
                    path: self.path.clone(),
                    help: unknown_column_help(name, &available),
                })
            })
            .collect()
    }

    /// Read the given top-level columns (indices into [`ParquetFile::schema`]), batch by
    /// batch; the batches' columns come in file order. `limit` stops after that many rows.
    pub fn read(
        self,
        columns: &[usize],
        limit: Option<usize>,
    ) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader, ToolError> {
        let mask = ProjectionMask::roots(self.builder.parquet_schema(), columns.iter().copied());
        let mut builder = self
            .builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS);
        if let Some(limit) = limit {
            builder = builder.with_limit(limit);
        }
        builder.build().map_err(|e| ToolError::Read {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    /// Open the same file again (each read consumes a [`ParquetFile`]).
    pub fn reopen(&self) -> Result<Self, ToolError> {
        Self::open(&self.path)
    }
}

/// "did you mean" and the list of columns, for an unknown column name.
pub fn unknown_column_help(name: &str, available: &[String]) -> String {
    let list = available.join(", ");
    match closest(name, available) {
        Some(candidate) => format!("did you mean `{candidate}`? The columns are: {list}"),
        None => format!("the columns are: {list}"),
    }
}

/// The column a misspelt name most likely meant: a typo or two away (swapped letters count
/// as one), or the only column that starts with it (`speed` for `speed_kmh`).
fn closest<'a>(name: &str, available: &'a [String]) -> Option<&'a String> {
    let lower = name.to_lowercase();
    let allowed = (lower.chars().count() / 3).max(1);
    let typo = available
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c);
    if typo.is_some() {
        return typo;
    }
    let mut prefixed = available
        .iter()
        .filter(|c| lower.len() >= 2 && c.to_lowercase().starts_with(&lower));
    match (prefixed.next(), prefixed.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// A short name for an Arrow type, as a user would say it.
pub fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".to_string(),
        DataType::Dictionary(_, value) => type_name(value),
        other => {
            let text = other.to_string();
            text.to_lowercase()
        }
    }
}

/// Whether a column can be turned into numbers (for statistics and plots).
pub fn is_numeric(data_type: &DataType) -> bool {
    data_type.is_numeric() || matches!(data_type, DataType::Boolean)
}

/// Whether a column holds text.
pub fn is_text(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, value) => is_text(value),
        _ => false,
    }
}

/// A float for a table cell: at most 4 decimals, trailing zeros trimmed (but `1.0` stays a
/// float), scientific notation for very large or very small magnitudes.
pub fn format_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-3..1e9).contains(&magnitude) {
        return format!("{value:.4e}");
    }
    let mut text = format!("{value:.4}");
    while text.ends_with('0') && !text.ends_with(".0") {
        text.pop();
    }
    if text == "-0.0" {
        text = "0.0".to_string();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_short() {
        assert_eq!(format_float(150.0), "150.0");
        assert_eq!(format_float(0.30000001192092896), "0.3");
        assert_eq!(format_float(-12.345678), "-12.3457");
        assert_eq!(format_float(1.5e12), "1.5000e12");
        assert_eq!(format_float(-0.00001), "-1.0000e-5");
        assert_eq!(format_float(-0.0), "0.0");
        assert_eq!(format_float(0.0), "0.0");
    }

    #[test]
    fn unknown_column_suggests_the_closest() {
        let columns: Vec<String> = ["t_ns", "speed_kmh", "rpm"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let help = unknown_column_help("sped_kmh", &columns);
        assert!(help.starts_with("did you mean `speed_kmh`?"), "{help}");
        assert!(help.ends_with("t_ns, speed_kmh, rpm"), "{help}");
        assert!(unknown_column_help("rmp", &columns).starts_with("did you mean `rpm`?"));
        assert!(unknown_column_help("speed", &columns).starts_with("did you mean `speed_kmh`?"));
        assert!(unknown_column_help("T_NS", &columns).starts_with("did you mean `t_ns`?"));
        let help = unknown_column_help("zzzz", &columns);
        assert!(!help.contains("did you mean"), "{help}");
    }
}
