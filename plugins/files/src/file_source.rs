//! Source `file`: replay an NDJSON recording of events.
//!
//! Reads what the `file` sink writes (one [`Event`] per line in its serde form) and emits the
//! events paced by their event time with the shared [`Pacer`]: `speed = 1.0` real time,
//! `10` ten times faster, `0` as fast as possible. `start_offset_ms` skips the events before
//! the first event's time plus the offset; `loop` starts over at the end (event times then
//! jump back, which time-driven transforms must expect).
//!
//! Events are emitted in batches: everything due at the same moment, up to 1024 events.
//! Lines that are not events (malformed JSON, unknown kinds, missing fields, lines longer than
//! 16 MiB) are counted as errors, logged with their line number (the first few, then every
//! 1000th) and skipped; empty lines are ignored. `kinds` keeps only some kinds, and is then
//! what the source declares it emits.
//!
//! The source stops promptly when the engine shuts down (also while waiting for the next
//! event's time) and returns at the end of the file unless it loops. The file must exist when
//! the pipeline starts.
//!
//! ```toml
//! [sources.replay]
//! type = "file"
//! path = "recordings/monaco.ndjson"
//! speed = 1.0            # 0 = as fast as possible
//! start_offset_ms = 0
//! loop = false
//! # kinds = ["position", "race_position", "race_metadata", "session_end"]
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::pacing::Pacer;
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io, Kinds, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

use crate::{parse_kind_names, should_log};

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// NDJSON file of events (as the `file` sink writes them), relative to the pipeline file.
    pub path: String,
    /// Replay speed: 1.0 real time, 10 ten times faster, 0 as fast as possible.
    #[serde(default = "default_speed")]
    pub speed: f64,
    /// Skip events earlier than the first event's time plus this many ms.
    #[serde(default)]
    pub start_offset_ms: u64,
    /// Start over at the end of the file.
    #[serde(default, rename = "loop")]
    pub loop_: bool,
    /// Emit only these record kinds (kind names).
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
}

fn default_speed() -> f64 {
    1.0
}

impl FileSourceConfig {
    fn kind_set(&self) -> Option<Kinds> {
        self.kinds
            .as_ref()
            .map(|names| Kinds::of(&parse_kind_names("kinds", names).unwrap_or_default()))
    }
}

impl ComponentConfig for FileSourceConfig {
    fn emits(&self) -> Kinds {
        self.kind_set().unwrap_or_else(Kinds::any)
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if self.path.trim().is_empty() {
            problems.push(OptionProblem::new("path", "must name a file"));
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
        if let Some(names) = &self.kinds {
            if let Err(problem) = parse_kind_names("kinds", names) {
                problems.push(problem);
            }
        }
        problems
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        let path = ctx.resolve_path(Path::new(&self.path));
        let metadata =
            std::fs::metadata(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if !metadata.is_file() {
            return Err(format!("{} is not a file", path.display()).into());
        }
        Ok(Box::new(FileSource {
            path,
            speed: self.speed,
            start_offset_ns: i64::try_from(self.start_offset_ms)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000),
            looping: self.loop_,
            kinds: self.kind_set(),
            malformed: 0,
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<FileSourceConfig>(
        "file",
        Role::Source,
        "Replays an NDJSON file of events, paced by event time",
    )
}

/// Events per batch at most.
const BATCH: usize = 1024;
/// Longest line accepted.
const MAX_LINE: usize = 16 * 1024 * 1024;

struct FileSource {
    path: PathBuf,
    speed: f64,
    start_offset_ns: i64,
    looping: bool,
    kinds: Option<Kinds>,
    malformed: u64,
}

/// What one line read produced.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// A line (without its end) is in the buffer.
    Text,
    /// The line was longer than the limit; it was skipped.
    TooLong,
    /// End of file.
    End,
}

/// Read one line into `buf` (cleared first) without ever holding more than `max` bytes of it.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut any = false;
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => Line::End,
                (true, true) => Line::TooLong,
                (true, false) => Line::Text,
            });
        }
        any = true;
        let (used, done) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (end + 1, true),
            None => (available.len(), false),
        };
        let content = &available[..if done { used - 1 } else { used }];
        if !too_long {
            if buf.len() + content.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(content);
            }
        }
        reader.consume(used);
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Text });
        }
    }
}

enum Flow {
    Continue,
    Stop,
}

impl FileSource {
    fn malformed(&mut self, io: &Io, line_no: u64, why: &dyn std::fmt::Display) {
        io.metrics.add_error();
        self.malformed += 1;
        if should_log(self.malformed) {
            tracing::warn!(
                path = %self.path.display(),
                line = line_no,
                count = self.malformed,
                "file: skipping a line that is not an event: {why}"
            );
        }
    }

    /// Send a batch unless shutdown comes first.
    async fn send(io: &Io, batch: &mut Vec<Event>) -> Flow {
        if batch.is_empty() {
            return Flow::Continue;
        }
        let events = std::mem::replace(batch, Vec::with_capacity(BATCH));
        tokio::select! {
            _ = io.output.send(events) => Flow::Continue,
            _ = io.shutdown.triggered() => Flow::Stop,
        }
    }

    /// One pass over the file. Returns how many events it emitted, or `None` on shutdown.
    async fn pass(&mut self, io: &Io, pacer: &mut Pacer) -> Result<Option<u64>, ComponentError> {
        let file = tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let mut buf = Vec::with_capacity(1024);
        let mut batch = Vec::with_capacity(BATCH);
        let mut line_no = 0u64;
        let mut first_time: Option<i64> = None;
        let mut emitted = 0u64;
        loop {
            if line_no % 1024 == 0 && io.shutdown.is_triggered() {
                return Ok(None);
            }
            let line = read_line(&mut reader, &mut buf, MAX_LINE).await?;
            line_no += 1;
            match line {
                Line::End => break,
                Line::TooLong => {
                    self.malformed(io, line_no, &format_args!("longer than {MAX_LINE} bytes"));
                    continue;
                }
                Line::Text => {}
            }
            let text = buf.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let event: Event = match serde_json::from_slice(text) {
                Ok(event) => event,
                Err(error) => {
                    self.malformed(io, line_no, &error);
                    continue;
                }
            };
            if self.kinds.is_some_and(|k| !k.contains(event.kind())) {
                continue;
            }
            let first = *first_time.get_or_insert(event.time_ns);
            if event.time_ns < first.saturating_add(self.start_offset_ns) {
                continue;
            }
            if let Some(delay) = pacer.delay_until(event.time_ns) {
                if let Flow::Stop = Self::send(io, &mut batch).await {
                    return Ok(None);
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = io.shutdown.triggered() => return Ok(None),
                }
            }
            batch.push(event);
            emitted += 1;
            if batch.len() >= BATCH {
                if let Flow::Stop = Self::send(io, &mut batch).await {
                    return Ok(None);
                }
            }
        }
        if let Flow::Stop = Self::send(io, &mut batch).await {
            return Ok(None);
        }
        Ok(Some(emitted))
    }
}

#[async_trait]
impl Component for FileSource {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let mut pacer = Pacer::new(self.speed);
        loop {
            pacer.restart();
            let Some(emitted) = self.pass(io, &mut pacer).await? else {
                return Ok(());
            };
            if !self.looping {
                tracing::info!(path = %self.path.display(), events = emitted, "file: replay finished");
                return Ok(());
            }
            if emitted == 0 {
                // Nothing to replay: do not spin.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = io.shutdown.triggered() => return Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file_sink::FileSinkConfig;
    use pitwall_api::record::{
        CarPosition, Driver, Frame, FrameCar, Lap, RacePosition, SessionEnd, Weather,
    };
    use pitwall_api::testing::{build_context, drain, parse_config, run_config, wire};
    use pitwall_api::Record;
    use std::sync::Arc;
    use std::time::Instant;

    const MS: i64 = 1_000_000;

    fn sample_events() -> Vec<Event> {
        let key: Arc<str> = "9158".into();
        let mut events = vec![Event::new(
            0,
            Record::Driver(Arc::new(Driver {
                session_key: key.clone(),
                driver_number: 44,
                name_acronym: Some("HAM".into()),
                team_colour: Some("27F4D2".into()),
                ..Default::default()
            })),
        )];
        for i in 0..300i64 {
            events.push(Event::new(
                i * 270 * MS,
                Record::Position(CarPosition {
                    session_key: key.clone(),
                    car: 44,
                    x: (i * 13 % 997) as f64 - 500.0,
                    y: 0.1 * i as f64,
                    z: (i as f64).sqrt() / 3.0,
                    spline: None,
                }),
            ));
        }
        events.push(Event::new(
            5 * MS,
            Record::RacePosition(RacePosition {
                session_key: key.clone(),
                car: 44,
                position: 3,
            }),
        ));
        events.push(Event::new(
            6 * MS,
            Record::Lap(Arc::new(Lap {
                session_key: key.clone(),
                driver_number: 44,
                lap_number: 2,
                lap_duration: Some(78.123),
                ..Default::default()
            })),
        ));
        events.push(Event::new(
            7 * MS,
            Record::Weather(Arc::new(Weather {
                session_key: key.clone(),
                air_temperature: Some(21.4),
                ..Default::default()
            })),
        ));
        events.push(Event::new(
            8 * MS,
            Record::Frame(Arc::new(Frame {
                session_key: key.clone(),
                t_ms: 100,
                cars: vec![FrameCar {
                    car: 44,
                    x: 12.25,
                    y: -3.5,
                    position: 1,
                }],
            })),
        ));
        events.push(Event::new(9 * MS, Record::Tick));
        events.push(Event::new(
            10 * MS,
            Record::Json(Arc::new(serde_json::json!({"anything": [1, "two"]}))),
        ));
        events.push(Event::new(
            81 * 1000 * MS,
            Record::SessionEnd(SessionEnd { session_key: key }),
        ));
        events
    }

    async fn replay(dir: &Path, options: &str) -> (Vec<Event>, u64) {
        let config: FileSourceConfig = parse_config(options);
        let mut source = config.build(&build_context("replay", dir)).unwrap();
        let mut wiring = wire("replay", false);
        source.run(&mut wiring.io).await.unwrap();
        (drain(&wiring.output), wiring.io.metrics.snapshot().errors)
    }

    #[tokio::test]
    async fn sink_to_source_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let events = sample_events();
        let sink_options = format!(
            "path = {:?}",
            dir.path().join("rec.ndjson").to_string_lossy()
        );
        let out = run_config::<FileSinkConfig>(&sink_options, events.clone()).await;
        assert!(out.is_empty());
        let (back, errors) = replay(dir.path(), "path = \"rec.ndjson\"\nspeed = 0").await;
        assert_eq!(errors, 0);
        assert_eq!(back.len(), events.len());
        for (got, want) in back.iter().zip(&events) {
            assert_eq!(got, want);
        }
    }

    #[tokio::test]
    async fn malformed_lines_are_counted_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!(
            "{{\"time_ns\":1,\"kind\":\"tick\",\"x\":\"{}\"}}",
            "y".repeat(100)
        );
        let text = [
            "{\"time_ns\":1,\"kind\":\"tick\"}",
            "not json",
            "",
            "{\"time_ns\":2,\"kind\":\"no_such_kind\"}",
            "{\"time_ns\":3,\"kind\":\"position\",\"car\":1}",
            "   ",
            "{\"time_ns\":4,\"kind\":\"tick\"}",
            "{\"time_ns\":5,\"kind\":\"ti",
        ]
        .join("\n");
        std::fs::write(dir.path().join("bad.ndjson"), text).unwrap();
        let (back, errors) = replay(dir.path(), "path = \"bad.ndjson\"\nspeed = 0").await;
        assert_eq!(
            back,
            vec![Event::new(1, Record::Tick), Event::new(4, Record::Tick)]
        );
        assert_eq!(errors, 4);

        // Lines beyond the limit are skipped without being held whole.
        let content = format!("{long}\nshort\n");
        let mut reader = BufReader::with_capacity(16, content.as_bytes());
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut reader, &mut buf, 50).await.unwrap(),
            Line::TooLong
        );
        assert_eq!(
            read_line(&mut reader, &mut buf, 50).await.unwrap(),
            Line::Text
        );
        assert_eq!(buf, b"short");
        assert_eq!(
            read_line(&mut reader, &mut buf, 50).await.unwrap(),
            Line::End
        );
    }

    #[tokio::test]
    async fn offset_kinds_and_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..3000 {
            text.push_str(&format!("{{\"time_ns\":{},\"kind\":\"tick\"}}\n", i * MS));
        }
        std::fs::write(dir.path().join("t.ndjson"), &text).unwrap();
        let config: FileSourceConfig =
            parse_config("path = \"t.ndjson\"\nspeed = 0\nstart_offset_ms = 1000");
        let mut source = config.build(&build_context("r", dir.path())).unwrap();
        let mut wiring = wire("r", false);
        source.run(&mut wiring.io).await.unwrap();
        wiring.output.close();
        let mut sizes = Vec::new();
        while let Some(batch) = wiring.output.pop().await {
            sizes.push(batch.len());
        }
        assert_eq!(sizes, vec![1024, 976], "batches of at most 1024");

        let (back, _) = replay(
            dir.path(),
            "path = \"t.ndjson\"\nspeed = 0\nkinds = [\"lap\"]",
        )
        .await;
        assert!(back.is_empty());
        let config: FileSourceConfig = parse_config("path = \"t.ndjson\"\nkinds = [\"tick\"]");
        assert_eq!(config.emits(), Kinds::of(&[pitwall_api::RecordKind::Tick]));
    }

    #[tokio::test]
    async fn paces_by_event_time_and_batches_what_is_due_together() {
        let dir = tempfile::tempdir().unwrap();
        // Three instants 100 ms apart, three events each; at speed 2: 0, 50, 100 ms.
        let mut text = String::new();
        for t in 0..3 {
            for _ in 0..3 {
                text.push_str(&format!(
                    "{{\"time_ns\":{},\"kind\":\"tick\"}}\n",
                    t * 100 * MS
                ));
            }
        }
        std::fs::write(dir.path().join("p.ndjson"), &text).unwrap();
        let config: FileSourceConfig = parse_config("path = \"p.ndjson\"\nspeed = 2.0");
        let mut source = config.build(&build_context("r", dir.path())).unwrap();
        let mut wiring = wire("r", false);
        let started = Instant::now();
        source.run(&mut wiring.io).await.unwrap();
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(95) && elapsed < Duration::from_millis(400),
            "{elapsed:?}"
        );
        wiring.output.close();
        let mut sizes = Vec::new();
        while let Some(batch) = wiring.output.pop().await {
            sizes.push(batch.len());
        }
        assert_eq!(sizes, vec![3, 3, 3]);
    }

    #[tokio::test]
    async fn loops_until_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("l.ndjson"),
            "{\"time_ns\":0,\"kind\":\"tick\"}\n{\"time_ns\":10000000,\"kind\":\"tick\"}\n",
        )
        .unwrap();
        let config: FileSourceConfig = parse_config("path = \"l.ndjson\"\nloop = true");
        let mut source = config.build(&build_context("r", dir.path())).unwrap();
        let mut wiring = wire("r", false);
        let shutdown = wiring.io.shutdown.clone();
        let output = wiring.output.clone();
        let task = tokio::spawn(async move {
            source.run(&mut wiring.io).await.unwrap();
        });
        tokio::time::sleep(Duration::from_millis(120)).await;
        let stopped = Instant::now();
        shutdown.trigger();
        task.await.unwrap();
        assert!(stopped.elapsed() < Duration::from_millis(100));
        let events = drain(&output);
        assert!(events.len() >= 6, "looped: {} events", events.len());
    }

    #[test]
    fn missing_file_fails_the_build_and_options_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let config: FileSourceConfig = parse_config("path = \"nope.ndjson\"");
        let error = config
            .build(&build_context("r", dir.path()))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("nope.ndjson"), "{error}");
        let config: FileSourceConfig = parse_config("path = \"x\"\nspeed = -1.0\nkinds = [\"x\"]");
        let keys: Vec<String> = config.check().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["speed", "kinds[0]"]);
    }
}
