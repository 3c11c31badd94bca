//! Source `rfactor2`: live telemetry of rFactor 2 and Le Mans Ultimate from the rF2 Shared
//! Memory Map Plugin's buffers (FORMATS.md section 6), as `car_telemetry` records.
//!
//! Every `poll_interval_ms` it takes a consistent copy of `$rFactor2SMMP_Scoring$` and of
//! `$rFactor2SMMP_Telemetry$` (the version-block protocol of [`crate::snapshot`]: torn copies
//! are retried about every millisecond, a few times, and never used). When the telemetry's
//! version changed, its vehicles are joined to the newest scoring by `mID` ([`crate::join`])
//! and emitted as one batch: the player's car only (`cars = "player"`) or every car
//! (`cars = "all"`). An unchanged version emits nothing, so the output rate is the game's
//! telemetry rate (up to about 90 Hz) however fast it polls.
//!
//! Where the buffers are:
//!
//! - Linux (Proton/Wine): a bridge exposes the mappings as files named like the mappings,
//!   by default in `/dev/shm` (`dir`). A dedicated server appends its process id to the
//!   names (`server_pid`).
//! - Windows: without `dir`, the plugin's named mappings are opened directly (read-only);
//!   with `dir`, files are read as on Linux.
//!
//! Event time is the wall clock when the copy was taken; `monotonic_ns` counts from the
//! source's start. A missing buffer (the game is not running yet) is waited for, logged
//! once, and not an error. A buffer too short for its version block, or one whose copy does
//! not parse (impossible vehicle count, too short for the vehicles it announces) is counted
//! as an error, logged (rate-limited) and skipped; the next version is read normally. When
//! nothing new has arrived for a quarter of a second the buffers are reopened, so a game or
//! bridge that restarted (new files or mappings under the same names) is picked up.
//!
//! Reads are copies out of memory (tmpfs files or a mapping) of at most 241,680 bytes, a few
//! tens of microseconds, so they are done on the runtime's thread rather than a blocking one.
//!
//! ```toml
//! [sources.rf2]
//! type = "rfactor2"
//! # dir = "/dev/shm"               # default; on Windows leave it out to read the mappings
//! # server_pid = 4242              # dedicated server: the process id appended to the names
//! cars = "player"                  # or "all": every car on track
//! poll_interval_ms = 10
//! game = "rfactor2"                # "le_mans_ultimate" for LMU
//! # session = "rig-1"              # stream tag (default: the game, plus "-<server_pid>")
//! ```

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentMetrics, ComponentSpec,
    Event, Io, Kinds, Record, RecordKind, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::time::{Instant, MissedTickBehavior};

use crate::join::{join, Cars, Names, Stream};
use crate::layout::{scoring, telemetry, SCORING_BUFFER, TELEMETRY_BUFFER};
use crate::parse::{parse_scoring, parse_telemetry};
use crate::snapshot::{Attempt, FileBuffer, SharedBuffer, VersionedCopy};

/// Attempts at a consistent copy per poll before waiting for the next poll.
const TRIES: usize = 10;
/// Pause between attempts while the writer is busy.
const RETRY_PAUSE: Duration = Duration::from_millis(1);
/// With nothing new for this long, reopen the buffers (the game or bridge may have
/// recreated them; an open handle would keep reading the old ones). Opening is cheap.
const REOPEN_AFTER: Duration = Duration::from_millis(250);
/// Where a bridge puts the buffers on Linux.
pub const DEFAULT_DIR: &str = "/dev/shm";

/// Options of the `rfactor2` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rfactor2Config {
    /// Directory where a bridge exposes the plugin's buffers as files named like the
    /// mappings (`$rFactor2SMMP_Telemetry$`, ...). Default `/dev/shm`. On Windows, leave it
    /// out to open the plugin's named mappings directly.
    #[serde(default)]
    pub dir: Option<String>,
    /// A dedicated server's process id, which the plugin appends to the buffer names.
    #[serde(default)]
    pub server_pid: Option<u32>,
    /// `player`: only the car of the person at this rig; `all`: every car on track.
    #[serde(default)]
    pub cars: Cars,
    /// How often the buffers are checked for a new version, in milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// The `game` of the records: `rfactor2`, or `le_mans_ultimate` for Le Mans Ultimate.
    #[serde(default = "default_game")]
    pub game: String,
    /// The `session` (stream tag) of the records. Default: the game, plus `-<server_pid>`.
    #[serde(default)]
    pub session: Option<String>,
}

fn default_poll_interval_ms() -> u64 {
    10
}

fn default_game() -> String {
    pitwall_api::telemetry::game::RFACTOR2.to_string()
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<Rfactor2Config>(
        "rfactor2",
        Role::Source,
        "rFactor 2 / Le Mans Ultimate telemetry from the rF2 Shared Memory Map Plugin (files a bridge exposes, or the Windows mappings)",
    )
}

impl Rfactor2Config {
    /// The buffer name with the dedicated server's process id, if any.
    pub fn buffer_name(&self, base: &str) -> String {
        match self.server_pid {
            Some(pid) => format!("{base}{pid}"),
            None => base.to_string(),
        }
    }

    fn session_tag(&self) -> String {
        match (&self.session, self.server_pid) {
            (Some(session), _) => session.clone(),
            (None, Some(pid)) => format!("{}-{pid}", self.game),
            (None, None) => self.game.clone(),
        }
    }

    fn buffer(&self, ctx: &BuildContext, base: &str) -> Box<dyn SharedBuffer> {
        let name = self.buffer_name(base);
        #[cfg(windows)]
        if self.dir.is_none() {
            return Box::new(pitwall_api::shared_memory::NamedMapping::new(&name));
        }
        let dir = PathBuf::from(self.dir.as_deref().unwrap_or(DEFAULT_DIR));
        Box::new(FileBuffer::new(ctx.resolve_path(&dir).join(name)))
    }
}

impl ComponentConfig for Rfactor2Config {
    fn emits(&self) -> Kinds {
        Kinds::of(&[RecordKind::CarTelemetry])
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if self.poll_interval_ms == 0 {
            problems.push(OptionProblem::new(
                "poll_interval_ms",
                "must be at least 1 (the game writes at most about 90 times a second)",
            ));
        }
        if self.game.trim().is_empty() {
            problems.push(OptionProblem::new(
                "game",
                "must not be empty; `rfactor2` or `le_mans_ultimate`",
            ));
        }
        if self.session.as_deref().is_some_and(|s| s.trim().is_empty()) {
            problems.push(OptionProblem::new(
                "session",
                "must not be empty; leave it out for the default",
            ));
        }
        if self.dir.as_deref().is_some_and(|d| d.trim().is_empty()) {
            problems.push(OptionProblem::new(
                "dir",
                "must not be empty; leave it out for the default",
            ));
        }
        problems
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        Ok(Box::new(Rfactor2Source {
            telemetry: Buffer::new(
                "telemetry",
                self.buffer(ctx, TELEMETRY_BUFFER),
                telemetry::SIZE,
            ),
            scoring: Buffer::new("scoring", self.buffer(ctx, SCORING_BUFFER), scoring::SIZE),
            scoring_valid: false,
            cars: self.cars,
            stream: Stream {
                game: Arc::from(self.game.as_str()),
                session: Arc::from(self.session_tag().as_str()),
            },
            names: Names::default(),
            poll: Duration::from_millis(self.poll_interval_ms.max(1)),
            started: Instant::now(),
            last_fresh: Instant::now(),
            malformed: 0,
        }))
    }
}

/// One of the plugin's buffers: where it is read from, its last consistent copy, and the
/// I/O problem last reported for it.
struct Buffer {
    what: &'static str,
    source: Box<dyn SharedBuffer>,
    copy: VersionedCopy,
    /// The same problem again is not reported (logged, counted) until a read succeeds:
    /// a missing or broken buffer would otherwise be reported 100 times a second.
    last_problem: Option<String>,
}

impl Buffer {
    fn new(what: &'static str, source: Box<dyn SharedBuffer>, size: usize) -> Self {
        Self {
            what,
            source,
            copy: VersionedCopy::new(size),
            last_problem: None,
        }
    }

    /// Whether a new consistent copy was taken. Problems are reported here.
    async fn refresh(&mut self, metrics: &ComponentMetrics) -> bool {
        match consistent_copy(&mut self.copy, self.source.as_mut()).await {
            Ok(attempt) => {
                if self.last_problem.take().is_some() {
                    tracing::info!("rF2 shared memory readable: {}", self.source.describe());
                }
                if attempt == Attempt::Torn {
                    tracing::trace!(
                        buffer = self.what,
                        "still being written after {TRIES} tries; next poll"
                    );
                }
                matches!(attempt, Attempt::Fresh { .. })
            }
            Err(error) => {
                let message = format!("{}: {error}", self.source.describe());
                if self.last_problem.as_deref() != Some(message.as_str()) {
                    if error.kind() == io::ErrorKind::NotFound {
                        // The game (or the bridge) is not running yet: normal, not an error.
                        tracing::info!(
                            "waiting for rF2 shared memory: {} does not exist yet",
                            self.source.describe()
                        );
                    } else {
                        metrics.add_error();
                        tracing::warn!(%message, "cannot read rF2 shared memory");
                    }
                    self.last_problem = Some(message);
                }
                false
            }
        }
    }
}

struct Rfactor2Source {
    telemetry: Buffer,
    scoring: Buffer,
    /// The scoring copy parsed: frames are joined to it.
    scoring_valid: bool,
    cars: Cars,
    stream: Stream,
    names: Names,
    poll: Duration,
    started: Instant,
    last_fresh: Instant,
    /// Copies that did not parse, for rate-limited logging.
    malformed: u64,
}

#[async_trait]
impl Component for Rfactor2Source {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let mut ticker = tokio::time::interval(self.poll);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = io.shutdown.triggered() => return Ok(()),
                _ = ticker.tick() => {}
            }
            let batch = self.poll_once(&io.metrics).await;
            if !batch.is_empty() {
                io.output.send(batch).await;
            }
        }
    }
}

impl Rfactor2Source {
    /// One poll: refresh scoring, then telemetry; the records of a new telemetry version.
    async fn poll_once(&mut self, metrics: &ComponentMetrics) -> Vec<Event> {
        // Scoring first, so a telemetry frame is joined to the newest standings.
        let new_scoring = self.scoring.refresh(metrics).await;
        if new_scoring {
            match parse_scoring(self.scoring.copy.data()) {
                Ok(_) => self.scoring_valid = true,
                Err(error) => {
                    self.scoring_valid = false;
                    self.malformed(metrics, "scoring", &error);
                }
            }
        }
        let new_telemetry = self.telemetry.refresh(metrics).await;
        let mut events = Vec::new();
        if new_telemetry {
            match parse_telemetry(self.telemetry.copy.data()) {
                Ok(frame) => {
                    let scoring = self
                        .scoring_valid
                        .then(|| parse_scoring(self.scoring.copy.data()).ok())
                        .flatten();
                    let monotonic_ns =
                        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    let now = now_ns();
                    events = join(
                        &frame,
                        scoring.as_ref(),
                        self.cars,
                        &self.stream,
                        monotonic_ns,
                        &mut self.names,
                    )
                    .into_iter()
                    .map(|car| Event::new(now, Record::CarTelemetry(Arc::new(car))))
                    .collect();
                }
                Err(error) => self.malformed(metrics, "telemetry", &error),
            }
        }
        if new_scoring || new_telemetry {
            self.last_fresh = Instant::now();
        } else if self.last_fresh.elapsed() >= REOPEN_AFTER {
            self.telemetry.source.reopen();
            self.scoring.source.reopen();
            self.last_fresh = Instant::now();
        }
        events
    }

    /// A consistent copy that does not parse: counted, logged (rate-limited), skipped. Each
    /// version is copied once, so each bad version counts once.
    fn malformed(
        &mut self,
        metrics: &ComponentMetrics,
        buffer: &str,
        error: &dyn std::error::Error,
    ) {
        metrics.add_error();
        self.malformed += 1;
        if self.malformed <= 5 || self.malformed % 1000 == 0 {
            tracing::warn!(
                buffer,
                %error,
                skipped = self.malformed,
                "skipping a malformed rF2 buffer"
            );
        }
    }
}

/// Up to [`TRIES`] attempts, [`RETRY_PAUSE`] apart while the writer is busy.
async fn consistent_copy(
    copy: &mut VersionedCopy,
    source: &mut dyn SharedBuffer,
) -> io::Result<Attempt> {
    for _ in 0..TRIES {
        match copy.try_once(source)? {
            Attempt::Torn => tokio::time::sleep(RETRY_PAUSE).await,
            done => return Ok(done),
        }
    }
    Ok(Attempt::Torn)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
