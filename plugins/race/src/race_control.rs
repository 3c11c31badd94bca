//! Transform `race_control`: slot-car race control, the server side of the Carrera race
//! dashboard (FORMATS.md section 7).
//!
//! Inputs are `gate_trigger` records (light gates, from the `mqtt` source with
//! `emit = "gate_trigger"`), `command` records (`start`, `stop`, `reset`, from the
//! `dashboard` sink) and `tick` records (accepted so a clock can be wired in; ignored: the
//! light sequence runs on its own timers). Outputs are `race_event` records carrying the exact
//! JSON message the dashboard protocol sends, a `race_state` snapshot after every change, and
//! one `command` named `go` at lights out (for an `mqtt` sink with `text = "GO"` on
//! `carrera/race/start`). No other command is ever emitted, so a sink that publishes commands
//! only publishes GO.
//!
//! # The race
//!
//! `idle -> lights -> running -> finished`, as the original server does it:
//!
//! - `start` (from `idle` or `finished`; ignored during `lights` and `running`) clears every
//!   lane's laps and sends `{"type":"reset"}`. Then, `light_interval_ms` apart, five
//!   `{"type":"light","light_id":n,"state":"on"}` (the first one `light_interval_ms` after the
//!   command, like the original); then, after a random hold between `hold_min_ms` and
//!   `hold_max_ms`, `{"type":"lights_out"}`, the `go` command and `{"type":"start_race"}`.
//!   The lights run on timers in wall-clock time: nothing needs to arrive for them to go on.
//! - `stop` (during `lights` or `running`) cancels the lights if they are still on, goes to
//!   `finished` and sends `{"type":"race_finished","track_1_laps":[..],..,"track_1_fastest":s|0,..}`
//!   with `track_{n}_...` keys for every lane. Ignored when `idle` or `finished`.
//! - `reset` (any time) cancels the lights, clears the laps, goes to `idle` and sends
//!   `{"type":"reset"}`.
//! - Any other command name is counted as an error and ignored.
//!
//! # Lap timing
//!
//! Only while `running`. The crossing time is the gate's own timestamp (`gate_time_ns`) when
//! the payload carried one, else the event time (the MQTT receive time). A lane's first
//! crossing is timed from lights out, each later one from the lane's previous *counted*
//! crossing. A crossing sooner than `min_lap_ms` after that reference (including one before
//! it, as with a gate clock running behind ours) is a bounce or a false trigger: rejected
//! with reason `too_soon`, and the reference stays. With `max_lap_ms`, a crossing later than
//! that is rejected with reason `too_slow` (the car was off the track), and the reference
//! moves to it, since the car really did cross. A rejected crossing is announced as
//! `{"type":"lap_rejected","track":n,"reason":"...","after_sec":s}` (a message the original page
//! ignores) and counted as discarded in the component's metrics. A counted one is announced as
//! `{"type":"lap_finish","track":n,"lap_time_sec":s}`. Triggers while not running are ignored
//! (the original does the same); a lane outside `1..=lanes` is counted as an error.
//!
//! Our own clock (lights out, the time of emitted events) is the wall clock taken when the
//! race starts plus the monotonic time since, so a race is timed without jumps from clock
//! adjustments and agrees with the MQTT source's receive times.
//!
//! ```toml
//! [transforms.race_control]
//! type = "race_control"
//! inputs = ["gates", { from = "dashboard", when_full = "drop_oldest" }]
//! lanes = 2                  # track_1 .. track_N
//! light_interval_ms = 1000   # between start lights
//! hold_min_ms = 1000         # random hold after the fifth light ...
//! hold_max_ms = 4000         # ... before lights out
//! # seed = 42                # fixed hold sequence (tests); default: random
//! min_lap_ms = 1000          # sooner crossings are bounces, rejected
//! # max_lap_ms = 60000       # slower laps are rejected (default: no limit)
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::record::{Command, GateTrigger, LaneState, RaceEvent, RaceState};
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentMetrics, ComponentSpec,
    Event, Io, Kinds, Record, RecordKind, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

/// Number of start lights.
pub const LIGHTS: u32 = 5;
/// The name of the command emitted at lights out.
pub const GO: &str = "go";

/// Options of the `race_control` transform.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RaceControlConfig {
    /// Number of lanes (tracks), numbered from 1: gate triggers on other lanes are errors, and
    /// the race summary has `track_{n}_...` keys for each.
    #[serde(default = "default_lanes")]
    pub lanes: u32,
    /// Time between the start command and the first light, and between lights, in ms.
    #[serde(default = "default_light_interval_ms")]
    pub light_interval_ms: u64,
    /// Shortest random hold between the fifth light and lights out, in ms.
    #[serde(default = "default_hold_min_ms")]
    pub hold_min_ms: u64,
    /// Longest random hold between the fifth light and lights out, in ms.
    #[serde(default = "default_hold_max_ms")]
    pub hold_max_ms: u64,
    /// Seed of the random holds, for a repeatable sequence (tests). Default: random.
    #[serde(default)]
    pub seed: Option<u64>,
    /// A crossing sooner than this after the lane's last counted one (or lights out) is a
    /// bounce of the gate: rejected, in ms.
    #[serde(default = "default_min_lap_ms")]
    pub min_lap_ms: u64,
    /// A crossing later than this after the lane's last counted one is rejected as too slow
    /// (and becomes the new reference), in ms. Default: no limit.
    #[serde(default)]
    pub max_lap_ms: Option<u64>,
}

fn default_lanes() -> u32 {
    2
}

fn default_light_interval_ms() -> u64 {
    1000
}

fn default_hold_min_ms() -> u64 {
    1000
}

fn default_hold_max_ms() -> u64 {
    4000
}

fn default_min_lap_ms() -> u64 {
    1000
}

/// Most lanes a race may have: a sanity limit, not a hardware one.
const MAX_LANES: u32 = 64;

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<RaceControlConfig>(
        "race_control",
        Role::Transform,
        "Slot-car race control: start lights, GO, lap times from light gates with bounce rejection, race summary",
    )
}

impl ComponentConfig for RaceControlConfig {
    fn emits(&self) -> Kinds {
        Kinds::of(&[
            RecordKind::RaceEvent,
            RecordKind::RaceState,
            RecordKind::Command,
        ])
    }

    fn accepts(&self) -> Kinds {
        Kinds::of(&[
            RecordKind::GateTrigger,
            RecordKind::Command,
            RecordKind::Tick,
            RecordKind::LinkStatus,
        ])
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if self.lanes == 0 || self.lanes > MAX_LANES {
            problems.push(OptionProblem::new(
                "lanes",
                format!("must be between 1 and {MAX_LANES}"),
            ));
        }
        if self.hold_min_ms > self.hold_max_ms {
            problems.push(OptionProblem::new(
                "hold_max_ms",
                format!(
                    "must not be below hold_min_ms ({} > {})",
                    self.hold_min_ms, self.hold_max_ms
                ),
            ));
        }
        if let Some(max) = self.max_lap_ms {
            if max <= self.min_lap_ms {
                problems.push(OptionProblem::new(
                    "max_lap_ms",
                    format!(
                        "must be above min_lap_ms ({}), or no lap could count",
                        self.min_lap_ms
                    ),
                ));
            }
        }
        problems
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        let problems = self.check();
        if let Some(problem) = problems.first() {
            return Err(format!("{}: {}", problem.key, problem.message).into());
        }
        let rng = match self.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        Ok(Box::new(RaceControl {
            lanes: (1..=self.lanes).map(|_| Lane::default()).collect(),
            config: self.clone(),
            rng,
            phase: Phase::Idle,
            deadline: None,
            clock: Clock::now(),
            errors: 0,
        }))
    }
}

/// Wall-clock ns since the epoch, advanced by the monotonic (tokio) clock.
#[derive(Clone, Copy)]
struct Clock {
    epoch_ns: i64,
    at: Instant,
}

impl Clock {
    fn now() -> Self {
        let epoch_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self {
            epoch_ns,
            at: Instant::now(),
        }
    }

    fn ns_at(&self, instant: Instant) -> i64 {
        let elapsed = instant.saturating_duration_since(self.at).as_nanos();
        self.epoch_ns
            .saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX))
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Idle,
    /// The start sequence: `lit` lights are on (0..=5); the next step is at `deadline`.
    Lights {
        lit: u32,
    },
    /// Racing since lights out at `start_ns`.
    Running {
        start_ns: i64,
    },
    Finished,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Lights { .. } => "lights",
            Self::Running { .. } => "running",
            Self::Finished => "finished",
        }
    }
}

#[derive(Default)]
struct Lane {
    /// Counted lap times, seconds.
    laps: Vec<f64>,
    /// The lane's last counted crossing (ns, in the clock it was measured with).
    last_ns: Option<i64>,
    /// When its current lap began on the server's clock (lights out, or when its last
    /// counted crossing arrived): what a dashboard joining mid-race times the lap from.
    lap_started_ns: Option<i64>,
}

struct RaceControl {
    config: RaceControlConfig,
    rng: fastrand::Rng,
    phase: Phase,
    lanes: Vec<Lane>,
    /// When the next step of the light sequence is due.
    deadline: Option<Instant>,
    clock: Clock,
    errors: u64,
}

#[async_trait]
impl Component for RaceControl {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let Some(input) = io.input.as_mut() else {
            return Ok(());
        };
        // Whoever connects downstream first learns where the race stands.
        let mut out = Vec::new();
        self.push_state(&mut out, Instant::now());
        io.output.send(out).await;
        loop {
            let mut out = Vec::new();
            tokio::select! {
                batch = input.recv() => match batch {
                    Some(batch) => {
                        for event in batch.iter() {
                            self.apply(event, &mut out, &io.metrics);
                        }
                    }
                    None => break,
                },
                _ = sleep_until(self.deadline) => self.step(&mut out),
            }
            io.output.send(out).await;
        }
        Ok(())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl RaceControl {
    fn apply(&mut self, event: &Event, out: &mut Vec<Event>, metrics: &ComponentMetrics) {
        match &event.record {
            Record::Command(command) => self.command(&command.name, out, metrics),
            Record::GateTrigger(trigger) => self.gate(event.time_ns, trigger, out, metrics),
            // The gates' broker went away or came back: every dashboard shows it, as the
            // original did with its `status` message. Timing goes on when gates return.
            Record::LinkStatus(status) => self.announce(
                out,
                Instant::now(),
                serde_json::json!({ "type": "status", "message": status.message }),
            ),
            // Ticks and other kinds carry nothing for us.
            _ => {}
        }
    }

    fn command(&mut self, name: &str, out: &mut Vec<Event>, metrics: &ComponentMetrics) {
        let now = Instant::now();
        match name {
            "start" => {
                if matches!(self.phase, Phase::Lights { .. } | Phase::Running { .. }) {
                    tracing::debug!("start ignored: a race is already under way");
                    return;
                }
                // Re-sync with the wall clock at every start: a race never sees a jump.
                self.clock = Clock::now();
                self.clear_laps();
                self.phase = Phase::Lights { lit: 0 };
                self.deadline = Some(now + self.interval());
                self.announce(out, now, json!({"type": "reset"}));
                self.push_state(out, now);
            }
            "stop" => {
                if !matches!(self.phase, Phase::Lights { .. } | Phase::Running { .. }) {
                    tracing::debug!("stop ignored: no race under way");
                    return;
                }
                self.phase = Phase::Finished;
                self.deadline = None;
                let summary = self.summary();
                self.announce(out, now, summary);
                self.push_state(out, now);
            }
            "reset" => {
                self.phase = Phase::Idle;
                self.deadline = None;
                self.clear_laps();
                self.announce(out, now, json!({"type": "reset"}));
                self.push_state(out, now);
            }
            other => {
                metrics.add_error();
                self.errors += 1;
                if worth_logging(self.errors) {
                    tracing::warn!(command = %other, "unknown race command ignored (start, stop, reset)");
                }
            }
        }
    }

    /// The next step of the light sequence is due.
    fn step(&mut self, out: &mut Vec<Event>) {
        let (Phase::Lights { lit }, Some(due)) = (self.phase, self.deadline) else {
            self.deadline = None;
            return;
        };
        // Timestamps are the scheduled times, so the sequence has no drift.
        if lit < LIGHTS {
            let lit = lit + 1;
            self.phase = Phase::Lights { lit };
            self.announce(
                out,
                due,
                json!({"type": "light", "light_id": lit, "state": "on"}),
            );
            self.deadline = Some(if lit < LIGHTS {
                due + self.interval()
            } else {
                due + self.hold()
            });
        } else {
            let start_ns = self.clock.ns_at(due);
            self.phase = Phase::Running { start_ns };
            self.deadline = None;
            for lane in &mut self.lanes {
                lane.lap_started_ns = Some(start_ns);
            }
            self.announce(out, due, json!({"type": "lights_out"}));
            out.push(Event::new(
                start_ns,
                Record::Command(Arc::new(Command {
                    name: GO.to_string(),
                })),
            ));
            self.announce(out, due, json!({"type": "start_race"}));
        }
        self.push_state(out, due);
    }

    fn gate(
        &mut self,
        time_ns: i64,
        trigger: &GateTrigger,
        out: &mut Vec<Event>,
        metrics: &ComponentMetrics,
    ) {
        let lane_count = self.lanes.len();
        let index = (trigger.lane as usize).wrapping_sub(1);
        if index >= lane_count {
            metrics.add_error();
            self.errors += 1;
            if worth_logging(self.errors) {
                tracing::warn!(
                    lane = trigger.lane,
                    lanes = lane_count,
                    "gate trigger on a lane this race does not have"
                );
            }
            return;
        }
        let Phase::Running { start_ns } = self.phase else {
            tracing::debug!(lane = trigger.lane, "gate trigger ignored: not racing");
            return;
        };
        let now = Instant::now();
        let crossed_ns = trigger.gate_time_ns.unwrap_or(time_ns);
        let min_lap_ns = ms_to_ns(self.config.min_lap_ms);
        let max_lap_ns = self.config.max_lap_ms.map(ms_to_ns);
        let lane = &mut self.lanes[index];
        let reference = lane.last_ns.unwrap_or(start_ns);
        let after_ns = crossed_ns.saturating_sub(reference);
        let after_sec = after_ns as f64 / 1e9;
        let rejected = if after_ns < min_lap_ns {
            Some("too_soon")
        } else if max_lap_ns.is_some_and(|max| after_ns > max) {
            lane.last_ns = Some(crossed_ns);
            lane.lap_started_ns = Some(self.clock.ns_at(now));
            Some("too_slow")
        } else {
            lane.last_ns = Some(crossed_ns);
            lane.lap_started_ns = Some(self.clock.ns_at(now));
            lane.laps.push(after_sec);
            None
        };
        match rejected {
            Some(reason) => {
                metrics.add_discarded(1);
                tracing::debug!(
                    lane = trigger.lane,
                    reason,
                    after_sec,
                    "gate trigger rejected"
                );
                self.announce(
                    out,
                    now,
                    json!({"type": "lap_rejected", "track": trigger.lane, "reason": reason, "after_sec": after_sec}),
                );
                if reason == "too_slow" {
                    // The reference moved.
                    self.push_state(out, now);
                }
            }
            None => {
                self.announce(
                    out,
                    now,
                    json!({"type": "lap_finish", "track": trigger.lane, "lap_time_sec": after_sec}),
                );
                self.push_state(out, now);
            }
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.config.light_interval_ms)
    }

    fn hold(&mut self) -> Duration {
        let (min, max) = (self.config.hold_min_ms, self.config.hold_max_ms);
        Duration::from_millis(self.rng.u64(min..=max.max(min)))
    }

    fn clear_laps(&mut self) {
        for lane in &mut self.lanes {
            lane.laps.clear();
            lane.last_ns = None;
            lane.lap_started_ns = None;
        }
    }

    /// `race_finished` with `track_{n}_laps` and `track_{n}_fastest` for every lane.
    fn summary(&self) -> Value {
        let mut message = Map::new();
        message.insert("type".into(), json!("race_finished"));
        for (i, lane) in self.lanes.iter().enumerate() {
            let n = i + 1;
            message.insert(format!("track_{n}_laps"), json!(lane.laps));
        }
        for (i, lane) in self.lanes.iter().enumerate() {
            let n = i + 1;
            let fastest = lane.laps.iter().copied().reduce(f64::min);
            message.insert(
                format!("track_{n}_fastest"),
                fastest.map_or(json!(0), |s| json!(s)),
            );
        }
        Value::Object(message)
    }

    fn announce(&self, out: &mut Vec<Event>, at: Instant, message: Value) {
        out.push(Event::new(
            self.clock.ns_at(at),
            Record::RaceEvent(Arc::new(RaceEvent { message })),
        ));
    }

    fn push_state(&self, out: &mut Vec<Event>, at: Instant) {
        let state = RaceState {
            status: self.phase.name().to_string(),
            lanes: self
                .lanes
                .iter()
                .enumerate()
                .map(|(i, lane)| LaneState {
                    lane: i as u32 + 1,
                    laps: lane.laps.clone(),
                    lap_started_ns: lane
                        .lap_started_ns
                        .filter(|_| matches!(self.phase, Phase::Running { .. })),
                })
                .collect(),
        };
        out.push(Event::new(
            self.clock.ns_at(at),
            Record::RaceState(Arc::new(state)),
        ));
    }
}

fn ms_to_ns(ms: u64) -> i64 {
    i64::try_from(ms)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000)
}

/// Log the first few problems, then every 1000th.
fn worth_logging(count: u64) -> bool {
    count <= 5 || count % 1000 == 0
}
