//! `pitwall-flow convert telemetry_record.pb.gz out.parquet`: a `.pb.gz` recording (the
//! Assetto Corsa bridge's or `proto_record`'s) to one Parquet file of car telemetry, like
//! the original `recorder_reader.py`, with the same columns the `parquet` sink writes.
//!
//! It does what `pipelines/ac-convert.toml` does (`proto_replay` at speed 0 into `parquet`)
//! with the same parts (`pbgz` reading and decoding, the sink's `Recorder`), but as one
//! straight loop instead of a graph: no records shared between threads, no queues, no task
//! hops. Three threads remain, each on its own stage: inflating (the stream is one gzip
//! member, so inflating cannot be split), decoding frames into columns (here), and encoding
//! and writing each row group (the recorder's writer thread).
//!
//! Memory stays bounded by one row group being gathered and one being written, whatever the
//! recording's size. The output is written under a temporary name next to it and renamed
//! when complete, so a file with the output's name is always a whole Parquet file; an
//! existing output is never overwritten. A recording cut off mid-record (a crashed bridge)
//! converts up to its last whole frame, with a warning, as the original reader did.

use std::path::{Path, PathBuf};
use std::time::Instant;

use pitwall_api::telemetry::FrameStrings;
use pitwall_files::parquet::{ParquetCompression, Recorder, Settings};
use pitwall_files::pbgz::{self, End, Next};

use super::ToolError;

/// Frames between two looks at whether the recorder lost rows to a write error.
const CHECK_EVERY: u64 = 4096;

/// What to convert, and how to write it.
pub struct ConvertOptions {
    /// Recordings, converted in this order into one file.
    pub inputs: Vec<PathBuf>,
    /// The Parquet file to write (must not exist).
    pub output: PathBuf,
    pub compression: ParquetCompression,
    /// Rows per row group (the `parquet` sink's `row_group_rows`).
    pub row_group_rows: usize,
}

/// What a conversion did.
#[derive(Debug)]
pub struct ConvertSummary {
    pub frames: u64,
    /// Records that were not telemetry frames (skipped).
    pub malformed: u64,
    /// Inputs that ended inside a record or a damaged gzip block, and how.
    pub cut: Vec<(PathBuf, String)>,
    pub output_bytes: u64,
    pub seconds: f64,
}

/// Convert `options.inputs` into `options.output`.
pub fn convert(options: &ConvertOptions) -> Result<ConvertSummary, ToolError> {
    let started = Instant::now();
    let output = &options.output;
    if output.exists() {
        return Err(ToolError::Exists {
            path: output.clone(),
        });
    }
    let dir = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The recorder names its files itself, in a directory of its own: a hidden one next to
    // the output, so the rename at the end stays on one file system.
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = dir.join(format!(".{name}.converting"));
    std::fs::create_dir_all(&staging).map_err(|e| write_error(&staging, e))?;
    let result = convert_into(options, &staging, started);
    let finished = result.and_then(|(summary, written)| {
        std::fs::rename(&written, output).map_err(|e| write_error(output, e))?;
        Ok(summary)
    });
    let _ = std::fs::remove_dir_all(&staging);
    let mut summary = finished?;
    summary.output_bytes = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    Ok(summary)
}

/// Write every input into one file in `staging`; the summary and that file's path.
fn convert_into(
    options: &ConvertOptions,
    staging: &Path,
    started: Instant,
) -> Result<(ConvertSummary, PathBuf), ToolError> {
    let settings = Settings {
        dir: staging.to_path_buf(),
        kinds: None,
        row_group_rows: options.row_group_rows.max(1),
        row_group_bytes: 64 * 1024 * 1024,
        compression: options.compression,
        roll_interval: None,
        component: "convert".into(),
    };
    let mut recorder = Recorder::new(settings, 0);
    let mut summary = ConvertSummary {
        frames: 0,
        malformed: 0,
        cut: Vec::new(),
        output_bytes: 0,
        seconds: 0.0,
    };
    for input in &options.inputs {
        let mut file = std::fs::File::open(input).map_err(|error| ToolError::Open {
            path: input.clone(),
            reason: error.to_string(),
            help: "check the path of the recording".into(),
        })?;
        pbgz::check_gzip(&mut file).map_err(|e| read_error(input, e))?;
        let mut frames = pbgz::open_threaded(file).map_err(|e| read_error(input, e))?;
        let mut strings = FrameStrings::default();
        let end = loop {
            match frames.next_frame() {
                Next::Frame(bytes) => match pbgz::decode_car(bytes, &mut strings) {
                    Ok(car) => {
                        // The recording's clock, as `proto_replay` emits it.
                        let time_ns = i64::try_from(car.monotonic_ns).unwrap_or(i64::MAX);
                        recorder
                            .write_car(time_ns, &car)
                            .map_err(|e| write_error(&options.output, e))?;
                        summary.frames += 1;
                        if summary.frames.is_multiple_of(CHECK_EVERY) {
                            check_lost(&mut recorder, &options.output)?;
                        }
                    }
                    Err(_) => summary.malformed += 1,
                },
                Next::End(end) => break end,
            }
        };
        match end {
            End::Clean => {}
            // No frame at all: not a recording (or an empty one).
            End::Cut(error) if summary.frames == 0 => return Err(read_error(input, error)),
            cut => summary.cut.push((input.clone(), cut.to_string())),
        }
    }
    let (counts, closed) = recorder.finish();
    closed.map_err(|e| write_error(&options.output, e))?;
    if counts.lost > 0 {
        return Err(lost(counts.lost, &options.output));
    }
    // The one file the recorder wrote (car_telemetry is the only kind a recording holds).
    let written = std::fs::read_dir(staging)
        .map_err(|e| read_error(staging, e))?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "parquet"));
    let Some(written) = written else {
        return Err(ToolError::NoRows {
            message: "the recordings hold no telemetry frame".into(),
            help: "check that these are .pb.gz recordings of TelemetryFrame records".into(),
        });
    };
    summary.seconds = started.elapsed().as_secs_f64();
    Ok((summary, written))
}

/// A write error (a full disk) makes the recorder drop rows and carry on, as a sink must;
/// a conversion stops instead.
fn check_lost(recorder: &mut Recorder, output: &Path) -> Result<(), ToolError> {
    match recorder.take_counts().lost {
        0 => Ok(()),
        n => Err(lost(n, output)),
    }
}

fn lost(rows: u64, output: &Path) -> ToolError {
    ToolError::Write {
        path: output.to_path_buf(),
        message: format!("{rows} rows could not be written (see the log above)"),
    }
}

fn write_error(path: &Path, error: impl std::fmt::Display) -> ToolError {
    ToolError::Write {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

fn read_error(path: &Path, error: impl std::fmt::Display) -> ToolError {
    ToolError::Read {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}
