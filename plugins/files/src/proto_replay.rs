//! Source `proto_replay`: replay `.pb.gz` recordings (FORMATS.md 5b) as `car_telemetry`.
//!
//! Reads what the Assetto Corsa bridge and sink `proto_record` write: one gzip stream of
//! length-delimited `telemetry.v1.TelemetryFrame`s, each turned into the common record with
//! [`from_frame`](pitwall_api::telemetry::from_frame). `path` is one recording or a list,
//! replayed one after the other.
//!
//! - Event time is the recording's own clock: `time_ns` = the frame's `monotonic_ns` (the
//!   rig's monotonic clock, not the Unix epoch). Frames are paced by it with the shared
//!   [`Pacer`]: `speed = 1.0` real time, `10` ten times faster, `0` as fast as possible
//!   (conversions). Each file starts its own pacing, since each has its own clock.
//! - A recording cut off by a crash ends its read cleanly: every complete record is
//!   emitted, then a warning says what was wrong at the end (a record cut in the middle, a
//!   gzip stream that stops early or is damaged, an absurd length) and one error is counted.
//!   A record whose bytes are not a valid frame is counted as an error, logged (the first
//!   few, then every 1000th) and skipped; the length framing keeps the stream in step.
//! - When every file has been replayed the source returns, which is how the engine knows a
//!   replay is over (`[runtime] exit_when_done = true` then drains and exits: conversions).
//!   On shutdown it stops promptly, also while waiting for the next frame's time.
//! - Decompression runs on a thread of its own and decoding on tokio's blocking pool, each a
//!   few chunks ahead of the next step (so a conversion keeps two cores busy); at
//!   `speed = 0` batches are 2048 records. With `speed = 0` and stderr a
//!   terminal, a progress bar shows the compressed bytes read.
//! - The files must exist when the pipeline starts. After an error (a file that vanished)
//!   the engine runs the source again, and it goes on after the last record it emitted.
//!
//! ```toml
//! [sources.recording]
//! type = "proto_replay"
//! path = "recordings/telemetry_record.pb.gz"   # or a list: ["a.pb.gz", "b.pb.gz"]
//! speed = 1.0                                  # 0 = as fast as possible
//! ```

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use indicatif::{ProgressBar, ProgressStyle};
use pitwall_api::component::OptionProblem;
use pitwall_api::pacing::Pacer;
use pitwall_api::telemetry::FrameStrings;
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentMetrics, ComponentSpec,
    Event, Io, Kinds, Record, RecordKind, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::pbgz::{self, End, Next};
use crate::should_log;

/// One recording or several.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Paths {
    One(String),
    Many(Vec<String>),
}

impl Paths {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Paths::One(path) => std::slice::from_ref(path),
            Paths::Many(paths) => paths,
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProtoReplayConfig {
    /// A `.pb.gz` recording, or a list of them replayed in order; relative to the pipeline file.
    pub path: Paths,
    /// Replay speed by the frames' `monotonic_ns`: 1.0 real time, 10 ten times faster, 0 as
    /// fast as possible.
    #[serde(default = "default_speed")]
    pub speed: f64,
}

fn default_speed() -> f64 {
    1.0
}

impl ComponentConfig for ProtoReplayConfig {
    fn emits(&self) -> Kinds {
        Kinds::of(&[RecordKind::CarTelemetry])
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        let paths = self.path.as_slice();
        if paths.is_empty() {
            problems.push(OptionProblem::new(
                "path",
                "must name at least one recording",
            ));
        }
        for (i, path) in paths.iter().enumerate() {
            if path.trim().is_empty() {
                let key = match self.path {
                    Paths::One(_) => "path".to_string(),
                    Paths::Many(_) => format!("path[{i}]"),
                };
                problems.push(OptionProblem::new(key, "must name a file"));
            }
        }
        if !self.speed.is_finite() || self.speed < 0.0 {
            problems.push(OptionProblem::new(
                "speed",
                format!(
                    "must be 0 (as fast as possible) or a positive factor, not {}",
                    self.speed
                ),
            ));
        }
        problems
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        if let Some(problem) = self.check().first() {
            return Err(format!("{}: {}", problem.key, problem.message).into());
        }
        let mut paths = Vec::new();
        for path in self.path.as_slice() {
            let path = ctx.resolve_path(Path::new(path));
            let metadata = std::fs::metadata(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if !metadata.is_file() {
                return Err(format!("{} is not a file", path.display()).into());
            }
            paths.push(path);
        }
        Ok(Box::new(ProtoReplay {
            paths,
            speed: self.speed,
            file: 0,
            emitted_in_file: 0,
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<ProtoReplayConfig>(
        "proto_replay",
        Role::Source,
        "Replays .pb.gz car-telemetry recordings (AC bridge format), paced by their monotonic clock",
    )
}

/// Records per batch at most.
const BATCH: usize = 2048;
/// Batches decoded ahead of the pacing.
const AHEAD: usize = 4;

/// What the reading thread sends.
enum FromReader {
    Batch(Vec<Event>),
    /// The end of the file: how it ended and how many records were emitted.
    End(End, u64),
}

/// A reader that reports the bytes it reads to a progress bar.
struct Progress<R> {
    inner: R,
    bar: Option<ProgressBar>,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
        Ok(n)
    }
}

/// The event of one frame: `time_ns` is the recording's clock.
pub fn event_of(car: pitwall_api::CarTelemetry) -> Event {
    Event::new(
        i64::try_from(car.monotonic_ns).unwrap_or(i64::MAX),
        Record::CarTelemetry(Arc::new(car)),
    )
}

/// Read and decode `path` on this (blocking) thread, skipping the first `skip` records,
/// sending batches of `batch_size` until the end or until the receiver is gone.
fn read_file(
    path: &Path,
    skip: u64,
    batch_size: usize,
    bar: Option<ProgressBar>,
    metrics: Arc<ComponentMetrics>,
    sender: mpsc::Sender<FromReader>,
) -> Result<(), ComponentError> {
    let mut file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    pbgz::check_gzip(&mut file).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut frames = pbgz::open_threaded(Progress { inner: file, bar })?;
    let mut strings = FrameStrings::default();
    let mut batch = Vec::with_capacity(batch_size);
    let mut decoded = 0u64;
    let mut malformed = 0u64;
    let end = loop {
        let bytes = match frames.next_frame() {
            Next::Frame(bytes) => bytes,
            Next::End(end) => break end,
        };
        let car = match pbgz::decode_car(bytes, &mut strings) {
            Ok(car) => car,
            Err(error) => {
                metrics.add_error();
                malformed += 1;
                if should_log(malformed) {
                    tracing::warn!(
                        path = %path.display(),
                        count = malformed,
                        "proto_replay: skipping a record that is not a TelemetryFrame: {error}"
                    );
                }
                continue;
            }
        };
        decoded += 1;
        if decoded <= skip {
            continue;
        }
        batch.push(event_of(car));
        if batch.len() >= batch_size {
            // Each batch gets its own shared strings: their reference counts are then
            // counted up here and down by whoever drops the batch, without both threads
            // contending for the same cache lines frame after frame.
            strings = FrameStrings::default();
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
            if sender.blocking_send(FromReader::Batch(full)).is_err() {
                return Ok(());
            }
        }
    };
    if !batch.is_empty() && sender.blocking_send(FromReader::Batch(batch)).is_err() {
        return Ok(());
    }
    let _ = sender.blocking_send(FromReader::End(end, decoded));
    Ok(())
}

struct ProtoReplay {
    paths: Vec<PathBuf>,
    speed: f64,
    /// The file being replayed (index into `paths`) and how many of its records were
    /// emitted: a run after an error goes on from there.
    file: usize,
    emitted_in_file: u64,
}

enum Flow {
    Continue,
    Stop,
}

impl ProtoReplay {
    /// Send a batch unless shutdown comes first.
    async fn send(&mut self, io: &Io, batch: Vec<Event>) -> Flow {
        if batch.is_empty() {
            return Flow::Continue;
        }
        let n = batch.len() as u64;
        tokio::select! {
            _ = io.output.send(batch) => {
                self.emitted_in_file += n;
                Flow::Continue
            }
            _ = io.shutdown.triggered() => Flow::Stop,
        }
    }

    /// Emit one batch read from the file, paced.
    async fn emit(&mut self, io: &Io, pacer: &mut Pacer, events: Vec<Event>) -> Flow {
        if pacer.speed() == 0.0 {
            return self.send(io, events).await;
        }
        let mut due = Vec::with_capacity(events.len());
        for event in events {
            if let Some(delay) = pacer.delay_until(event.time_ns) {
                if let Flow::Stop = self.send(io, std::mem::take(&mut due)).await {
                    return Flow::Stop;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = io.shutdown.triggered() => return Flow::Stop,
                }
            }
            due.push(event);
        }
        self.send(io, due).await
    }

    /// Replay the current file from where it stopped. `Ok(false)` on shutdown.
    async fn replay_file(
        &mut self,
        io: &Io,
        bar: Option<ProgressBar>,
    ) -> Result<bool, ComponentError> {
        let path = self.paths[self.file].clone();
        let batch_size = if self.speed == 0.0 { BATCH } else { 256 };
        let (sender, mut receiver) = mpsc::channel(AHEAD);
        let reader = {
            let path = path.clone();
            let skip = self.emitted_in_file;
            let metrics = io.metrics.clone();
            tokio::task::spawn_blocking(move || {
                read_file(&path, skip, batch_size, bar, metrics, sender)
            })
        };
        let mut pacer = Pacer::new(self.speed);
        let mut finished = None;
        loop {
            let message = tokio::select! {
                message = receiver.recv() => message,
                _ = io.shutdown.triggered() => return Ok(false),
            };
            match message {
                Some(FromReader::Batch(events)) => {
                    if let Flow::Stop = self.emit(io, &mut pacer, events).await {
                        return Ok(false);
                    }
                }
                Some(FromReader::End(end, records)) => finished = Some((end, records)),
                None => break,
            }
        }
        // The reader has finished (the channel closed): an open error is returned here.
        reader.await??;
        let Some((end, records)) = finished else {
            return Err(format!("reading {} stopped early", path.display()).into());
        };
        if end.is_clean() {
            tracing::info!(path = %path.display(), records, "proto_replay: replayed");
        } else {
            io.metrics.add_error();
            tracing::warn!(
                path = %path.display(),
                records,
                "proto_replay: replayed every complete record, then: {end}"
            );
        }
        Ok(true)
    }
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message("proto_replay");
    bar
}

#[async_trait]
impl Component for ProtoReplay {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let bar = (self.speed == 0.0 && std::io::stderr().is_terminal()).then(|| {
            let total = self.paths[self.file.min(self.paths.len())..]
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum();
            progress_bar(total)
        });
        while self.file < self.paths.len() {
            if !self.replay_file(io, bar.clone()).await? {
                return Ok(());
            }
            self.file += 1;
            self.emitted_in_file = 0;
        }
        if let Some(bar) = bar {
            bar.finish();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::testing::{build_context, drain, parse_config, wire};
    use std::time::{Duration, Instant};

    fn write_recording(path: &Path, frames: std::ops::Range<u64>, step_ns: u64) {
        let mut writer = pbgz::FrameWriter::new(File::create(path).unwrap(), 6);
        for i in frames {
            writer
                .write_car(&pitwall_api::CarTelemetry {
                    game: "assetto_corsa".into(),
                    session: "s".into(),
                    is_player: true,
                    monotonic_ns: i * step_ns,
                    rpm: i as f32,
                    ..Default::default()
                })
                .unwrap();
        }
        writer.finish().unwrap();
    }

    async fn replay(dir: &Path, options: &str) -> (Vec<Event>, u64) {
        let config: ProtoReplayConfig = parse_config(options);
        assert!(config.check().is_empty());
        let mut source = config.build(&build_context("replay", dir)).unwrap();
        let mut wiring = wire("replay", false);
        source.run(&mut wiring.io).await.unwrap();
        (drain(&wiring.output), wiring.io.metrics.snapshot().errors)
    }

    #[tokio::test]
    async fn replays_a_list_of_files_in_order_as_fast_as_possible() {
        let dir = tempfile::tempdir().unwrap();
        write_recording(&dir.path().join("a.pb.gz"), 0..5000, 3_000_000);
        write_recording(&dir.path().join("b.pb.gz"), 5000..5100, 3_000_000);
        let (events, errors) =
            replay(dir.path(), "path = [\"a.pb.gz\", \"b.pb.gz\"]\nspeed = 0").await;
        assert_eq!(errors, 0);
        assert_eq!(events.len(), 5100);
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event.time_ns, i as i64 * 3_000_000);
            let Record::CarTelemetry(car) = &event.record else {
                panic!("car telemetry")
            };
            assert_eq!(car.rpm, i as f32);
        }
    }

    #[tokio::test]
    async fn paces_by_the_monotonic_clock() {
        let dir = tempfile::tempdir().unwrap();
        // 21 frames 10 ms apart: 200 ms of recording, 100 ms at speed 2.
        write_recording(&dir.path().join("p.pb.gz"), 0..21, 10_000_000);
        let started = Instant::now();
        let (events, _) = replay(dir.path(), "path = \"p.pb.gz\"\nspeed = 2.0").await;
        let elapsed = started.elapsed();
        assert_eq!(events.len(), 21);
        assert!(
            elapsed >= Duration::from_millis(95) && elapsed < Duration::from_millis(1000),
            "{elapsed:?}"
        );
    }

    #[tokio::test]
    async fn stops_promptly_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        write_recording(&dir.path().join("s.pb.gz"), 0..1000, 1_000_000_000);
        let config: ProtoReplayConfig = parse_config("path = \"s.pb.gz\"");
        let mut source = config.build(&build_context("r", dir.path())).unwrap();
        let mut wiring = wire("r", false);
        let shutdown = wiring.io.shutdown.clone();
        let task = tokio::spawn(async move {
            source.run(&mut wiring.io).await.unwrap();
            wiring
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stopped = Instant::now();
        shutdown.trigger();
        let wiring = task.await.unwrap();
        assert!(stopped.elapsed() < Duration::from_millis(500));
        assert_eq!(
            drain(&wiring.output).len(),
            1,
            "only the first frame was due"
        );
    }

    #[test]
    fn options_are_checked_and_files_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let config: ProtoReplayConfig = parse_config("path = [\"a\", \"\"]\nspeed = -1.0");
        let keys: Vec<String> = config.check().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["path[1]", "speed"]);
        let config: ProtoReplayConfig = parse_config("path = \"missing.pb.gz\"");
        let error = config
            .build(&build_context("r", dir.path()))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("missing.pb.gz"), "{error}");
        assert_eq!(config.emits(), Kinds::of(&[RecordKind::CarTelemetry]));
    }
}
