//! Sink `proto_record`: record car telemetry as `.pb.gz`, the Assetto Corsa bridge's own
//! recording format (FORMATS.md 5b), so the original tools (`recorder_reader.py`) read what
//! pitwall-flow records, from any game.
//!
//! A file is one gzip stream of `[varint length][TelemetryFrame bytes]` records, byte for byte
//! what the bridge writes: each `car_telemetry` record becomes a frame with
//! [`to_frame`](pitwall_api::telemetry::to_frame). Other kinds are ignored.
//!
//! Recordings must not lose data, so edges into this sink `block` by default, and a file is
//! readable whatever happens to the process:
//!
//! - every `flush_interval_ms` (wall clock, also when nothing arrives) the gzip stream is
//!   sync-flushed and handed to the operating system: a file cut anywhere (a crash, a kill)
//!   still decompresses, with Python's `gzip` as with this crate's reader, up to the last
//!   flush at least, so a crash loses at most that much;
//! - when the input ends (the engine drains sinks on shutdown, SIGTERM included), and on
//!   every roll, the gzip stream is finished (trailer written), fsynced and closed.
//!
//! `path` is relative to the pipeline file. A directory (one that exists, or a path ending in
//! `/`) gets files named `telemetry-{stamp}-{n}.pb.gz`; otherwise `path` names the file and
//! may contain `{stamp}` (UTC `yyyymmddThhmmss` when the file is opened) and `{n}` (the
//! first number from 0 whose file does not exist yet). An existing file is never
//! overwritten: a fixed name that exists fails the build. Rolling (`roll_bytes`,
//! `roll_interval_s`) needs `{n}` (a directory has it). `roll_bytes` counts compressed bytes
//! written; gzip buffers some, so a file may end up a few tens of KiB larger.
//!
//! Writes run on tokio's blocking pool, one hop per batch. A write error (a full disk)
//! returns an error: the engine restarts the sink, which starts a new file and goes on from
//! the record that failed.
//!
//! ```toml
//! [sinks.record]
//! type = "proto_record"
//! inputs = ["ac"]
//! path = "recordings/"            # or "recordings/ac-{stamp}-{n}.pb.gz"
//! flush_interval_ms = 1000
//! # roll_bytes = 100000000
//! # roll_interval_s = 3600
//! gzip_level = 6
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::{
    Batch, BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io,
    Kinds, Record, RecordKind, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::parquet::{file_stamp, now_ns};
use crate::pbgz::FrameWriter;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProtoRecordConfig {
    /// Where to write, relative to the pipeline file: a directory (existing, or ending in
    /// `/`) gets `telemetry-{stamp}-{n}.pb.gz` files; a file name may contain `{stamp}` (UTC
    /// yyyymmddThhmmss at opening) and `{n}` (first free number). Never overwrites a file.
    pub path: String,
    /// Sync-flush the gzip stream to the file at least this often (ms, wall clock): a crash
    /// loses at most this much. 0 = after every batch.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Start a new file once this many compressed bytes were written (needs `{n}`).
    #[serde(default)]
    pub roll_bytes: Option<u64>,
    /// Start a new file after this many seconds (wall clock; needs `{n}`).
    #[serde(default)]
    pub roll_interval_s: Option<u64>,
    /// gzip level: 0 (no compression, fastest) to 9 (smallest); 6 is zlib's default.
    #[serde(default = "default_gzip_level")]
    pub gzip_level: u32,
}

fn default_flush_interval_ms() -> u64 {
    1000
}

fn default_gzip_level() -> u32 {
    6
}

/// File name used inside a directory.
pub const DIRECTORY_FILE_NAME: &str = "telemetry-{stamp}-{n}.pb.gz";

const PLACEHOLDERS: [&str; 2] = ["{stamp}", "{n}"];

fn unknown_placeholders(template: &str) -> Vec<String> {
    let mut unknown = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        match after.find('}') {
            Some(close) => {
                if !PLACEHOLDERS.contains(&&after[..=close]) {
                    unknown.push(after[..=close].to_string());
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

impl ProtoRecordConfig {
    /// The file-name template, absolute: a directory gets [`DIRECTORY_FILE_NAME`].
    pub fn template(&self, ctx: &BuildContext) -> String {
        let resolved = ctx.resolve_path(Path::new(&self.path));
        if self.path.ends_with('/') || self.path.ends_with('\\') || resolved.is_dir() {
            resolved
                .join(DIRECTORY_FILE_NAME)
                .to_string_lossy()
                .into_owned()
        } else {
            resolved.to_string_lossy().into_owned()
        }
    }
}

impl ComponentConfig for ProtoRecordConfig {
    fn accepts(&self) -> Kinds {
        Kinds::of(&[RecordKind::CarTelemetry])
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if self.path.trim().is_empty() {
            problems.push(OptionProblem::new(
                "path",
                "must name a file or a directory",
            ));
        }
        let unknown = unknown_placeholders(&self.path);
        if !unknown.is_empty() {
            problems.push(OptionProblem::new(
                "path",
                format!(
                    "unknown placeholder {}; a path may contain {{stamp}} and {{n}}",
                    unknown.join(", ")
                ),
            ));
        }
        for (key, value) in [
            ("roll_bytes", self.roll_bytes),
            ("roll_interval_s", self.roll_interval_s),
        ] {
            if value == Some(0) {
                problems.push(OptionProblem::new(key, "must be at least 1"));
            }
        }
        if self.gzip_level > 9 {
            problems.push(OptionProblem::new(
                "gzip_level",
                format!("must be 0 to 9, not {}", self.gzip_level),
            ));
        }
        problems
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        if let Some(problem) = self.check().first() {
            return Err(format!("{}: {}", problem.key, problem.message).into());
        }
        let template = self.template(ctx);
        let rolls = self.roll_bytes.is_some() || self.roll_interval_s.is_some();
        if rolls && !template.contains("{n}") {
            return Err(format!(
                "path: rolling to new files needs `{{n}}` in the file name (or a directory) so that files get distinct names, e.g. \"{}-{{n}}.pb.gz\"",
                self.path.trim_end_matches(".pb.gz")
            )
            .into());
        }
        let settings = Settings {
            template,
            gzip_level: self.gzip_level,
            roll_bytes: self.roll_bytes,
            roll_every: self.roll_interval_s.map(Duration::from_secs),
        };
        let first = settings.path(&file_stamp(now_ns()), 0);
        if !settings.template.contains("{n}")
            && !settings.template.contains("{stamp}")
            && first.exists()
        {
            return Err(format!(
                "{} exists and a recording never overwrites one: remove it, or add `{{stamp}}` or `{{n}}` to `path`",
                first.display()
            )
            .into());
        }
        if let Some(dir) = first.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
        }
        Ok(Box::new(ProtoRecord {
            settings,
            flush_every: Duration::from_millis(self.flush_interval_ms),
            recorder: None,
            pending: None,
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<ProtoRecordConfig>(
        "proto_record",
        Role::Sink,
        "Records car telemetry as .pb.gz (gzip of length-delimited telemetry.v1 frames), the AC bridge's format",
    )
}

/// Where and how to write.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Absolute file-name template with `{stamp}` / `{n}`.
    pub template: String,
    pub gzip_level: u32,
    pub roll_bytes: Option<u64>,
    pub roll_every: Option<Duration>,
}

impl Settings {
    pub fn path(&self, stamp: &str, n: u64) -> PathBuf {
        PathBuf::from(
            self.template
                .replace("{stamp}", stamp)
                .replace("{n}", &n.to_string()),
        )
    }
}

/// A writer that counts the bytes that pass through it.
pub struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct OpenFile {
    writer: FrameWriter<Counted<File>>,
    path: PathBuf,
    opened: Instant,
}

/// An error while writing a batch: the index of the event that was not written.
#[derive(Debug)]
pub struct WriteError {
    pub index: usize,
    pub error: io::Error,
}

/// File writing, naming and rolling, without async: runs on the blocking pool.
pub struct Recorder {
    settings: Settings,
    file: Option<OpenFile>,
    /// Every file opened so far, in order.
    paths: Vec<PathBuf>,
}

impl Recorder {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            file: None,
            paths: Vec::new(),
        }
    }

    /// The files opened so far, in order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    fn roll_due(&self) -> bool {
        self.file.as_ref().is_some_and(|f| {
            self.settings
                .roll_bytes
                .is_some_and(|max| f.writer.get_ref().bytes >= max)
                || self
                    .settings
                    .roll_every
                    .is_some_and(|every| f.opened.elapsed() >= every)
        })
    }

    /// Write the `car_telemetry` records of `events` (others are ignored).
    pub fn write(&mut self, events: &[Event]) -> Result<(), WriteError> {
        for (index, event) in events.iter().enumerate() {
            let Record::CarTelemetry(car) = &event.record else {
                continue;
            };
            let result = (|| {
                if self.roll_due() {
                    self.close()?;
                }
                if self.file.is_none() {
                    self.open()?;
                }
                match self.file.as_mut() {
                    Some(file) => file.writer.write_car(car),
                    None => Err(io::Error::other("no file open")),
                }
            })();
            result.map_err(|error| WriteError { index, error })?;
        }
        Ok(())
    }

    fn open(&mut self) -> io::Result<()> {
        let stamp = file_stamp(now_ns());
        let has_n = self.settings.template.contains("{n}");
        let mut n = 0;
        let path = loop {
            let path = self.settings.path(&stamp, n);
            if !has_n || !path.exists() || n >= 1_000_000 {
                break path;
            }
            n += 1;
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display()))
            })?;
        tracing::debug!(path = %path.display(), "proto_record: writing");
        self.paths.push(path.clone());
        self.file = Some(OpenFile {
            writer: FrameWriter::new(
                Counted {
                    inner: file,
                    bytes: 0,
                },
                self.settings.gzip_level,
            ),
            path,
            opened: Instant::now(),
        });
        Ok(())
    }

    /// Sync-flush the gzip stream into the file (readable up to here if cut later); closes
    /// the file instead when its roll is due.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.roll_due() {
            return self.close();
        }
        match &mut self.file {
            Some(file) => {
                file.writer.sync_flush()?;
                file.writer.get_mut().flush()
            }
            None => Ok(()),
        }
    }

    /// Finish the gzip stream, fsync and close the current file.
    pub fn close(&mut self) -> io::Result<()> {
        if let Some(file) = self.file.take() {
            let counted = file.writer.finish()?;
            counted.inner.sync_all()?;
            tracing::debug!(path = %file.path.display(), bytes = counted.bytes, "proto_record: closed");
        }
        Ok(())
    }

    /// Forget the current file after an error; the next write opens a new one.
    pub fn abandon(&mut self) {
        if let Some(file) = self.file.take() {
            // Try to leave a complete stream behind; the error that got us here may repeat.
            let _ = file.writer.finish();
        }
    }
}

impl Drop for Recorder {
    /// A recorder dropped without `close` (its task was cancelled) still ends its file.
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::warn!(%error, "proto_record: closing the file failed");
        }
    }
}

struct ProtoRecord {
    settings: Settings,
    flush_every: Duration,
    /// On the blocking pool while a batch is written.
    recorder: Option<Recorder>,
    /// A batch whose write failed, and the index to go on from.
    pending: Option<(Batch, usize)>,
}

impl ProtoRecord {
    async fn blocking<T, F>(&mut self, f: F) -> Result<T, ComponentError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Recorder) -> T + Send + 'static,
    {
        let settings = &self.settings;
        crate::on_blocking_pool(&mut self.recorder, || Recorder::new(settings.clone()), f).await
    }

    async fn write(&mut self, batch: Batch, start: usize) -> Result<(), ComponentError> {
        let events = batch.clone();
        match self
            .blocking(move |r| r.write(events.get(start..).unwrap_or(&[])))
            .await
        {
            Ok(Ok(())) => Ok(()),
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
        Ok(self.blocking(|r| r.flush()).await??)
    }

    async fn record(&mut self, input: &mut pitwall_api::Input) -> Result<(), ComponentError> {
        if let Some((batch, start)) = self.pending.take() {
            self.write(batch, start).await?;
        }
        let mut last_flush = tokio::time::Instant::now();
        let mut dirty = false;
        loop {
            let deadline = last_flush + self.flush_every;
            tokio::select! {
                batch = input.recv() => {
                    let Some(batch) = batch else { break };
                    self.write(batch, 0).await?;
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
        Ok(self.blocking(|r| r.close()).await??)
    }
}

#[async_trait]
impl Component for ProtoRecord {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let Some(mut input) = io.input.take() else {
            return Ok(());
        };
        let result = self.record(&mut input).await;
        io.input = Some(input);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pbgz::{open_path, Next};
    use pitwall_api::testing::{build_context, parse_config, wire};
    use pitwall_api::{CarTelemetry, WhenFull};
    use std::sync::Arc;

    fn car(i: u64) -> Event {
        Event::new(
            i as i64,
            Record::CarTelemetry(Arc::new(CarTelemetry {
                game: "assetto_corsa".into(),
                session: "rig".into(),
                is_player: true,
                monotonic_ns: i * 3_000_000,
                speed_kmh: i as f32,
                ..Default::default()
            })),
        )
    }

    fn count_frames(path: &Path) -> (usize, bool) {
        let mut reader = open_path(path).unwrap();
        let mut n = 0;
        loop {
            match reader.next_frame() {
                Next::Frame(_) => n += 1,
                Next::End(end) => return (n, end.is_clean()),
            }
        }
    }

    fn settings(template: String) -> Settings {
        Settings {
            template,
            gzip_level: 6,
            roll_bytes: None,
            roll_every: None,
        }
    }

    #[test]
    fn rolls_by_size_into_complete_files_that_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("r-0.pb.gz"), b"earlier").unwrap();
        let mut s = settings(dir.path().join("r-{n}.pb.gz").to_string_lossy().into());
        s.roll_bytes = Some(4000);
        s.gzip_level = 0;
        let mut recorder = Recorder::new(s);
        let events: Vec<Event> = (0..3000).map(car).collect();
        for chunk in events.chunks(100) {
            recorder.write(chunk).unwrap();
        }
        recorder.close().unwrap();
        let paths = recorder.paths().to_vec();
        assert!(paths.len() >= 3, "{paths:?}");
        assert!(paths[0].ends_with("r-1.pb.gz"), "r-0 exists: {paths:?}");
        assert_eq!(
            std::fs::read(dir.path().join("r-0.pb.gz")).unwrap(),
            b"earlier"
        );
        let mut total = 0;
        for path in &paths {
            let (n, clean) = count_frames(path);
            assert!(clean, "{} is complete", path.display());
            total += n;
        }
        assert_eq!(total, 3000);
        // A roll is due once the file holds `roll_bytes` bytes: no file much larger.
        for path in &paths[..paths.len() - 1] {
            let size = std::fs::metadata(path).unwrap().len();
            assert!((4000..4000 + 70_000).contains(&size), "{size}");
        }
    }

    #[tokio::test]
    async fn flushes_while_running_so_a_live_file_reads_back_and_closes_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let config: ProtoRecordConfig = parse_config("path = \"out/\"\nflush_interval_ms = 50");
        let mut sink = config.build(&build_context("rec", dir.path())).unwrap();
        let mut wiring = wire("rec", true);
        let input = wiring.input.take().unwrap();
        let task = tokio::spawn(async move { sink.run(&mut wiring.io).await.unwrap() });
        input
            .push(Arc::new((0..500).map(car).collect()), WhenFull::Block)
            .await;
        // Still open: no gzip trailer yet, but every flushed frame reads back within a
        // flush interval or so (polled: a loaded machine may take longer).
        let mut files = Vec::new();
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            files = std::fs::read_dir(dir.path().join("out"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            if files.len() == 1 && count_frames(&files[0]).0 == 500 {
                break;
            }
        }
        assert_eq!(files.len(), 1);
        let name = files[0].file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with("telemetry-") && name.ends_with("-0.pb.gz"),
            "{name}"
        );
        assert_eq!(count_frames(&files[0]), (500, false));
        input
            .push(Arc::new((500..700).map(car).collect()), WhenFull::Block)
            .await;
        input.close();
        task.await.unwrap();
        assert_eq!(count_frames(&files[0]), (700, true));
    }

    #[test]
    fn options_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = build_context("rec", dir.path());
        let config: ProtoRecordConfig = parse_config("path = \"x-{day}.pb.gz\"\ngzip_level = 10");
        let keys: Vec<String> = config.check().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["path", "gzip_level"]);
        let config: ProtoRecordConfig = parse_config("path = \"x.pb.gz\"\nroll_bytes = 1000");
        let error = config.build(&ctx).err().unwrap().to_string();
        assert!(error.contains("{n}"), "{error}");
        std::fs::write(dir.path().join("x.pb.gz"), b"").unwrap();
        let config: ProtoRecordConfig = parse_config("path = \"x.pb.gz\"");
        let error = config.build(&ctx).err().unwrap().to_string();
        assert!(error.contains("never overwrites"), "{error}");
        let config: ProtoRecordConfig = parse_config("path = \".\"\nroll_interval_s = 60");
        assert!(config.check().is_empty());
        assert!(config.template(&ctx).ends_with(DIRECTORY_FILE_NAME));
        assert!(config.build(&ctx).is_ok());
    }
}
