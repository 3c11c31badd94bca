//! The session cache on disk, and loading it into typed records.
//!
//! Layout (the contract shared with the simulated sample generator), for a session `K`:
//!
//! ```text
//! {cache_dir}/race_data_K/
//!   sessions.json meetings.json drivers.json laps.json position.json intervals.json
//!   stints.json pit.json race_control.json session_result.json starting_grid.json weather.json
//!   location/{driver_number}.json   car_data/{driver_number}.json
//!   manifest.json                   {"session_key": K, "complete": true, "source": "...", "created": "..."}
//! ```
//!
//! Each file is a JSON array exactly as the OpenF1 endpoint returns it; any file may be gzipped
//! instead (`{name}.json.gz`). The downloader writes plain `.json`, each file atomically (a
//! temporary name, then a rename) and the manifest last, so a cache with `complete: true` is
//! whole and a partial one can be resumed file by file. Missing optional files are empty.
//!
//! [`load_cache`] is the hot path of every replay: the per-driver files hold nearly all of the
//! rows, so they are parsed on every core (`std::thread::scope`, largest first), each straight
//! into compact samples, and the text of a file is dropped as soon as it is parsed.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use pitwall_api::record::{
    parse_iso8601_ns, Driver, Event, GridSlot, Lap, Pit, RaceControlMessage, Record, Session,
    SessionKey, SessionResultEntry, Stint, Weather,
};
use serde::{Deserialize, Serialize};

use super::rows::{self, CarSample, LocationSample, Skipped};

/// The document files of a session, without extension.
pub const DOCUMENTS: [&str; 12] = [
    "sessions",
    "meetings",
    "drivers",
    "laps",
    "position",
    "intervals",
    "stints",
    "pit",
    "race_control",
    "session_result",
    "starting_grid",
    "weather",
];

/// Per-driver series folders.
pub const LOCATION: &str = "location";
pub const CAR_DATA: &str = "car_data";
pub const MANIFEST: &str = "manifest.json";

/// `{root}/race_data_{key}`.
pub fn session_dir(root: &Path, session_key: u64) -> PathBuf {
    root.join(format!("race_data_{session_key}"))
}

/// The file holding `name` (`laps`, `location/44`): `name.json`, else `name.json.gz`.
pub fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let plain = dir.join(format!("{name}.json"));
    if plain.is_file() {
        return Some(plain);
    }
    let gz = dir.join(format!("{name}.json.gz"));
    gz.is_file().then_some(gz)
}

/// The text of a cache file, gunzipped when its name ends in `.gz`.
pub fn read_text(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    read_text_into(path, &mut text)?;
    Ok(text)
}

/// [`read_text`] into a buffer that is reused from file to file: the loader's threads each
/// keep one, so the allocator is not asked for (and does not hold on to) a new multi-MB
/// block per file.
pub fn read_text_into(path: &Path, text: &mut String) -> io::Result<()> {
    text.clear();
    let mut file = std::fs::File::open(path)?;
    if path.extension().is_some_and(|ext| ext == "gz") {
        let compressed = std::fs::read(path)?;
        // The gzip trailer holds the uncompressed size (mod 4 GiB): a good capacity hint.
        let hint = compressed
            .len()
            .checked_sub(4)
            .and_then(|at| compressed.get(at..))
            .map_or(0, |tail| {
                u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as usize
            });
        text.reserve(hint.min(1 << 30));
        flate2::read::MultiGzDecoder::new(&compressed[..]).read_to_string(text)?;
    } else {
        let size = file.metadata().map_or(0, |m| m.len() as usize);
        text.reserve(size);
        file.read_to_string(text)?;
    }
    Ok(())
}

/// Write a file so that readers see either nothing or all of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".part");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

/// `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// A number for OpenF1 sessions; kept as JSON so any simulator's key fits.
    pub session_key: serde_json::Value,
    #[serde(default)]
    pub complete: bool,
    /// The base URL it was downloaded from, or `simulated ...`.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
    /// Set by the sample generator.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub simulated: bool,
}

impl Manifest {
    pub fn session_key_text(&self) -> Option<String> {
        match &self.session_key {
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }
    }

    pub fn is_simulated(&self) -> bool {
        self.simulated
            || self
                .source
                .as_deref()
                .is_some_and(|s| s.to_ascii_lowercase().contains("simulated"))
    }
}

pub fn read_manifest(dir: &Path) -> Option<Manifest> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The newest session downloaded completely from OpenF1 under `root` (session keys grow
/// with time), for `"latest"` when OpenF1 cannot be reached. Simulated sessions do not
/// count: "latest" means the latest real one.
pub fn newest_downloaded_session(root: &Path) -> Option<u64> {
    std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let key: u64 = name.to_str()?.strip_prefix("race_data_")?.parse().ok()?;
            let manifest = read_manifest(&entry.path())?;
            (manifest.complete && !manifest.is_simulated()).then_some(key)
        })
        .max()
}

/// Whether `dir` holds a complete cache (replay needs no network).
pub fn is_complete(dir: &Path) -> bool {
    read_manifest(dir).is_some_and(|m| m.complete)
}

pub fn write_manifest(dir: &Path, session_key: u64, source: &str) -> io::Result<()> {
    let manifest = Manifest {
        session_key: session_key.into(),
        complete: true,
        source: Some(source.to_string()),
        created: Some(now_iso8601()),
        simulated: false,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
    write_atomic(&dir.join(MANIFEST), &text)
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

pub(crate) fn now_iso8601() -> String {
    pitwall_api::record::format_iso8601_ns(now_ns())
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("no cached session at {0}")]
    Missing(PathBuf),
    #[error("cannot read the cache at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// One driver's series, each sorted by time.
#[derive(Clone, Debug, Default)]
pub struct CarSeries {
    pub driver_number: u32,
    pub location: Vec<LocationSample>,
    pub car_data: Vec<CarSample>,
}

/// A whole cached session, typed.
#[derive(Clone, Debug, Default)]
pub struct SessionData {
    pub session_key: SessionKey,
    pub manifest: Option<Manifest>,
    /// `sessions` joined with the meeting's name (and a note for simulated sessions).
    pub session: Session,
    /// Deduplicated by driver number.
    pub drivers: Vec<Driver>,
    /// Sorted by (driver, lap), deduplicated.
    pub laps: Vec<Lap>,
    pub stints: Vec<Stint>,
    pub pits: Vec<Pit>,
    pub results: Vec<SessionResultEntry>,
    pub grid: Vec<GridSlot>,
    /// Race positions, intervals, race-control messages and weather, sorted by time.
    pub series: Vec<Event>,
    /// Per driver, sorted by driver number.
    pub cars: Vec<CarSeries>,
    pub skipped: Skipped,
}

impl SessionData {
    pub fn car(&self, driver_number: u32) -> Option<&CarSeries> {
        self.cars
            .binary_search_by_key(&driver_number, |c| c.driver_number)
            .ok()
            .map(|i| &self.cars[i])
    }

    /// Time of the first and the last sample of any time series.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let mut first = i64::MAX;
        let mut last = i64::MIN;
        let mut include = |t: i64| {
            first = first.min(t);
            last = last.max(t);
        };
        for car in &self.cars {
            for t in [car.location.first(), car.location.last()]
                .into_iter()
                .flatten()
            {
                include(t.time_ns);
            }
            for t in [car.car_data.first(), car.car_data.last()]
                .into_iter()
                .flatten()
            {
                include(t.time_ns);
            }
        }
        for t in [self.series.first(), self.series.last()]
            .into_iter()
            .flatten()
        {
            include(t.time_ns);
        }
        (first <= last).then_some((first, last))
    }

    /// Rows of location + car data held.
    pub fn sample_count(&self) -> usize {
        self.cars
            .iter()
            .map(|c| c.location.len() + c.car_data.len())
            .sum()
    }
}

enum Task {
    Documents,
    Location(u32, PathBuf),
    CarData(u32, PathBuf),
}

enum Loaded {
    Documents(Box<SessionData>),
    Location(u32, Vec<LocationSample>),
    CarData(u32, Vec<CarSample>),
}

/// Load a cached session (complete or not) into typed records, using every core.
///
/// Never fails on bad content: unreadable files and malformed rows are logged, counted in
/// [`SessionData::skipped`] and left out. Fails only when `dir` is not a directory.
pub fn load_cache(dir: &Path) -> Result<SessionData, CacheError> {
    if !dir.is_dir() {
        return Err(CacheError::Missing(dir.to_path_buf()));
    }
    let manifest = read_manifest(dir);
    let session_key: SessionKey = manifest
        .as_ref()
        .and_then(Manifest::session_key_text)
        .or_else(|| session_key_of_sessions(dir))
        .or_else(|| {
            dir.file_name()?
                .to_str()?
                .strip_prefix("race_data_")
                .map(str::to_string)
        })
        .unwrap_or_default()
        .into();

    let mut tasks = vec![Task::Documents];
    let mut sized: Vec<(u64, Task)> = Vec::new();
    for (folder, is_location) in [(LOCATION, true), (CAR_DATA, false)] {
        for (driver, path) in driver_files(&dir.join(folder)) {
            let size = std::fs::metadata(&path).map_or(0, |m| m.len());
            let task = if is_location {
                Task::Location(driver, path)
            } else {
                Task::CarData(driver, path)
            };
            sized.push((size, task));
        }
    }
    // Largest first, so that no core is left with one big file at the end.
    sized.sort_by_key(|(size, _)| std::cmp::Reverse(*size));
    tasks.extend(sized.into_iter().map(|(_, task)| task));

    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8)
        .min(tasks.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(Loaded, Skipped)>> = Mutex::new(Vec::with_capacity(tasks.len()));
    let work = || {
        let mut buffer = String::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(task) = tasks.get(index) else {
                break;
            };
            let mut skipped = Skipped::default();
            let loaded = run_task(dir, &session_key, task, &mut buffer, &mut skipped);
            results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((loaded, skipped));
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..workers {
            scope.spawn(work);
        }
        work();
    });

    let mut data = SessionData::default();
    let mut cars: BTreeMap<u32, CarSeries> = BTreeMap::new();
    let mut skipped = Skipped::default();
    for (loaded, task_skipped) in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        skipped.add(task_skipped);
        match loaded {
            Loaded::Documents(documents) => data = *documents,
            Loaded::Location(driver, samples) => {
                let car = cars.entry(driver).or_default();
                car.driver_number = driver;
                car.location = samples;
            }
            Loaded::CarData(driver, samples) => {
                let car = cars.entry(driver).or_default();
                car.driver_number = driver;
                car.car_data = samples;
            }
        }
    }
    data.cars = cars.into_values().collect();
    data.skipped.add(skipped);
    data.session_key = session_key;
    if let Some(manifest) = &manifest {
        if manifest.is_simulated() {
            data.session.note = manifest.source.clone();
        }
    }
    data.manifest = manifest;
    Ok(data)
}

fn session_key_of_sessions(dir: &Path) -> Option<String> {
    #[derive(Deserialize)]
    struct KeyOnly {
        session_key: serde_json::Value,
    }
    let text = read_text(&find_file(dir, "sessions")?).ok()?;
    let rows: Vec<KeyOnly> = serde_json::from_str(&text).ok()?;
    match &rows.first()?.session_key {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// `{n}.json` / `{n}.json.gz` files of a folder, by driver number (plain wins over gzip).
fn driver_files(folder: &Path) -> BTreeMap<u32, PathBuf> {
    let mut files = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(folder) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let (number, plain) = if let Some(stem) = name.strip_suffix(".json") {
            (stem, true)
        } else if let Some(stem) = name.strip_suffix(".json.gz") {
            (stem, false)
        } else {
            continue;
        };
        let Ok(driver) = number.parse::<u32>() else {
            tracing::warn!(file = %path.display(), "openf1 cache: not a driver file, ignored");
            continue;
        };
        if plain || !files.contains_key(&driver) {
            files.insert(driver, path);
        }
    }
    files
}

fn run_task(
    dir: &Path,
    session_key: &SessionKey,
    task: &Task,
    buffer: &mut String,
    skipped: &mut Skipped,
) -> Loaded {
    match task {
        Task::Documents => Loaded::Documents(Box::new(load_documents(dir, session_key, skipped))),
        Task::Location(driver, path) => {
            let samples = read_text_into(path, buffer)
                .map_err(|e| e.to_string())
                .and_then(|()| rows::location_samples(buffer, skipped).map_err(|e| e.to_string()))
                .unwrap_or_else(|error| {
                    file_failed(path, &error, skipped);
                    Vec::new()
                });
            Loaded::Location(*driver, samples)
        }
        Task::CarData(driver, path) => {
            let samples = read_text_into(path, buffer)
                .map_err(|e| e.to_string())
                .and_then(|()| rows::car_samples(buffer, skipped).map_err(|e| e.to_string()))
                .unwrap_or_else(|error| {
                    file_failed(path, &error, skipped);
                    Vec::new()
                });
            Loaded::CarData(*driver, samples)
        }
    }
}

fn file_failed(path: &Path, error: &str, skipped: &mut Skipped) {
    skipped.files += 1;
    tracing::warn!(file = %path.display(), %error, "openf1 cache: file skipped");
}

/// The text of document `name`, or `None` when it is absent (an empty document).
fn document_text(dir: &Path, name: &str, skipped: &mut Skipped) -> Option<String> {
    let path = find_file(dir, name)?;
    match read_text(&path) {
        Ok(text) => Some(text),
        Err(error) => {
            file_failed(&path, &error.to_string(), skipped);
            None
        }
    }
}

fn document<T: serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
    session_key: &str,
    skipped: &mut Skipped,
) -> Vec<T> {
    let Some(text) = document_text(dir, name, skipped) else {
        return Vec::new();
    };
    rows::records(&text, session_key, skipped).unwrap_or_else(|error| {
        file_failed(&dir.join(name), &error.to_string(), skipped);
        Vec::new()
    })
}

fn load_documents(dir: &Path, session_key: &SessionKey, skipped: &mut Skipped) -> SessionData {
    let key: &str = session_key;
    let sessions: Vec<Session> = document(dir, "sessions", key, skipped);
    let mut session = sessions.into_iter().next().unwrap_or_default();
    session.session_key = session_key.clone();

    #[derive(Deserialize)]
    struct Meeting {
        #[serde(default)]
        meeting_key: Option<i64>,
        #[serde(default)]
        meeting_name: Option<String>,
    }
    let meetings: Vec<Meeting> = document(dir, "meetings", key, skipped);
    if session.meeting_name.is_none() {
        session.meeting_name = meetings
            .iter()
            .find(|m| session.meeting_key.is_none() || m.meeting_key == session.meeting_key)
            .or(meetings.first())
            .and_then(|m| m.meeting_name.clone());
    }

    let drivers = merge_drivers(document(dir, "drivers", key, skipped));
    let mut laps: Vec<Lap> = document(dir, "laps", key, skipped);
    // The later row of a lap wins (OpenF1 completes laps by updating them).
    laps.reverse();
    laps.sort_by_key(|lap| (lap.driver_number, lap.lap_number));
    let before = laps.len();
    laps.dedup_by_key(|lap| (lap.driver_number, lap.lap_number));
    skipped.rows += (before - laps.len()) as u64;

    let mut stints: Vec<Stint> = document(dir, "stints", key, skipped);
    stints.sort_by_key(|s| (s.driver_number, s.stint_number));
    let mut pits: Vec<Pit> = document(dir, "pit", key, skipped);
    pits.sort_by_key(|p| {
        p.date
            .as_deref()
            .and_then(parse_iso8601_ns)
            .unwrap_or(i64::MAX)
    });
    let results: Vec<SessionResultEntry> = document(dir, "session_result", key, skipped);
    let mut grid: Vec<GridSlot> = document(dir, "starting_grid", key, skipped);
    grid.sort_by_key(|slot| slot.position);

    let mut series = Vec::new();
    if let Some(text) = document_text(dir, "position", skipped) {
        match rows::race_positions(&text, session_key, skipped) {
            Ok(rows) => series.extend(
                rows.into_iter()
                    .map(|(time, row)| Event::new(time, Record::RacePosition(row))),
            ),
            Err(error) => file_failed(&dir.join("position"), &error.to_string(), skipped),
        }
    }
    let dated = |date: &Option<String>, skipped: &mut Skipped| {
        let time = date.as_deref().and_then(parse_iso8601_ns);
        if time.is_none() {
            skipped.rows += 1;
        }
        time
    };
    if let Some(text) = document_text(dir, "intervals", skipped) {
        match rows::intervals(&text, session_key, skipped) {
            Ok(rows) => series.extend(
                rows.into_iter()
                    .map(|(time, row)| Event::new(time, Record::Interval(row.into()))),
            ),
            Err(error) => file_failed(&dir.join("intervals"), &error.to_string(), skipped),
        }
    }
    for row in document::<RaceControlMessage>(dir, "race_control", key, skipped) {
        if let Some(time) = dated(&row.date, skipped) {
            series.push(Event::new(time, Record::RaceControl(row.into())));
        }
    }
    for row in document::<Weather>(dir, "weather", key, skipped) {
        if let Some(time) = dated(&row.date, skipped) {
            series.push(Event::new(time, Record::Weather(row.into())));
        }
    }
    series.sort_by_key(|event| event.time_ns);

    SessionData {
        session,
        drivers,
        laps,
        stints,
        pits,
        results,
        grid,
        series,
        ..SessionData::default()
    }
}

/// One driver per number; a later row fills what an earlier one left null.
pub fn merge_drivers(rows: Vec<Driver>) -> Vec<Driver> {
    let mut by_number: BTreeMap<u32, Driver> = BTreeMap::new();
    for row in rows {
        match by_number.get_mut(&row.driver_number) {
            None => {
                by_number.insert(row.driver_number, row);
            }
            Some(known) => {
                let fill = |slot: &mut Option<String>, value: Option<String>| {
                    if slot.is_none() {
                        *slot = value;
                    }
                };
                fill(&mut known.broadcast_name, row.broadcast_name);
                fill(&mut known.full_name, row.full_name);
                fill(&mut known.first_name, row.first_name);
                fill(&mut known.last_name, row.last_name);
                fill(&mut known.name_acronym, row.name_acronym);
                fill(&mut known.team_name, row.team_name);
                fill(&mut known.team_colour, row.team_colour);
                fill(&mut known.headshot_url, row.headshot_url);
                fill(&mut known.country_code, row.country_code);
            }
        }
    }
    by_number.into_values().collect()
}
