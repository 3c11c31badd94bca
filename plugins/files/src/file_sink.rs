//! Sink `file`: record events as NDJSON, one [`Event`] per line.
//!
//! The line is the event's serde form (`{"time_ns":..,"kind":..,...}`), which the `file`
//! source replays. Recordings must not lose data, so edges into this sink `block` by
//! default, and a file is always left made of whole lines:
//!
//! - each event is serialised completely into a scratch buffer before any of it is written,
//!   so a line is handed to the writer whole or not at all; an event without a JSON form (a
//!   raw JSON record that is not an object) is counted as an error and skipped;
//! - the buffer is flushed every `flush_every_ms` (wall clock, also when no events arrive),
//!   on every rotation, and at the end;
//! - when the input ends (the engine drains sinks on shutdown, SIGTERM included) the file is
//!   flushed, fsynced and closed;
//! - appending to a file whose last line was cut off (a crash, a full disk) first ends that
//!   line, so only the damaged line is lost, never the next one.
//!
//! `path` is relative to the pipeline file and may contain `{date}` (today in UTC,
//! `yyyy-mm-dd`, when the file is opened; a new day starts a new file) and `{n}` (a sequence
//! number from 0, needed for `rotate_max_bytes` / `rotate_every_s`). Rotation by size happens
//! before a line would make the file larger than `rotate_max_bytes` (a single larger line
//! gets a file of its own); rotation by age after `rotate_every_s` of wall-clock time, at
//! the next event. Rotation always moves to a sequence number whose file does not exist yet.
//!
//! `append = true` (default) appends to an existing file; with `{n}` it resumes the highest
//! numbered file (of a contiguous run from 0) if it is below `rotate_max_bytes`.
//! `append = false` truncates a file without `{n}`; with `{n}` it starts the next free number,
//! so an earlier recording is never overwritten.
//!
//! Writes run on tokio's blocking pool, one hop per batch. A write error (a full disk) returns
//! an error: the engine restarts the sink, which reopens the file and retries from the event
//! that failed (lines already buffered before the error may be lost).
//!
//! ```toml
//! [sinks.record]
//! type = "file"
//! inputs = ["f1"]
//! path = "recordings/{date}-{n}.ndjson"
//! # rotate_max_bytes = 100000000
//! # rotate_every_s = 3600
//! flush_every_ms = 1000
//! append = true
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::record::format_iso8601_ns;
use pitwall_api::{
    Batch, BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io,
    Kinds, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::should_log;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// File to write, relative to the pipeline file. May contain `{date}` (UTC yyyy-mm-dd)
    /// and `{n}` (sequence number, needed for rotation).
    pub path: String,
    /// Start a new file before this one would grow beyond this many bytes.
    #[serde(default)]
    pub rotate_max_bytes: Option<u64>,
    /// Start a new file after this many seconds (wall clock).
    #[serde(default)]
    pub rotate_every_s: Option<u64>,
    /// Write buffered lines to the file at least this often (ms, wall clock); 0 = after every batch.
    #[serde(default = "default_flush_every_ms")]
    pub flush_every_ms: u64,
    /// Append to an existing file (true) or start a fresh one (false: truncate, or with
    /// `{n}` the next free number).
    #[serde(default = "default_append")]
    pub append: bool,
}

fn default_flush_every_ms() -> u64 {
    1000
}
fn default_append() -> bool {
    true
}

/// Placeholders a path template may contain.
const PLACEHOLDERS: [&str; 2] = ["{date}", "{n}"];

/// Unknown `{...}` placeholders in a template.
fn unknown_placeholders(template: &str) -> Vec<String> {
    let mut unknown = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        match after.find('}') {
            Some(close) => {
                let placeholder = &after[..=close];
                if !PLACEHOLDERS.contains(&placeholder) {
                    unknown.push(placeholder.to_string());
                }
                rest = &after[close + 1..];
            }
            None => {
                unknown.push(after.to_string());
                break;
            }
        }
    }
    unknown
}

impl ComponentConfig for FileSinkConfig {
    fn accepts(&self) -> Kinds {
        Kinds::any()
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if self.path.trim().is_empty() {
            problems.push(OptionProblem::new("path", "must name a file"));
        }
        let unknown = unknown_placeholders(&self.path);
        if !unknown.is_empty() {
            problems.push(OptionProblem::new(
                "path",
                format!(
                    "unknown placeholder {}; a path may contain {{date}} and {{n}}",
                    unknown.join(", ")
                ),
            ));
        }
        for (key, value) in [
            ("rotate_max_bytes", self.rotate_max_bytes),
            ("rotate_every_s", self.rotate_every_s),
        ] {
            if value == Some(0) {
                problems.push(OptionProblem::new(key, "must be at least 1"));
            } else if value.is_some() && !self.path.contains("{n}") {
                problems.push(OptionProblem::new(
                    "path",
                    format!("`{key}` needs `{{n}}` in `path` so that rotated files get distinct names, e.g. \"recording-{{n}}.ndjson\""),
                ));
            }
        }
        problems
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        let problems = self.check();
        if let Some(problem) = problems.first() {
            return Err(format!("{}: {}", problem.key, problem.message).into());
        }
        let settings = Settings {
            base_dir: ctx.base_dir.clone(),
            template: self.path.clone(),
            rotate_max_bytes: self.rotate_max_bytes,
            rotate_every: self.rotate_every_s.map(Duration::from_secs),
            append: self.append,
        };
        // Fail now, not at the first event, if the directory cannot be made.
        let first = settings.path(&utc_date(), 0);
        if let Some(dir) = first.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
        }
        Ok(Box::new(FileSink {
            settings,
            flush_every: Duration::from_millis(self.flush_every_ms),
            recorder: None,
            pending: None,
            skipped: 0,
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<FileSinkConfig>(
        "file",
        Role::Sink,
        "Records events as NDJSON lines, with optional rotation by size or age",
    )
}

/// Today's date in UTC, `yyyy-mm-dd`.
pub fn utc_date() -> String {
    let ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    format_iso8601_ns(ns)[..10].to_string()
}

/// Where and how to write.
#[derive(Clone, Debug)]
pub struct Settings {
    pub base_dir: PathBuf,
    pub template: String,
    pub rotate_max_bytes: Option<u64>,
    pub rotate_every: Option<Duration>,
    pub append: bool,
}

impl Settings {
    /// The file for `date` and sequence number `n`.
    pub fn path(&self, date: &str, n: u64) -> PathBuf {
        let expanded = self
            .template
            .replace("{date}", date)
            .replace("{n}", &n.to_string());
        let path = Path::new(&expanded);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    fn has_n(&self) -> bool {
        self.template.contains("{n}")
    }

    fn has_date(&self) -> bool {
        self.template.contains("{date}")
    }
}

/// Sequence numbers probed when looking for existing files.
const MAX_PROBE: u64 = 1_000_000;

struct OpenFile {
    writer: BufWriter<File>,
    path: PathBuf,
    size: u64,
    opened: Instant,
}

/// An error while writing a batch: the index of the event that was not written.
#[derive(Debug)]
pub struct WriteError {
    pub index: usize,
    pub error: io::Error,
}

/// The file writing, rotation and naming, without async: runs on the blocking pool.
pub struct Recorder {
    settings: Settings,
    file: Option<OpenFile>,
    date: String,
    n: u64,
    line: Vec<u8>,
}

impl Recorder {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            file: None,
            date: String::new(),
            n: 0,
            line: Vec::with_capacity(512),
        }
    }

    /// The file being written, if one is open.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.path.as_path())
    }

    /// Write `events` as lines; `today` is the UTC date for `{date}`. Returns how many
    /// events had no JSON form and were skipped.
    pub fn write(&mut self, events: &[Event], today: &str) -> Result<u64, WriteError> {
        let due = self.file.as_ref().is_some_and(|f| {
            (self.settings.has_date() && self.date != today)
                || self
                    .settings
                    .rotate_every
                    .is_some_and(|every| f.opened.elapsed() >= every)
        });
        if due {
            self.rotate(today)
                .map_err(|error| WriteError { index: 0, error })?;
        }
        let mut skipped = 0;
        let mut line = std::mem::take(&mut self.line);
        let mut result = Ok(());
        for (index, event) in events.iter().enumerate() {
            line.clear();
            if serde_json::to_writer(&mut line, event).is_err() {
                skipped += 1;
                continue;
            }
            line.push(b'\n');
            if let Err(error) = self.write_line(&line, today) {
                result = Err(WriteError { index, error });
                break;
            }
        }
        self.line = line;
        result.map(|()| skipped)
    }

    fn write_line(&mut self, line: &[u8], today: &str) -> io::Result<()> {
        let len = line.len() as u64;
        let full = match (&self.file, self.settings.rotate_max_bytes) {
            (Some(file), Some(max)) => file.size > 0 && file.size + len > max,
            _ => false,
        };
        if self.file.is_none() {
            self.open_first(today)?;
        } else if full {
            self.rotate(today)?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("no file open"));
        };
        file.writer.write_all(line)?;
        file.size += len;
        Ok(())
    }

    /// The first free sequence number at or after `from`.
    fn next_free(&self, date: &str, from: u64) -> u64 {
        let mut n = from;
        while n < from + MAX_PROBE && self.settings.path(date, n).exists() {
            n += 1;
        }
        n
    }

    fn open_first(&mut self, today: &str) -> io::Result<()> {
        self.date = today.to_string();
        if !self.settings.has_n() {
            let path = self.settings.path(today, 0);
            return self.open(path, self.settings.append);
        }
        let mut last = None;
        while last.map_or(0, |l| l + 1) < MAX_PROBE
            && self
                .settings
                .path(today, last.map_or(0, |l| l + 1))
                .exists()
        {
            last = Some(last.map_or(0, |l| l + 1));
        }
        self.n = match last {
            Some(last) if self.settings.append => {
                let size = std::fs::metadata(self.settings.path(today, last))
                    .map(|m| m.len())
                    .unwrap_or(0);
                if self
                    .settings
                    .rotate_max_bytes
                    .is_some_and(|max| size >= max)
                {
                    self.next_free(today, last + 1)
                } else {
                    last
                }
            }
            Some(last) => self.next_free(today, last + 1),
            None => 0,
        };
        let path = self.settings.path(today, self.n);
        self.open(path, true)
    }

    fn rotate(&mut self, today: &str) -> io::Result<()> {
        self.close()?;
        if self.date != today {
            self.date = today.to_string();
            self.n = self.next_free(today, 0);
        } else if self.settings.has_n() {
            self.n = self.next_free(today, self.n + 1);
        }
        let path = self.settings.path(today, self.n);
        self.open(path, true)
    }

    fn open(&mut self, path: PathBuf, append: bool) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = OpenOptions::new();
        options.create(true);
        if append {
            options.append(true);
        } else {
            options.write(true).truncate(true);
        }
        let file = options.open(&path)?;
        let mut size = file.metadata()?.len();
        let mut writer = BufWriter::with_capacity(256 * 1024, file);
        if size > 0 && !ends_with_newline(&path)? {
            tracing::warn!(path = %path.display(), "file: the last line was cut off; ending it before appending");
            writer.write_all(b"\n")?;
            size += 1;
        }
        tracing::debug!(path = %path.display(), "file: writing");
        self.file = Some(OpenFile {
            writer,
            path,
            size,
            opened: Instant::now(),
        });
        Ok(())
    }

    /// Write buffered lines to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(file) => file.writer.flush(),
            None => Ok(()),
        }
    }

    /// Flush, fsync and close the current file.
    pub fn close(&mut self) -> io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.writer.flush()?;
            file.writer.get_ref().sync_all()?;
        }
        Ok(())
    }

    /// Forget the current file after an error (it is reopened at the next write).
    pub fn abandon(&mut self) {
        if let Some(file) = self.file.take() {
            // Dropping the writer tries one last flush; its error is moot now.
            drop(file);
        }
    }
}

fn ends_with_newline(path: &Path) -> io::Result<bool> {
    let mut file = File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

struct FileSink {
    settings: Settings,
    flush_every: Duration,
    /// On the blocking pool while a batch is written; `None` also after a panic there.
    recorder: Option<Recorder>,
    /// A batch whose write failed, and the index to retry from.
    pending: Option<(Batch, usize)>,
    skipped: u64,
}

impl FileSink {
    /// Run `f` on the recorder on the blocking pool.
    async fn blocking<T, F>(&mut self, f: F) -> Result<T, ComponentError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Recorder) -> T + Send + 'static,
    {
        let settings = &self.settings;
        crate::on_blocking_pool(&mut self.recorder, || Recorder::new(settings.clone()), f).await
    }

    async fn write(&mut self, io: &Io, batch: Batch, start: usize) -> Result<(), ComponentError> {
        let today = utc_date();
        let events = batch.clone();
        let result = self
            .blocking(move |recorder| recorder.write(events.get(start..).unwrap_or(&[]), &today))
            .await;
        match result {
            Ok(Ok(skipped)) => {
                if skipped > 0 {
                    for _ in 0..skipped {
                        io.metrics.add_error();
                    }
                    self.skipped += skipped;
                    if should_log(self.skipped) {
                        tracing::warn!(
                            count = self.skipped,
                            "file: skipped events that have no JSON form"
                        );
                    }
                }
                Ok(())
            }
            Ok(Err(WriteError { index, error })) => {
                if let Some(recorder) = &mut self.recorder {
                    recorder.abandon();
                }
                self.pending = Some((batch, start + index));
                Err(Box::new(error))
            }
            Err(error) => {
                self.pending = Some((batch, start));
                Err(error)
            }
        }
    }

    async fn flush(&mut self) -> Result<(), ComponentError> {
        Ok(self.blocking(|recorder| recorder.flush()).await??)
    }
}

#[async_trait]
impl Component for FileSink {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let Some(mut input) = io.input.take() else {
            return Ok(());
        };
        let result = self.record(io, &mut input).await;
        io.input = Some(input);
        result
    }
}

impl FileSink {
    async fn record(
        &mut self,
        io: &Io,
        input: &mut pitwall_api::Input,
    ) -> Result<(), ComponentError> {
        if let Some((batch, start)) = self.pending.take() {
            self.write(io, batch, start).await?;
        }
        let mut last_flush = tokio::time::Instant::now();
        let mut dirty = false;
        loop {
            let deadline = last_flush + self.flush_every;
            tokio::select! {
                batch = input.recv() => {
                    let Some(batch) = batch else { break };
                    self.write(io, batch, 0).await?;
                    dirty = true;
                    if last_flush.elapsed() >= self.flush_every {
                        self.flush().await?;
                        last_flush = tokio::time::Instant::now();
                        dirty = false;
                    }
                }
                _ = tokio::time::sleep_until(deadline), if dirty => {
                    self.flush().await?;
                    last_flush = tokio::time::Instant::now();
                    dirty = false;
                }
            }
        }
        Ok(self.blocking(|recorder| recorder.close()).await??)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::record::{CarPosition, Record};
    use pitwall_api::testing::{build_context, parse_config, wire};
    use pitwall_api::WhenFull;
    use std::sync::Arc;

    pub(crate) fn positions(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| {
                Event::new(
                    i as i64 * 270_000_000,
                    Record::Position(CarPosition {
                        session_key: "9158".into(),
                        car: (i % 20) as u32 + 1,
                        x: i as f64 * 1.5,
                        y: -(i as f64),
                        z: 0.0,
                        spline: None,
                    }),
                )
            })
            .collect()
    }

    fn settings(dir: &Path, template: &str) -> Settings {
        Settings {
            base_dir: dir.to_path_buf(),
            template: template.into(),
            rotate_max_bytes: None,
            rotate_every: None,
            append: true,
        }
    }

    fn read_events(path: &Path) -> Vec<Event> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn rotation_by_size_makes_complete_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path(), "rec/{date}-{n}.ndjson");
        s.rotate_max_bytes = Some(2000);
        let mut recorder = Recorder::new(s);
        let events = positions(100);
        for chunk in events.chunks(7) {
            assert_eq!(recorder.write(chunk, "2024-05-26").unwrap(), 0);
        }
        recorder.close().unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path().join("rec"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort_by_key(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            name.rsplit('-').next().unwrap().parse::<u64>().unwrap()
        });
        assert!(files.len() >= 4, "{} files", files.len());
        assert!(files[0].ends_with("2024-05-26-0.ndjson"));
        let mut back = Vec::new();
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            assert!(
                bytes.len() <= 2000,
                "{} is {} bytes",
                file.display(),
                bytes.len()
            );
            assert_eq!(bytes.last(), Some(&b'\n'), "ends with a whole line");
            back.extend(read_events(file));
        }
        assert_eq!(back, events);
    }

    #[test]
    fn append_resumes_and_repairs_a_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.ndjson");
        std::fs::write(
            &path,
            "{\"time_ns\":1,\"kind\":\"tick\"}\n{\"time_ns\":2,\"ki",
        )
        .unwrap();
        let mut recorder = Recorder::new(settings(dir.path(), "log.ndjson"));
        recorder
            .write(&[Event::new(3, Record::Tick)], "2024-05-26")
            .unwrap();
        recorder.close().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"time_ns\":1,\"kind\":\"tick\"}\n{\"time_ns\":2,\"ki\n{\"time_ns\":3,\"kind\":\"tick\"}\n"
        );
        // append = false truncates.
        let mut s = settings(dir.path(), "log.ndjson");
        s.append = false;
        let mut recorder = Recorder::new(s);
        recorder
            .write(&[Event::new(4, Record::Tick)], "2024-05-26")
            .unwrap();
        recorder.close().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"time_ns\":4,\"kind\":\"tick\"}\n"
        );
    }

    #[test]
    fn sequence_numbers_resume_or_move_on() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("r-0.ndjson"), "").unwrap();
        std::fs::write(
            dir.path().join("r-1.ndjson"),
            "{\"time_ns\":1,\"kind\":\"tick\"}\n",
        )
        .unwrap();
        let tick = [Event::new(9, Record::Tick)];
        // append: resume r-1
        let mut recorder = Recorder::new(settings(dir.path(), "r-{n}.ndjson"));
        recorder.write(&tick, "d").unwrap();
        assert!(recorder.path().unwrap().ends_with("r-1.ndjson"));
        recorder.close().unwrap();
        assert_eq!(read_events(&dir.path().join("r-1.ndjson")).len(), 2);
        // no append: never overwrite, take r-2
        let mut s = settings(dir.path(), "r-{n}.ndjson");
        s.append = false;
        let mut recorder = Recorder::new(s);
        recorder.write(&tick, "d").unwrap();
        assert!(recorder.path().unwrap().ends_with("r-2.ndjson"));
        recorder.close().unwrap();
        // A new date starts a new file.
        let mut recorder = Recorder::new(settings(dir.path(), "{date}/x-{n}.ndjson"));
        recorder.write(&tick, "2024-01-01").unwrap();
        recorder.write(&tick, "2024-01-02").unwrap();
        recorder.close().unwrap();
        assert_eq!(
            read_events(&dir.path().join("2024-01-01/x-0.ndjson")).len(),
            1
        );
        assert_eq!(
            read_events(&dir.path().join("2024-01-02/x-0.ndjson")).len(),
            1
        );
    }

    #[test]
    fn rotation_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path(), "a-{n}.ndjson");
        s.rotate_every = Some(Duration::from_millis(30));
        let mut recorder = Recorder::new(s);
        recorder.write(&[Event::new(1, Record::Tick)], "d").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        recorder.write(&[Event::new(2, Record::Tick)], "d").unwrap();
        recorder.close().unwrap();
        assert_eq!(read_events(&dir.path().join("a-0.ndjson")).len(), 1);
        assert_eq!(read_events(&dir.path().join("a-1.ndjson")).len(), 1);
    }

    #[test]
    fn unwritable_events_are_skipped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut recorder = Recorder::new(settings(dir.path(), "s.ndjson"));
        let skipped = recorder
            .write(
                &[
                    Event::new(1, Record::Tick),
                    Event::new(2, Record::Json(Arc::new(serde_json::json!([1, 2])))),
                    Event::new(3, Record::Tick),
                ],
                "d",
            )
            .unwrap();
        recorder.close().unwrap();
        assert_eq!(skipped, 1);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("s.ndjson")).unwrap(),
            "{\"time_ns\":1,\"kind\":\"tick\"}\n{\"time_ns\":3,\"kind\":\"tick\"}\n"
        );
    }

    #[tokio::test]
    async fn flushes_while_running_and_closes_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let config: FileSinkConfig = parse_config("path = \"live.ndjson\"\nflush_every_ms = 50");
        let mut sink = config.build(&build_context("rec", dir.path())).unwrap();
        let mut wiring = wire("rec", true);
        let input = wiring.input.take().unwrap();
        let path = dir.path().join("live.ndjson");
        let task = tokio::spawn(async move {
            sink.run(&mut wiring.io).await.unwrap();
        });
        input.push(Arc::new(positions(10)), WhenFull::Block).await;
        // Nothing else arrives: the flush timer writes the lines anyway.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(read_events(&path).len(), 10);
        input.push(Arc::new(positions(3)), WhenFull::Block).await;
        input.close();
        task.await.unwrap();
        assert_eq!(read_events(&path).len(), 13);
    }

    #[test]
    fn options_are_checked() {
        let config: FileSinkConfig = parse_config("path = \"x.ndjson\"\nrotate_max_bytes = 10");
        assert_eq!(config.check()[0].key, "path");
        assert!(config.check()[0].message.contains("{n}"));
        let config: FileSinkConfig = parse_config("path = \"x-{day}.ndjson\"");
        assert!(config.check()[0].message.contains("{day}"));
        let config: FileSinkConfig = parse_config("path = \"x-{n}.ndjson\"\nrotate_every_s = 0");
        assert_eq!(config.check()[0].key, "rotate_every_s");
        let config: FileSinkConfig =
            parse_config("path = \"{date}/x-{n}.ndjson\"\nrotate_every_s = 60");
        assert!(config.check().is_empty());
    }
}
