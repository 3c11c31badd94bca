//! `race_control` on a paused tokio clock: the light sequence runs on real timers, so the
//! tests check both the messages and the virtual instants at which they come out.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use pitwall_api::channel::Queue;
use pitwall_api::component::ComponentConfig;
use pitwall_api::record::{Command, GateTrigger, RaceState};
use pitwall_api::testing::{build_context, parse_config, wire};
use pitwall_api::{ComponentMetrics, Event, Record, WhenFull};
use pitwall_race::race_control::RaceControlConfig;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const SEED: u64 = 42;

struct Harness {
    input: Arc<Queue>,
    output: Arc<Queue>,
    pending: VecDeque<Event>,
    metrics: Arc<ComponentMetrics>,
    task: JoinHandle<()>,
}

impl Harness {
    fn start(options: &str) -> Self {
        let config: RaceControlConfig = parse_config(options);
        assert_eq!(config.check(), Vec::new());
        let mut component = config.build(&build_context("race", ".")).expect("builds");
        let mut wiring = wire("race", true);
        let input = wiring.input.take().unwrap();
        let output = wiring.output.clone();
        let metrics = wiring.io.metrics.clone();
        let task = tokio::spawn(async move {
            component.run(&mut wiring.io).await.expect("runs");
        });
        Self {
            input,
            output,
            pending: VecDeque::new(),
            metrics,
            task,
        }
    }

    async fn push(&self, events: Vec<Event>) {
        self.input.push(Arc::new(events), WhenFull::Block).await;
    }

    async fn command(&self, name: &str) {
        self.push(vec![Event::new(
            0,
            Record::Command(Arc::new(Command { name: name.into() })),
        )])
        .await;
    }

    async fn gate(&self, lane: u32, time_ns: i64, gate_time_ns: Option<i64>) {
        self.push(vec![Event::new(
            time_ns,
            Record::GateTrigger(GateTrigger { lane, gate_time_ns }),
        )])
        .await;
    }

    /// The next emitted event (waits, letting paused time advance to the next timer).
    async fn next(&mut self) -> Event {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            let batch = tokio::time::timeout(Duration::from_secs(3600), self.output.pop())
                .await
                .expect("an event within an hour")
                .expect("output open");
            self.pending.extend(batch.iter().cloned());
        }
    }

    /// The next race event's message, checking it is one.
    async fn message(&mut self) -> (i64, Value) {
        let event = self.next().await;
        match event.record {
            Record::RaceEvent(race_event) => (event.time_ns, race_event.message.clone()),
            other => panic!("expected a race event, got {other:?}"),
        }
    }

    /// The next state snapshot, whole.
    async fn race_state(&mut self) -> Arc<RaceState> {
        let event = self.next().await;
        match event.record {
            Record::RaceState(state) => state,
            other => panic!("expected a race state, got {other:?}"),
        }
    }

    /// The next state snapshot: status and laps per lane.
    async fn state(&mut self) -> (String, Vec<Vec<f64>>) {
        let state = self.race_state().await;
        (
            state.status.clone(),
            state.lanes.iter().map(|lane| lane.laps.clone()).collect(),
        )
    }

    /// Start a race and read through to `start_race`; returns lights out (ns).
    async fn start_race(&mut self) -> i64 {
        self.command("start").await;
        assert_eq!(self.message().await.1, json!({"type": "reset"}));
        assert_eq!(self.state().await.0, "lights");
        for _ in 0..5 {
            assert_eq!(self.message().await.1["type"], "light");
            self.state().await;
        }
        let (lights_out, message) = self.message().await;
        assert_eq!(message, json!({"type": "lights_out"}));
        self.next().await; // go
        assert_eq!(self.message().await.1, json!({"type": "start_race"}));
        assert_eq!(self.state().await.0, "running");
        lights_out
    }

    /// Nothing more comes out, even after a long wait.
    async fn assert_quiet(&mut self) {
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(self.pending.is_empty(), "unexpected {:?}", self.pending);
        assert!(self.output.is_empty(), "unexpected output");
    }

    async fn finish(self) {
        self.input.close();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("run returns when the input ends")
            .expect("no panic");
    }
}

const S: i64 = 1_000_000_000;

#[tokio::test(start_paused = true)]
async fn start_runs_the_lights_on_timers_and_says_go() {
    let mut race = Harness::start(&format!("seed = {SEED}"));
    assert_eq!(race.state().await, ("idle".into(), vec![vec![], vec![]]));
    let began = Instant::now();
    race.command("start").await;
    let (reset_ns, message) = race.message().await;
    assert_eq!(message, json!({"type": "reset"}));
    assert_eq!(race.state().await.0, "lights");
    for light in 1..=5i64 {
        let (time_ns, message) = race.message().await;
        assert_eq!(
            message,
            json!({"type": "light", "light_id": light, "state": "on"})
        );
        // One second apart, the first one a second after the command, in event time ...
        assert_eq!(time_ns - reset_ns, light * S, "light {light}");
        // ... and in (virtual) wall-clock time: the timers really waited.
        assert_eq!(began.elapsed(), Duration::from_secs(light as u64));
        assert_eq!(race.state().await.0, "lights");
    }
    let hold_ms = fastrand::Rng::with_seed(SEED).u64(1000..=4000);
    let (lights_out_ns, message) = race.message().await;
    assert_eq!(message, json!({"type": "lights_out"}));
    assert_eq!(lights_out_ns - reset_ns, 5 * S + hold_ms as i64 * 1_000_000);
    assert_eq!(
        began.elapsed(),
        Duration::from_millis(5000 + hold_ms),
        "held {hold_ms} ms"
    );
    let go = race.next().await;
    assert_eq!(go.time_ns, lights_out_ns);
    match go.record {
        Record::Command(command) => assert_eq!(command.name, "go"),
        other => panic!("expected the go command, got {other:?}"),
    }
    assert_eq!(race.message().await.1, json!({"type": "start_race"}));
    assert_eq!(race.state().await, ("running".into(), vec![vec![], vec![]]));
    // A second start while racing is ignored.
    race.command("start").await;
    race.assert_quiet().await;
    race.finish().await;
}

#[tokio::test(start_paused = true)]
async fn holds_stay_within_their_bounds() {
    for seed in 0..20u64 {
        let mut race = Harness::start(&format!(
            "seed = {seed}\nhold_min_ms = 1000\nhold_max_ms = 4000"
        ));
        race.state().await;
        let began = Instant::now();
        race.start_race().await;
        let took = began.elapsed();
        assert!(
            took >= Duration::from_millis(6000) && took <= Duration::from_millis(9000),
            "seed {seed}: lights out after {took:?}"
        );
        race.finish().await;
    }
}

#[tokio::test(start_paused = true)]
async fn gates_make_laps_rejecting_bounces() {
    let mut race = Harness::start(&format!("seed = {SEED}"));
    race.state().await;
    // Before the race, gates are ignored.
    race.gate(1, 0, None).await;
    let t0 = race.start_race().await;

    // Lane 1 by receive time; lane 2 carries its own timestamp, which wins.
    race.gate(1, t0 + 5_200_000_000, None).await;
    assert_eq!(
        race.message().await.1,
        json!({"type": "lap_finish", "track": 1, "lap_time_sec": 5.2})
    );
    assert_eq!(race.state().await.1, vec![vec![5.2], vec![]]);
    race.gate(2, t0 + 7 * S, Some(t0 + 6_100_000_000)).await;
    assert_eq!(
        race.message().await.1,
        json!({"type": "lap_finish", "track": 2, "lap_time_sec": 6.1})
    );
    assert_eq!(race.state().await.1, vec![vec![5.2], vec![6.1]]);

    // A bounce 0.3 s after lane 1's crossing: rejected, and the reference stays.
    race.gate(1, t0 + 5_500_000_000, None).await;
    let (_, rejected) = race.message().await;
    assert_eq!(rejected["type"], "lap_rejected");
    assert_eq!(rejected["track"], 1);
    assert_eq!(rejected["reason"], "too_soon");
    assert!((rejected["after_sec"].as_f64().unwrap() - 0.3).abs() < 1e-9);
    assert_eq!(race.metrics.snapshot().discarded, 1);
    race.gate(1, t0 + 10 * S, None).await;
    assert_eq!(
        race.message().await.1,
        json!({"type": "lap_finish", "track": 1, "lap_time_sec": 4.8})
    );
    assert_eq!(race.state().await.1, vec![vec![5.2, 4.8], vec![6.1]]);

    race.command("stop").await;
    assert_eq!(
        race.message().await.1,
        json!({
            "type": "race_finished",
            "track_1_laps": [5.2, 4.8],
            "track_2_laps": [6.1],
            "track_1_fastest": 4.8,
            "track_2_fastest": 6.1
        })
    );
    assert_eq!(
        race.state().await,
        ("finished".into(), vec![vec![5.2, 4.8], vec![6.1]])
    );
    // After the finish, gates are ignored again; reset clears everything.
    race.gate(1, t0 + 20 * S, None).await;
    race.command("reset").await;
    assert_eq!(race.message().await.1, json!({"type": "reset"}));
    assert_eq!(race.state().await, ("idle".into(), vec![vec![], vec![]]));
    race.finish().await;
}

/// What a dashboard joining mid-race times each lane's current lap from.
#[tokio::test(start_paused = true)]
async fn each_lanes_lap_start_is_in_the_state_while_racing() {
    let mut race = Harness::start(&format!("seed = {SEED}"));
    race.state().await;
    let t0 = race.start_race().await;
    // `start_race` read the running state already; a crossing brings the next one.
    tokio::time::sleep(Duration::from_secs(5)).await;
    race.gate(1, t0 + 5 * S, None).await;
    race.message().await;
    let state = race.race_state().await;
    let started: Vec<Option<i64>> = state.lanes.iter().map(|l| l.lap_started_ns).collect();
    assert_eq!(
        started[1],
        Some(t0),
        "lane 2 is on its first lap, from lights out"
    );
    let lane_1 = started[0].expect("lane 1's second lap began");
    assert!(
        (lane_1 - (t0 + 5 * S)).abs() < 50_000_000,
        "from when its crossing arrived: {} ms after lights out",
        (lane_1 - t0) / 1_000_000
    );
    race.command("stop").await;
    race.message().await;
    let state = race.race_state().await;
    assert!(state.lanes.iter().all(|l| l.lap_started_ns.is_none()));
    race.finish().await;
}

#[tokio::test(start_paused = true)]
async fn too_slow_laps_are_rejected_and_move_the_reference() {
    let mut race = Harness::start(&format!("seed = {SEED}\nmax_lap_ms = 20000"));
    race.state().await;
    let t0 = race.start_race().await;
    race.gate(1, t0 + 25 * S, None).await;
    let (_, rejected) = race.message().await;
    assert_eq!(rejected["reason"], "too_slow");
    assert_eq!(rejected["after_sec"], 25.0);
    assert_eq!(race.state().await.1, vec![Vec::<f64>::new(), vec![]]);
    race.gate(1, t0 + 31 * S, None).await;
    assert_eq!(
        race.message().await.1,
        json!({"type": "lap_finish", "track": 1, "lap_time_sec": 6.0})
    );
    race.finish().await;
}

#[tokio::test(start_paused = true)]
async fn stop_without_laps_reports_zero_and_stop_during_lights_cancels_them() {
    let mut race = Harness::start(&format!("seed = {SEED}"));
    race.state().await;
    race.command("start").await;
    race.message().await; // reset
    race.state().await;
    race.message().await; // light 1
    race.state().await;
    race.command("stop").await;
    assert_eq!(
        race.message().await.1,
        json!({
            "type": "race_finished",
            "track_1_laps": [],
            "track_2_laps": [],
            "track_1_fastest": 0,
            "track_2_fastest": 0
        })
    );
    assert_eq!(race.state().await.0, "finished");
    // No more lights, no GO.
    race.assert_quiet().await;
    // Stop again: nothing under way, ignored.
    race.command("stop").await;
    race.assert_quiet().await;
    race.finish().await;
}

#[tokio::test(start_paused = true)]
async fn reset_during_lights_cancels_them() {
    let mut race = Harness::start(&format!("seed = {SEED}"));
    race.state().await;
    race.command("start").await;
    race.message().await;
    race.state().await;
    race.message().await; // light 1
    race.state().await;
    race.command("reset").await;
    assert_eq!(race.message().await.1, json!({"type": "reset"}));
    assert_eq!(race.state().await.0, "idle");
    race.assert_quiet().await;
    // And a new start works from idle.
    race.start_race().await;
    race.finish().await;
}

#[tokio::test(start_paused = true)]
async fn three_lanes_and_unknown_lanes() {
    let mut race = Harness::start(&format!("seed = {SEED}\nlanes = 3"));
    assert_eq!(race.state().await.1.len(), 3);
    let t0 = race.start_race().await;
    race.gate(3, t0 + 3 * S, None).await;
    assert_eq!(
        race.message().await.1,
        json!({"type": "lap_finish", "track": 3, "lap_time_sec": 3.0})
    );
    race.state().await;
    race.gate(3, t0 + 5_500_000_000, None).await;
    race.message().await;
    race.state().await;
    // Lane 4 and lane 0 do not exist: errors, no output.
    race.gate(4, t0 + 6 * S, None).await;
    race.gate(0, t0 + 6 * S, None).await;
    race.command("dance").await;
    race.command("stop").await;
    assert_eq!(
        race.message().await.1,
        json!({
            "type": "race_finished",
            "track_1_laps": [],
            "track_2_laps": [],
            "track_3_laps": [3.0, 2.5],
            "track_1_fastest": 0,
            "track_2_fastest": 0,
            "track_3_fastest": 2.5
        })
    );
    assert_eq!(race.metrics.snapshot().errors, 3);
    race.finish().await;
}

#[test]
fn checks_reject_impossible_options() {
    let config: RaceControlConfig =
        parse_config("lanes = 0\nhold_min_ms = 5000\nhold_max_ms = 1000\nmax_lap_ms = 500");
    let keys: Vec<String> = config.check().into_iter().map(|p| p.key).collect();
    assert_eq!(keys, vec!["lanes", "hold_max_ms", "max_lap_ms"]);
    let defaults: RaceControlConfig = parse_config("");
    assert_eq!(defaults.lanes, 2);
    assert_eq!(defaults.min_lap_ms, 1000);
    assert!(defaults.check().is_empty());
}
