//! `pitwall-flow inspect FILE.parquet`: what is in a Parquet file, at a glance.
//!
//! Prints, in one pass over the file (batch by batch, so memory stays bounded):
//! - a summary: rows, row groups, size, writer, then every column with its type;
//! - the first `-n` rows (default 20) of the selected columns as an aligned table;
//! - statistics per selected column: count (non-null values), nulls, min, max and mean for
//!   numbers (booleans count as 0/1), distinct values for text columns of short strings
//!   (up to [`DISTINCT_CAP`] distinct values, beyond that `>1000`);
//! - with `--to-csv out.csv`, every row of the selected columns written as CSV (header line,
//!   nulls as empty fields, full float precision), streamed batch by batch.
//!
//! `--columns a b c` selects columns and their order; an unknown name is an error that
//! lists the available columns, with a did-you-mean.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::DataType;

use super::{format_float, is_text, type_name, ParquetFile, ToolError};

/// Distinct values are counted up to this many per text column.
pub const DISTINCT_CAP: usize = 1000;
/// Text longer than this is not "small": its column gets no distinct count.
const DISTINCT_MAX_LEN: usize = 256;
/// Widest table cell, in characters; longer text is cut with `…`.
const CELL_WIDTH: usize = 28;

/// What `inspect` was asked to do.
#[derive(Clone, Debug)]
pub struct InspectOptions {
    pub path: PathBuf,
    /// How many of the first rows to print.
    pub rows: usize,
    /// Columns to show (and export), in this order; empty for all.
    pub columns: Vec<String>,
    /// Write the selected columns (all rows) to this CSV file.
    pub to_csv: Option<PathBuf>,
}

/// Run `inspect`, printing to `out`.
pub fn inspect(options: &InspectOptions, out: &mut dyn Write) -> Result<(), ToolError> {
    let file = ParquetFile::open(&options.path)?;
    let schema = file.schema();
    let selected: Vec<String> = if options.columns.is_empty() {
        file.column_names()
    } else {
        let mut seen = HashSet::new();
        options
            .columns
            .iter()
            .filter(|name| seen.insert(name.as_str()))
            .cloned()
            .collect()
    };
    let indices = file.resolve_columns(&selected)?;

    let mut text = String::new();
    summary(&file, &mut text);
    emit(out, &text)?;

    let types: Vec<DataType> = indices
        .iter()
        .map(|&i| schema.field(i).data_type().clone())
        .collect();
    let mut stats: Vec<ColumnStats> = selected
        .iter()
        .zip(&types)
        .map(|(name, data_type)| ColumnStats::new(name, data_type))
        .collect();
    let mut head: Vec<Vec<String>> = Vec::new();
    let mut csv = match &options.to_csv {
        Some(path) => Some(CsvOut::create(path.clone(), &selected)?),
        None => None,
    };

    let path = file.path.clone();
    let mut total_rows = 0u64;
    for batch in file.read(&indices, None)? {
        let batch = batch.map_err(|e| ToolError::Read {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let columns = in_order(&batch, &selected);
        total_rows += batch.num_rows() as u64;
        if head.len() < options.rows {
            let take = (options.rows - head.len()).min(batch.num_rows());
            head.extend(table_rows(&columns, take));
        }
        for (stat, column) in stats.iter_mut().zip(&columns) {
            stat.add(column);
        }
        if let Some(csv) = csv.as_mut() {
            csv.write_batch(&columns)?;
        }
    }

    let mut text = String::new();
    if options.rows > 0 {
        text.push_str(&format!(
            "\nfirst {} of {} rows:\n",
            head.len(),
            thousands(total_rows)
        ));
        let numeric: Vec<bool> = types.iter().map(right_aligned).collect();
        text.push_str(&render_table(&selected, &head, &numeric));
    }
    text.push_str(&format!("\nstatistics ({} rows):\n", thousands(total_rows)));
    text.push_str(&stats_table(&stats));
    emit(out, &text)?;

    if let Some(csv) = csv {
        let (path, rows) = csv.finish()?;
        emit(
            out,
            &format!(
                "\nwrote {} rows of {} columns to {}\n",
                thousands(rows),
                selected.len(),
                path.display()
            ),
        )?;
    }
    Ok(())
}

fn emit(out: &mut dyn Write, text: &str) -> Result<(), ToolError> {
    // A closed pipe (`inspect ... | head`) is not worth an error message.
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(ToolError::Write {
            path: PathBuf::from("standard output"),
            message: e.to_string(),
        }),
    }
}

fn summary(file: &ParquetFile, text: &mut String) {
    let schema = file.schema();
    text.push_str(&format!("file:       {}\n", file.path.display()));
    text.push_str(&format!(
        "rows:       {}\nrow groups: {}\ncolumns:    {}\nsize:       {}\n",
        thousands(file.num_rows().max(0) as u64),
        file.num_row_groups(),
        schema.fields().len(),
        human_bytes(file.file_bytes)
    ));
    if let Some(writer) = file.created_by() {
        text.push_str(&format!("written by: {writer}\n"));
    }
    text.push_str("\nschema:\n");
    let rows: Vec<Vec<String>> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            vec![
                i.to_string(),
                field.name().clone(),
                type_name(field.data_type()),
                if field.is_nullable() { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    let headers: Vec<String> = ["#", "column", "type", "nullable"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    text.push_str(&render_table(&headers, &rows, &[true, false, false, false]));
}

/// The batch's columns in the order of `names` (every name is in the batch).
fn in_order(batch: &RecordBatch, names: &[String]) -> Vec<ArrayRef> {
    names
        .iter()
        .filter_map(|name| batch.column_by_name(name).cloned())
        .collect()
}

fn right_aligned(data_type: &DataType) -> bool {
    super::is_numeric(data_type)
}

/// The first `take` rows of `columns`, formatted for a table.
fn table_rows(columns: &[ArrayRef], take: usize) -> Vec<Vec<String>> {
    let formatted: Vec<Vec<String>> = columns.iter().map(|column| cells(column, take)).collect();
    (0..take)
        .map(|row| formatted.iter().map(|col| col[row].clone()).collect())
        .collect()
}

fn cells(column: &ArrayRef, take: usize) -> Vec<String> {
    let column = column.slice(0, take.min(column.len()));
    if matches!(
        column.data_type(),
        DataType::Float16 | DataType::Float32 | DataType::Float64
    ) {
        if let Ok(floats) = arrow_cast::cast(&column, &DataType::Float64) {
            let floats = floats.as_primitive::<Float64Type>();
            return (0..floats.len())
                .map(|i| {
                    if floats.is_null(i) {
                        "null".to_string()
                    } else {
                        format_float(floats.value(i))
                    }
                })
                .collect();
        }
    }
    let options = FormatOptions::default().with_null("null");
    let cells = match ArrayFormatter::try_new(column.as_ref(), &options) {
        Ok(formatter) => (0..column.len())
            .map(|i| clip(&formatter.value(i).to_string()))
            .collect(),
        Err(_) => vec!["?".to_string(); column.len()],
    };
    cells
}

/// Cut text to [`CELL_WIDTH`] characters and keep it on one line.
fn clip(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= CELL_WIDTH {
        one_line
    } else {
        let mut cut: String = one_line.chars().take(CELL_WIDTH - 1).collect();
        cut.push('…');
        cut
    }
}

/// An aligned text table: headers, a rule, rows. `right[i]` right-aligns column i.
pub fn render_table(headers: &[String], rows: &[Vec<String>], right: &[bool]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let pad = width.saturating_sub(cell.chars().count());
            if right.get(i).copied().unwrap_or(false) {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            }
        }
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    };
    let mut text = line(headers);
    let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
    text.push_str(&line(&rule));
    for row in rows {
        text.push_str(&line(row));
    }
    text
}

/// Running statistics of one column.
#[derive(Debug)]
pub struct ColumnStats {
    pub name: String,
    pub data_type: DataType,
    /// Non-null values.
    pub count: u64,
    pub nulls: u64,
    pub acc: Acc,
}

/// What is accumulated, by kind of column.
#[derive(Debug)]
pub enum Acc {
    /// Integers, exactly (timestamps in ns do not fit an f64 exactly).
    Int {
        min: i128,
        max: i128,
        sum: i128,
    },
    Float {
        min: f64,
        max: f64,
        sum: f64,
        /// Non-NaN values (min, max and mean are over these).
        finite: u64,
    },
    Bool {
        trues: u64,
    },
    Text {
        /// `None` once a value was too long to count distinct values.
        distinct: Option<HashSet<String>>,
        /// More than [`DISTINCT_CAP`] distinct values seen.
        over_cap: bool,
        min: Option<String>,
        max: Option<String>,
    },
    Other,
}

impl ColumnStats {
    pub fn new(name: &str, data_type: &DataType) -> Self {
        let acc = match data_type {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64 => Acc::Int {
                min: i128::MAX,
                max: i128::MIN,
                sum: 0,
            },
            DataType::Boolean => Acc::Bool { trues: 0 },
            t if t.is_numeric() => Acc::Float {
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                sum: 0.0,
                finite: 0,
            },
            t if is_text(t) => Acc::Text {
                distinct: Some(HashSet::new()),
                over_cap: false,
                min: None,
                max: None,
            },
            _ => Acc::Other,
        };
        Self {
            name: name.to_string(),
            data_type: data_type.clone(),
            count: 0,
            nulls: 0,
            acc,
        }
    }

    /// Add one batch's values of this column.
    pub fn add(&mut self, column: &ArrayRef) {
        let nulls = column.logical_null_count() as u64;
        self.nulls += nulls;
        self.count += column.len() as u64 - nulls;
        match &mut self.acc {
            Acc::Int { min, max, sum } => {
                let unsigned = matches!(
                    column.data_type(),
                    DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64
                );
                let mut add = |v: i128| {
                    *min = (*min).min(v);
                    *max = (*max).max(v);
                    *sum += v;
                };
                if unsigned {
                    if let Ok(values) = arrow_cast::cast(column, &DataType::UInt64) {
                        values
                            .as_primitive::<UInt64Type>()
                            .iter()
                            .flatten()
                            .for_each(|v| add(v as i128));
                    }
                } else if let Ok(values) = arrow_cast::cast(column, &DataType::Int64) {
                    values
                        .as_primitive::<Int64Type>()
                        .iter()
                        .flatten()
                        .for_each(|v| add(v as i128));
                }
            }
            Acc::Float {
                min,
                max,
                sum,
                finite,
            } => {
                if let Ok(values) = arrow_cast::cast(column, &DataType::Float64) {
                    for v in values.as_primitive::<Float64Type>().iter().flatten() {
                        if v.is_nan() {
                            continue;
                        }
                        *min = min.min(v);
                        *max = max.max(v);
                        *sum += v;
                        *finite += 1;
                    }
                }
            }
            Acc::Bool { trues } => {
                if let Some(values) = column.as_boolean_opt() {
                    *trues += values.true_count() as u64;
                }
            }
            Acc::Text {
                distinct,
                over_cap,
                min,
                max,
            } => {
                let Ok(values) = arrow_cast::cast(column, &DataType::Utf8) else {
                    return;
                };
                for v in values.as_string::<i32>().iter().flatten() {
                    if min.as_deref().is_none_or(|m| v < m) {
                        *min = Some(v.to_string());
                    }
                    if max.as_deref().is_none_or(|m| v > m) {
                        *max = Some(v.to_string());
                    }
                    if let Some(set) = distinct {
                        if v.len() > DISTINCT_MAX_LEN {
                            *distinct = None;
                        } else if !set.contains(v) {
                            if set.len() >= DISTINCT_CAP {
                                *over_cap = true;
                            } else {
                                set.insert(v.to_string());
                            }
                        }
                    }
                }
            }
            Acc::Other => {}
        }
    }

    /// Min, max and mean as text (empty where they do not apply).
    pub fn min_max_mean(&self) -> (String, String, String) {
        match &self.acc {
            Acc::Int { min, max, sum } if self.count > 0 => {
                (min.to_string(), max.to_string(), int_mean(*sum, self.count))
            }
            Acc::Float {
                min,
                max,
                sum,
                finite,
            } if *finite > 0 => (
                format_float(*min),
                format_float(*max),
                format_float(sum / *finite as f64),
            ),
            Acc::Bool { trues } if self.count > 0 => (
                (*trues == self.count).to_string(),
                (*trues > 0).to_string(),
                format_float(*trues as f64 / self.count as f64),
            ),
            Acc::Text { min, max, .. } => (
                min.as_deref().map(clip).unwrap_or_default(),
                max.as_deref().map(clip).unwrap_or_default(),
                String::new(),
            ),
            _ => Default::default(),
        }
    }

    /// The number of distinct values, for text columns of short strings.
    pub fn distinct(&self) -> String {
        match &self.acc {
            Acc::Text {
                distinct: Some(set),
                over_cap,
                ..
            } => {
                if *over_cap {
                    format!(">{DISTINCT_CAP}")
                } else {
                    set.len().to_string()
                }
            }
            _ => String::new(),
        }
    }
}

/// The mean of integers: exact and whole for large values (times in ns), else a float.
fn int_mean(sum: i128, count: u64) -> String {
    let mean = sum as f64 / count as f64;
    if mean.abs() < 1e6 {
        return format_float(mean);
    }
    let count = count as i128;
    // Round half away from zero.
    let rounded = (2 * sum + sum.signum() * count) / (2 * count);
    rounded.to_string()
}

fn stats_table(stats: &[ColumnStats]) -> String {
    let headers: Vec<String> = [
        "column", "type", "count", "nulls", "min", "max", "mean", "distinct",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = stats
        .iter()
        .map(|s| {
            let (min, max, mean) = s.min_max_mean();
            vec![
                s.name.clone(),
                type_name(&s.data_type),
                s.count.to_string(),
                s.nulls.to_string(),
                min,
                max,
                mean,
                s.distinct(),
            ]
        })
        .collect();
    let right = [false, false, true, true, true, true, true, true];
    render_table(&headers, &rows, &right)
}

/// CSV output of the selected columns.
struct CsvOut {
    path: PathBuf,
    writer: BufWriter<File>,
    rows: u64,
}

impl CsvOut {
    fn create(path: PathBuf, names: &[String]) -> Result<Self, ToolError> {
        let file = File::create(&path).map_err(|e| ToolError::Write {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut out = Self {
            path,
            writer: BufWriter::with_capacity(1 << 16, file),
            rows: 0,
        };
        let header: Vec<String> = names.iter().map(|n| csv_field(n)).collect();
        out.line(&header.join(","))?;
        Ok(out)
    }

    fn line(&mut self, line: &str) -> Result<(), ToolError> {
        self.writer
            .write_all(line.as_bytes())
            .and_then(|_| self.writer.write_all(b"\n"))
            .map_err(|e| ToolError::Write {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }

    fn write_batch(&mut self, columns: &[ArrayRef]) -> Result<(), ToolError> {
        let options = FormatOptions::default().with_null("");
        let formatters: Vec<ArrayFormatter> = columns
            .iter()
            .map(|c| {
                ArrayFormatter::try_new(c.as_ref(), &options).map_err(|e| ToolError::Write {
                    path: self.path.clone(),
                    message: format!("cannot format a column as text: {e}"),
                })
            })
            .collect::<Result<_, _>>()?;
        let rows = columns.first().map_or(0, |c| c.len());
        let mut line = String::new();
        let mut cell = String::new();
        for row in 0..rows {
            line.clear();
            for (i, formatter) in formatters.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                cell.clear();
                // Writing into a String cannot fail; a value that cannot be shown stays empty.
                let _ = write!(cell, "{}", formatter.value(row));
                if needs_quotes(&cell) {
                    line.push_str(&csv_field(&cell));
                } else {
                    line.push_str(&cell);
                }
            }
            self.line(&line)?;
        }
        self.rows += rows as u64;
        Ok(())
    }

    fn finish(mut self) -> Result<(PathBuf, u64), ToolError> {
        self.writer
            .flush()
            .and_then(|_| self.writer.get_ref().sync_all())
            .map_err(|e| ToolError::Write {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        Ok((self.path, self.rows))
    }
}

fn needs_quotes(text: &str) -> bool {
    text.contains([',', '"', '\n', '\r'])
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
pub fn csv_field(text: &str) -> String {
    if needs_quotes(text) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{BooleanArray, Float32Array, Int64Array, StringArray};

    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn thousands_and_sizes() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn integer_stats_are_exact() {
        let mut stats = ColumnStats::new("t_ns", &DataType::Int64);
        let big = 1_700_000_000_123_456_789i64;
        let column: ArrayRef = Arc::new(Int64Array::from(vec![Some(big), None, Some(big + 2)]));
        stats.add(&column);
        assert_eq!(stats.count, 2);
        assert_eq!(stats.nulls, 1);
        let (min, max, mean) = stats.min_max_mean();
        assert_eq!(min, big.to_string());
        assert_eq!(max, (big + 2).to_string());
        assert_eq!(mean, (big + 1).to_string());
        assert_eq!(int_mean(-7, 2), "-3.5");
        assert_eq!(int_mean(5_000_001, 2), "2500001");
        assert_eq!(int_mean(-5_000_001, 2), "-2500001");
    }

    #[test]
    fn float_stats_skip_nan_and_nulls() {
        let mut stats = ColumnStats::new("speed", &DataType::Float32);
        let column: ArrayRef = Arc::new(Float32Array::from(vec![
            Some(1.0),
            Some(f32::NAN),
            None,
            Some(3.0),
        ]));
        stats.add(&column);
        assert_eq!((stats.count, stats.nulls), (3, 1));
        assert_eq!(
            stats.min_max_mean(),
            ("1.0".to_string(), "3.0".to_string(), "2.0".to_string())
        );
    }

    #[test]
    fn bool_and_text_stats() {
        let mut flags = ColumnStats::new("in_pit", &DataType::Boolean);
        flags.add(&(Arc::new(BooleanArray::from(vec![true, false, false, false])) as ArrayRef));
        assert_eq!(flags.min_max_mean().2, "0.25");

        let mut text = ColumnStats::new("game", &DataType::Utf8);
        text.add(&(Arc::new(StringArray::from(vec!["rf2", "ac", "rf2"])) as ArrayRef));
        assert_eq!(text.distinct(), "2");
        let (min, max, mean) = text.min_max_mean();
        assert_eq!(
            (min.as_str(), max.as_str(), mean.as_str()),
            ("ac", "rf2", "")
        );

        let mut many = ColumnStats::new("id", &DataType::Utf8);
        let values: Vec<String> = (0..DISTINCT_CAP + 5).map(|i| format!("v{i}")).collect();
        many.add(&(Arc::new(StringArray::from(values)) as ArrayRef));
        assert_eq!(many.distinct(), format!(">{DISTINCT_CAP}"));
    }

    #[test]
    fn tables_align() {
        let headers = vec!["name".to_string(), "n".to_string()];
        let rows = vec![
            vec!["a".to_string(), "1".to_string()],
            vec!["long name".to_string(), "100".to_string()],
        ];
        let table = render_table(&headers, &rows, &[false, true]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "name         n");
        assert_eq!(lines[2], "a            1");
        assert_eq!(lines[3], "long name  100");
    }
}
