//! The simulated sample session: a whole race written as an OpenF1 cache.
//!
//! There is no licence-clean public dump of OpenF1 `location` and `car_data` for a whole
//! session, so demos, benchmarks and tests use this instead: a seeded, deterministic
//! simulation of a race on the real Monza outline (MultiViewer circuit data, see
//! `data/README.md`), written in exactly the layout the `openf1` source reads from its
//! cache directory:
//!
//! ```text
//! {out_dir}/race_data_{session_key}/
//!   sessions.json meetings.json drivers.json laps.json position.json intervals.json
//!   stints.json pit.json race_control.json session_result.json starting_grid.json weather.json
//!   location/{driver_number}.json  car_data/{driver_number}.json
//!   circuit_info.json   (the MultiViewer circuit JSON, unchanged)
//!   manifest.json       (written last: {"complete": true, "simulated": true, ...})
//! ```
//!
//! Every file is a JSON array as the OpenF1 endpoint returns it (same field names and types,
//! ISO 8601 times with microseconds); with `gzip` each is written as `{name}.json.gz`
//! instead (`circuit_info.json` and `manifest.json` stay plain). Meeting and session names
//! say the race is simulated.
//!
//! What is simulated: 20 cars (2024-like numbers, names, teams and colours) with their own
//! pace; qualifying decides the grid; a formation lap; a standing start; lap-by-lap racing
//! where faster cars catch slower ones and either pass or are held up; one pit stop per car
//! around half distance through a pit lane beside the main straight (~20 s in the lane)
//! with a change of compound; in races of 10 laps or more one car retires on track (yellow
//! flag); the chequered flag, a cool-down lap and parc fermé in the pit lane. Location and
//! car data at ~3.7 Hz (all cars of a location sample share its `date`), positions as
//! change events, intervals every ~4 s, weather every minute. A car's location at any time
//! agrees with its lap and sector times, because both come from the same motion.

mod docs;
mod roster;
mod sim;
mod table;
mod track;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use flate2::write::GzEncoder;
use flate2::Compression;
use pitwall_api::record::{format_iso8601_ns, parse_iso8601_ns};
use serde::Serialize;

pub use roster::MAX_CARS;
pub use track::MONZA_CIRCUIT_JSON;

use sim::Race;

/// The most laps a sample can have.
pub const MAX_LAPS: u32 = 200;

/// Where the simulated data starts: five minutes before the formation lap at 13:00 UTC.
const DATA_START: &str = "2024-09-01T12:55:00+00:00";
/// Meeting key of the simulated meeting (not a real OpenF1 meeting).
pub const SAMPLE_MEETING_KEY: u32 = 1999;

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleOptions {
    /// OpenF1 session key of the simulated race (9999 by default).
    pub session_key: u32,
    /// Race distance in laps (1..=200).
    pub laps: u32,
    /// Cars on the grid (1..=40; 20 are 2024-like drivers, more are generated).
    pub cars: u32,
    /// Seed of the simulation: the same seed gives the same race, byte for byte
    /// (except `manifest.json`'s `created`).
    pub seed: u64,
    /// Write `{name}.json.gz` instead of `{name}.json`.
    pub gzip: bool,
    /// The cache directory; the session goes into `race_data_{session_key}/` inside it.
    pub out_dir: PathBuf,
}

impl Default for SampleOptions {
    fn default() -> Self {
        Self {
            session_key: 9999,
            laps: 5,
            cars: 20,
            seed: 2024,
            gzip: false,
            out_dir: PathBuf::from("cache"),
        }
    }
}

/// What was written.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleSummary {
    /// The session directory (`{out_dir}/race_data_{session_key}`).
    pub dir: PathBuf,
    pub location_rows: usize,
    pub car_data_rows: usize,
    /// Rows of `laps.json`.
    pub laps: usize,
    /// Bytes on disk of every file written.
    pub bytes_written: u64,
}

/// Simulate a race and write it as an OpenF1 cache.
///
/// An existing `race_data_{session_key}` directory is replaced, unless its manifest says it
/// holds real (not simulated) data: then this fails with `AlreadyExists` rather than
/// overwrite a downloaded session.
pub fn generate(options: &SampleOptions) -> io::Result<SampleSummary> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    if !(1..=MAX_LAPS).contains(&options.laps) {
        return Err(invalid(format!(
            "laps must be 1..={MAX_LAPS}, not {}",
            options.laps
        )));
    }
    if !(1..=MAX_CARS).contains(&options.cars) {
        return Err(invalid(format!(
            "cars must be 1..={MAX_CARS}, not {}",
            options.cars
        )));
    }
    let started = Instant::now();
    let dir = options
        .out_dir
        .join(format!("race_data_{}", options.session_key));
    prepare_dir(&dir)?;

    let race = Race::simulate(options.laps, options.cars, options.seed);
    let data_start_ns = parse_iso8601_ns(DATA_START).unwrap_or_default();
    let ctx = docs::Context {
        race: &race,
        session_key: options.session_key,
        meeting_key: SAMPLE_MEETING_KEY,
        data_start_ns,
        seed: options.seed,
    };
    let mut writer = Writer {
        dir: dir.clone(),
        gzip: options.gzip,
        bytes: 0,
    };

    let laps = docs::laps(&ctx);
    let lap_rows = laps.len();
    writer.write_rows("sessions", &docs::sessions(&ctx))?;
    writer.write_rows("meetings", &docs::meetings(&ctx))?;
    writer.write_rows("drivers", &docs::drivers(&ctx))?;
    writer.write_rows("laps", &laps)?;
    writer.write_rows("position", &docs::positions(&ctx))?;
    writer.write_rows("intervals", &docs::intervals(&ctx))?;
    writer.write_rows("stints", &docs::stints(&ctx))?;
    writer.write_rows("pit", &docs::pits(&ctx))?;
    writer.write_rows("race_control", &docs::race_control(&ctx))?;
    writer.write_rows("session_result", &docs::session_result(&ctx))?;
    writer.write_rows("starting_grid", &docs::starting_grid(&ctx))?;
    writer.write_rows("weather", &docs::weather(&ctx))?;

    let (location_rows, car_data_rows, telemetry_bytes) = docs::write_telemetry(&ctx, &writer)?;
    writer.bytes += telemetry_bytes;

    let circuit = dir.join("circuit_info.json");
    fs::write(&circuit, MONZA_CIRCUIT_JSON)?;
    writer.bytes += MONZA_CIRCUIT_JSON.len() as u64;

    let created_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let manifest = serde_json::json!({
        "session_key": options.session_key,
        "complete": true,
        "source": format!("simulated by pitwall-flow sample-session (seed {})", options.seed),
        "simulated": true,
        "created": format_iso8601_ns(created_ns),
    });
    let text = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
    fs::write(dir.join("manifest.json"), &text)?;
    writer.bytes += text.len() as u64;

    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        location_rows,
        car_data_rows,
        "sample session written"
    );
    Ok(SampleSummary {
        dir,
        location_rows,
        car_data_rows,
        laps: lap_rows,
        bytes_written: writer.bytes,
    })
}

/// Make `dir` empty, refusing to delete a real downloaded session.
fn prepare_dir(dir: &Path) -> io::Result<()> {
    if dir.exists() {
        let manifest = dir.join("manifest.json");
        if manifest.exists() {
            let simulated = fs::read(&manifest)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
                .and_then(|value| value.get("simulated").and_then(|v| v.as_bool()))
                .unwrap_or(false);
            if !simulated {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} holds a session that was not simulated; choose another session key or remove it",
                        dir.display()
                    ),
                ));
            }
            // Drop the manifest first: a half-rewritten directory never looks complete.
            fs::remove_file(&manifest)?;
        }
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir.join("location"))?;
    fs::create_dir_all(dir.join("car_data"))?;
    Ok(())
}

/// Writes JSON arrays, plain or gzipped, and counts bytes on disk.
pub(crate) struct Writer {
    dir: PathBuf,
    gzip: bool,
    bytes: u64,
}

impl Writer {
    fn path(&self, name: &str) -> PathBuf {
        let file = if self.gzip {
            format!("{name}.json.gz")
        } else {
            format!("{name}.json")
        };
        self.dir.join(file)
    }

    fn write_rows<T: Serialize>(&mut self, name: &str, rows: &[T]) -> io::Result<()> {
        let mut array = self.open(name)?;
        for row in rows {
            array.push(row)?;
        }
        self.bytes += array.finish()?;
        Ok(())
    }

    /// Start a JSON array file `name` (may contain a `/`).
    pub(crate) fn open(&self, name: &str) -> io::Result<ArrayWriter> {
        let path = self.path(name);
        let file = File::create(&path)?;
        // Buffer in front of the encoder: serde_json writes in many small pieces.
        let out = if self.gzip {
            Sink::Gzip(Box::new(BufWriter::with_capacity(
                1 << 16,
                GzEncoder::new(file, Compression::new(4)),
            )))
        } else {
            Sink::Plain(BufWriter::with_capacity(1 << 16, file))
        };
        ArrayWriter::start(out, path)
    }
}

/// A file being written, plain or through gzip.
enum Sink {
    Plain(BufWriter<File>),
    Gzip(Box<BufWriter<GzEncoder<File>>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(out) => out.write(buf),
            Self::Gzip(out) => out.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(out) => out.write_all(buf),
            Self::Gzip(out) => out.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(out) => out.flush(),
            Self::Gzip(out) => out.flush(),
        }
    }
}

impl Sink {
    /// Flush everything, including the gzip trailer, and close the file.
    fn finish(self) -> io::Result<()> {
        match self {
            Self::Plain(out) => {
                out.into_inner().map_err(|e| e.into_error())?;
            }
            Self::Gzip(out) => {
                out.into_inner().map_err(|e| e.into_error())?.finish()?;
            }
        }
        Ok(())
    }
}

/// One JSON array being written row by row.
pub(crate) struct ArrayWriter {
    out: Sink,
    path: PathBuf,
    first: bool,
}

impl ArrayWriter {
    fn start(mut out: Sink, path: PathBuf) -> io::Result<Self> {
        out.write_all(b"[")?;
        Ok(Self {
            out,
            path,
            first: true,
        })
    }

    pub(crate) fn push<T: Serialize>(&mut self, row: &T) -> io::Result<()> {
        if !self.first {
            self.out.write_all(b",")?;
        }
        self.first = false;
        serde_json::to_writer(&mut self.out, row).map_err(io::Error::other)
    }

    /// Close the array and the file; returns its size on disk.
    pub(crate) fn finish(mut self) -> io::Result<u64> {
        self.out.write_all(b"]")?;
        self.out.finish()?;
        Ok(fs::metadata(&self.path)?.len())
    }
}

#[cfg(test)]
mod tests;
