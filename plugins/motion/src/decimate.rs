//! Transform `decimate`: thin high-rate records, per car.
//!
//! Positions and telemetry arrive several times a second per car; a dashboard, an MQTT
//! bridge or a slow link may want one per second. `decimate` forwards what it receives
//! (it is a passthrough) but keeps, for each key, either at most one event per `interval_ms`
//! of event time or every `every_n`-th event (exactly one of the two).
//!
//! The key (`key`):
//! - `"car"` (default): the record's kind and car/driver number (see [`crate::keys`]), so
//!   car 44's positions and car 44's telemetry are thinned separately; records without a car
//!   are keyed by kind alone;
//! - `"kind"`: the record's kind;
//! - `"none"`: one key for everything that is thinned.
//!
//! Keys are also separated by session. Records whose kind is in `pass_kinds` always pass; by
//! default that is every kind except `position`, `car_data`, `frame` and `car_telemetry`, so
//! laps, race control, session ends and the like are never thinned away.
//!
//! In interval mode a key keeps an event when at least `interval_ms` has passed since the last
//! one it kept. If event time jumps back by more than the interval (a looping replay), the key
//! starts over.
//!
//! ```toml
//! [transforms.thin]
//! type = "decimate"
//! inputs = ["f1"]
//! interval_ms = 1000          # or: every_n = 4
//! key = "car"                 # "car" | "kind" | "none"
//! # pass_kinds = ["lap", "race_control", "session_end"]   # default: all but position, car_data, frame, car_telemetry
//! ```

use std::collections::HashMap;

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io, Kinds,
    RecordKind, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::keys::{car_of, parse_kind_names, session_of};

/// What events are grouped by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecimateKey {
    /// Kind and car/driver number (kind alone for records without a car).
    #[default]
    Car,
    /// Kind only.
    Kind,
    /// One key for all thinned records.
    None,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecimateConfig {
    /// Keep at most one event per key per this many ms of event time.
    #[serde(default)]
    pub interval_ms: Option<u64>,
    /// Keep every Nth event per key (the first, the N+1th, ...).
    #[serde(default)]
    pub every_n: Option<u64>,
    /// What events are grouped by: "car", "kind" or "none".
    #[serde(default)]
    pub key: DecimateKey,
    /// Kinds that always pass. Default: every kind except position, car_data, frame and
    /// car_telemetry.
    #[serde(default)]
    pub pass_kinds: Option<Vec<String>>,
}

fn default_pass_kinds() -> Kinds {
    let thinned = [
        RecordKind::Position,
        RecordKind::CarData,
        RecordKind::Frame,
        RecordKind::CarTelemetry,
    ];
    let kept: Vec<RecordKind> = RecordKind::ALL
        .iter()
        .copied()
        .filter(|k| !thinned.contains(k))
        .collect();
    Kinds::of(&kept)
}

impl DecimateConfig {
    fn pass(&self) -> Kinds {
        match &self.pass_kinds {
            Some(names) => Kinds::of(&parse_kind_names("pass_kinds", names).unwrap_or_default()),
            None => default_pass_kinds(),
        }
    }
}

impl ComponentConfig for DecimateConfig {
    fn emits(&self) -> Kinds {
        Kinds::passthrough()
    }

    fn accepts(&self) -> Kinds {
        Kinds::any()
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        match (self.interval_ms, self.every_n) {
            (None, None) => problems.push(OptionProblem::new(
                "interval_ms",
                "set either `interval_ms` (keep one event per interval) or `every_n` (keep every Nth event)",
            )),
            (Some(_), Some(_)) => problems.push(OptionProblem::new(
                "every_n",
                "set only one of `interval_ms` and `every_n`",
            )),
            (Some(0), None) => problems.push(OptionProblem::new(
                "interval_ms",
                "must be at least 1",
            )),
            (None, Some(0)) => {
                problems.push(OptionProblem::new("every_n", "must be at least 1"))
            }
            _ => {}
        }
        if let Some(names) = &self.pass_kinds {
            if let Err(problem) = parse_kind_names("pass_kinds", names) {
                problems.push(problem);
            }
        }
        problems
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        let mode = match (self.interval_ms, self.every_n) {
            (Some(ms), None) if ms > 0 => {
                Mode::Interval((ms.min(i64::MAX as u64 / 1_000_000) as i64) * 1_000_000)
            }
            (None, Some(n)) if n > 0 => Mode::EveryN(n),
            _ => {
                return Err(
                    "decimate needs exactly one of `interval_ms` and `every_n`, at least 1".into(),
                )
            }
        };
        Ok(Box::new(DecimateComponent {
            decimator: Decimator::new(mode, self.key, self.pass()),
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<DecimateConfig>(
        "decimate",
        Role::Transform,
        "Keeps one event per car (or kind) per interval, or every Nth",
    )
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Interval(i64),
    EveryN(u64),
}

/// Keys tracked per session before the table is reset (keys come from outside data).
const MAX_KEYS: usize = 100_000;
const MAX_SESSIONS: usize = 32;
const NO_CAR: u64 = u32::MAX as u64 + 1;

/// Per key: the last kept event time (interval mode) or the count since it (every_n).
type KeyTable = HashMap<u64, i64>;

/// The thinning rules, without I/O.
pub struct Decimator {
    mode: Mode,
    key: DecimateKey,
    pass: Kinds,
    /// Per session (None = records without a session): last kept time or count, per key.
    sessions: Vec<(Option<Box<str>>, KeyTable)>,
}

impl Decimator {
    fn new(mode: Mode, key: DecimateKey, pass: Kinds) -> Self {
        Self {
            mode,
            key,
            pass,
            sessions: Vec::new(),
        }
    }

    fn table(&mut self, session: Option<&str>) -> &mut KeyTable {
        let index = match self
            .sessions
            .iter()
            .position(|(key, _)| key.as_deref() == session)
        {
            Some(index) => index,
            None => {
                if self.sessions.len() >= MAX_SESSIONS {
                    self.sessions.remove(0);
                }
                self.sessions.push((session.map(Box::from), HashMap::new()));
                self.sessions.len() - 1
            }
        };
        let table = &mut self.sessions[index].1;
        if table.len() >= MAX_KEYS {
            table.clear();
        }
        table
    }

    /// Whether `event` is kept.
    pub fn keep(&mut self, event: &Event) -> bool {
        let kind = event.kind();
        if self.pass.contains(kind) {
            return true;
        }
        let key = match self.key {
            DecimateKey::Car => {
                ((kind as u64) << 33) | car_of(&event.record).map_or(NO_CAR, u64::from)
            }
            DecimateKey::Kind => (kind as u64) << 33,
            DecimateKey::None => 0,
        };
        let session = session_of(&event.record);
        let mode = self.mode;
        let table = self.table(session.as_deref());
        match mode {
            Mode::Interval(interval) => {
                let t = event.time_ns;
                match table.get_mut(&key) {
                    None => {
                        table.insert(key, t);
                        true
                    }
                    Some(last) => {
                        let since = t.saturating_sub(*last);
                        if since >= interval || since < -interval {
                            *last = t;
                            true
                        } else {
                            false
                        }
                    }
                }
            }
            Mode::EveryN(n) => {
                let count = table.entry(key).or_insert(0);
                let keep = *count == 0;
                *count += 1;
                if *count as u64 >= n {
                    *count = 0;
                }
                keep
            }
        }
    }
}

struct DecimateComponent {
    decimator: Decimator,
}

#[async_trait]
impl Component for DecimateComponent {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let Some(input) = io.input.as_mut() else {
            return Ok(());
        };
        while let Some(batch) = input.recv().await {
            let keep: Vec<bool> = batch.iter().map(|e| self.decimator.keep(e)).collect();
            if keep.iter().all(|k| *k) {
                io.output.send_shared(batch).await;
            } else {
                let out: Vec<Event> = batch
                    .iter()
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(e, _)| e.clone())
                    .collect();
                io.output.send(out).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::record::{CarData, CarPosition, Lap};
    use pitwall_api::testing::{parse_config, run_config};
    use pitwall_api::Record;
    use std::sync::Arc;

    const MS: i64 = 1_000_000;

    fn pos(t_ms: i64, car: u32) -> Event {
        Event::new(
            t_ms * MS,
            Record::Position(CarPosition {
                session_key: "1".into(),
                car,
                x: 1.0,
                y: 2.0,
                z: 0.0,
                spline: None,
            }),
        )
    }

    fn telemetry(t_ms: i64, car: u32) -> Event {
        Event::new(
            t_ms * MS,
            Record::CarData(CarData {
                session_key: "1".into(),
                car,
                ..Default::default()
            }),
        )
    }

    fn lap(t_ms: i64) -> Event {
        Event::new(
            t_ms * MS,
            Record::Lap(Arc::new(Lap {
                session_key: "1".into(),
                driver_number: 1,
                lap_number: 3,
                ..Default::default()
            })),
        )
    }

    fn summary(events: &[Event]) -> Vec<(i64, RecordKind, Option<u32>)> {
        events
            .iter()
            .map(|e| (e.time_ns / MS, e.kind(), car_of(&e.record)))
            .collect()
    }

    #[tokio::test]
    async fn interval_per_car_and_kind() {
        let mut events = Vec::new();
        for i in 0..10 {
            events.push(pos(i * 270, 1));
            events.push(pos(i * 270, 2));
        }
        events.push(telemetry(300, 1));
        events.push(telemetry(310, 1));
        events.push(lap(320));
        events.push(lap(321));
        let out = run_config::<DecimateConfig>("interval_ms = 1000", events).await;
        let got = summary(&out);
        let positions: Vec<_> = got
            .iter()
            .filter(|(_, k, car)| *k == RecordKind::Position && *car == Some(1))
            .map(|(t, _, _)| *t)
            .collect();
        // 0, then the first sample at least 1000 ms later (1080), then 2160.
        assert_eq!(positions, vec![0, 1080, 2160]);
        assert_eq!(
            got.iter()
                .filter(|(_, k, car)| *k == RecordKind::Position && *car == Some(2))
                .count(),
            3
        );
        // Telemetry is keyed apart from positions: its first event passes.
        assert_eq!(
            got.iter()
                .filter(|(_, k, _)| *k == RecordKind::CarData)
                .count(),
            1
        );
        // Laps pass by default.
        assert_eq!(
            got.iter().filter(|(_, k, _)| *k == RecordKind::Lap).count(),
            2
        );
    }

    #[tokio::test]
    async fn every_n_and_keys() {
        let events: Vec<Event> = (0..9).map(|i| pos(i, 1 + (i % 3) as u32)).collect();
        // Per car: cars 1,2,3 each get 3 events; every 2nd -> events 0 and 2 of each.
        let out = run_config::<DecimateConfig>("every_n = 2", events.clone()).await;
        assert_eq!(
            summary(&out).iter().map(|(t, _, _)| *t).collect::<Vec<_>>(),
            vec![0, 1, 2, 6, 7, 8]
        );
        // By kind: one key for all positions.
        let out = run_config::<DecimateConfig>("every_n = 4\nkey = \"kind\"", events.clone()).await;
        assert_eq!(
            summary(&out).iter().map(|(t, _, _)| *t).collect::<Vec<_>>(),
            vec![0, 4, 8]
        );
        // pass_kinds overrides the default: laps are thinned too, positions pass.
        let out = run_config::<DecimateConfig>(
            "every_n = 2\nkey = \"none\"\npass_kinds = [\"position\"]",
            vec![lap(0), pos(1, 1), lap(2), lap(3), pos(4, 1)],
        )
        .await;
        assert_eq!(
            summary(&out).iter().map(|(t, _, _)| *t).collect::<Vec<_>>(),
            vec![0, 1, 3, 4]
        );
    }

    #[test]
    fn time_going_back_restarts_a_key() {
        let mut d = Decimator::new(
            Mode::Interval(1000 * MS),
            DecimateKey::Car,
            default_pass_kinds(),
        );
        assert!(d.keep(&pos(5000, 1)));
        assert!(!d.keep(&pos(5500, 1)));
        assert!(!d.keep(&pos(4500, 1)), "small reorders are still thinned");
        assert!(d.keep(&pos(0, 1)), "a loop back to the start");
        assert!(!d.keep(&pos(100, 1)));
    }

    #[test]
    fn exactly_one_mode() {
        let neither: DecimateConfig = parse_config("");
        assert_eq!(neither.check()[0].key, "interval_ms");
        let both: DecimateConfig = parse_config("interval_ms = 5\nevery_n = 2");
        assert_eq!(both.check()[0].key, "every_n");
        let zero: DecimateConfig = parse_config("every_n = 0");
        assert_eq!(zero.check()[0].key, "every_n");
        let bad: DecimateConfig = parse_config("every_n = 2\npass_kinds = [\"laps\"]");
        let problems = bad.check();
        assert_eq!(problems[0].key, "pass_kinds[0]");
        assert!(problems[0].message.contains("`laps`"));
        let good: DecimateConfig = parse_config("every_n = 2");
        assert!(good.check().is_empty());
        assert!(good.emits().is_passthrough());
    }
}
