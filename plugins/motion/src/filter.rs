//! Transform `filter`: keep only some kinds, cars or sessions.
//!
//! A passthrough that drops what a downstream does not need: telemetry a display never
//! draws, cars other than the one a driver's dashboard follows, sessions other than the one
//! on screen. All given conditions must hold:
//!
//! - `include_kinds`: only these kinds pass (and the component then declares that it emits
//!   exactly those, so graph validation can check what follows it);
//! - `exclude_kinds`: these kinds never pass;
//! - `cars`: records about a car pass only for these car/driver numbers; records about no car
//!   (weather, frames, session ends) pass;
//! - `sessions`: records of a session pass only for these session keys (text or numbers);
//!   records without a session (ticks, bounds) pass.
//!
//! ```toml
//! [transforms.only_lewis]
//! type = "filter"
//! inputs = ["f1"]
//! include_kinds = ["position", "lap", "session_end"]
//! # exclude_kinds = ["car_data"]
//! cars = [44]
//! # sessions = [9158]
//! ```

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io, Kinds,
    RecordKind, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::keys::{car_of, parse_kind_names, session_of};

/// A session key as written in a pipeline: `9158` or `"9158"`.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum SessionKeyOption {
    Number(i64),
    Text(String),
}

impl SessionKeyOption {
    fn text(&self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Text(t) => t.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Only these record kinds pass (kind names, e.g. "position", "lap").
    #[serde(default)]
    pub include_kinds: Option<Vec<String>>,
    /// These record kinds never pass.
    #[serde(default)]
    pub exclude_kinds: Vec<String>,
    /// Only records about these car/driver numbers pass; records about no car pass.
    #[serde(default)]
    pub cars: Option<Vec<u32>>,
    /// Only records of these session keys pass; records without a session pass.
    #[serde(default)]
    pub sessions: Option<Vec<SessionKeyOption>>,
}

impl FilterConfig {
    /// The kinds that can pass, as far as the options are valid.
    fn allowed(&self) -> Kinds {
        let included = match &self.include_kinds {
            Some(names) => parse_kind_names("include_kinds", names).unwrap_or_default(),
            None => RecordKind::ALL.to_vec(),
        };
        let excluded = parse_kind_names("exclude_kinds", &self.exclude_kinds).unwrap_or_default();
        let kept: Vec<RecordKind> = included
            .into_iter()
            .filter(|k| !excluded.contains(k))
            .collect();
        Kinds::of(&kept)
    }
}

impl ComponentConfig for FilterConfig {
    fn emits(&self) -> Kinds {
        if self.include_kinds.is_some() {
            self.allowed()
        } else {
            Kinds::passthrough()
        }
    }

    fn accepts(&self) -> Kinds {
        if self.include_kinds.is_some() {
            self.allowed()
        } else {
            Kinds::any()
        }
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if let Some(names) = &self.include_kinds {
            if let Err(problem) = parse_kind_names("include_kinds", names) {
                problems.push(problem);
            }
        }
        if let Err(problem) = parse_kind_names("exclude_kinds", &self.exclude_kinds) {
            problems.push(problem);
        }
        if problems.is_empty() && self.allowed().is_empty() {
            problems.push(OptionProblem::new(
                if self.include_kinds.is_some() {
                    "include_kinds"
                } else {
                    "exclude_kinds"
                },
                "no record kind is left to pass",
            ));
        }
        if self.cars.as_ref().is_some_and(|c| c.is_empty()) {
            problems.push(OptionProblem::new(
                "cars",
                "is empty: no record about a car would pass; remove the option to keep all cars",
            ));
        }
        if self.sessions.as_ref().is_some_and(|s| s.is_empty()) {
            problems.push(OptionProblem::new(
                "sessions",
                "is empty: no record of a session would pass; remove the option to keep all sessions",
            ));
        }
        problems
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        let mut cars = self.cars.clone();
        if let Some(cars) = &mut cars {
            cars.sort_unstable();
            cars.dedup();
        }
        Ok(Box::new(FilterComponent {
            predicate: Predicate {
                kinds: self.allowed(),
                cars,
                sessions: self
                    .sessions
                    .as_ref()
                    .map(|s| s.iter().map(SessionKeyOption::text).collect()),
            },
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<FilterConfig>(
        "filter",
        Role::Transform,
        "Keeps only some record kinds, cars or sessions",
    )
}

/// The filter's decision, without I/O.
pub struct Predicate {
    kinds: Kinds,
    /// Sorted.
    cars: Option<Vec<u32>>,
    sessions: Option<Vec<String>>,
}

impl Predicate {
    pub fn pass(&self, event: &Event) -> bool {
        if !self.kinds.contains(event.kind()) {
            return false;
        }
        if let Some(cars) = &self.cars {
            if let Some(car) = car_of(&event.record) {
                if cars.binary_search(&car).is_err() {
                    return false;
                }
            }
        }
        if let Some(sessions) = &self.sessions {
            if let Some(session) = session_of(&event.record) {
                if !sessions.iter().any(|s| *s == *session) {
                    return false;
                }
            }
        }
        true
    }
}

struct FilterComponent {
    predicate: Predicate,
}

#[async_trait]
impl Component for FilterComponent {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let Some(input) = io.input.as_mut() else {
            return Ok(());
        };
        while let Some(batch) = input.recv().await {
            if batch.iter().all(|e| self.predicate.pass(e)) {
                io.output.send_shared(batch).await;
            } else {
                let out: Vec<Event> = batch
                    .iter()
                    .filter(|e| self.predicate.pass(e))
                    .cloned()
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
    use pitwall_api::record::{CarPosition, SessionEnd, Weather};
    use pitwall_api::testing::{parse_config, run_config};
    use pitwall_api::Record;
    use std::sync::Arc;

    fn pos(session: &str, car: u32) -> Event {
        Event::new(
            0,
            Record::Position(CarPosition {
                session_key: session.into(),
                car,
                ..Default::default()
            }),
        )
    }

    fn weather(session: &str) -> Event {
        Event::new(
            0,
            Record::Weather(Arc::new(Weather {
                session_key: session.into(),
                ..Default::default()
            })),
        )
    }

    fn end(session: &str) -> Event {
        Event::new(
            0,
            Record::SessionEnd(SessionEnd {
                session_key: session.into(),
            }),
        )
    }

    fn input() -> Vec<Event> {
        vec![
            pos("1", 44),
            pos("1", 16),
            pos("2", 44),
            weather("1"),
            weather("2"),
            end("1"),
            Event::new(0, Record::Tick),
        ]
    }

    #[tokio::test]
    async fn cars_and_sessions() {
        let out = run_config::<FilterConfig>("cars = [44]\nsessions = [1]", input()).await;
        assert_eq!(
            out,
            vec![
                pos("1", 44),
                weather("1"),
                end("1"),
                Event::new(0, Record::Tick)
            ]
        );
    }

    #[tokio::test]
    async fn kinds() {
        let out = run_config::<FilterConfig>(
            "include_kinds = [\"position\", \"weather\"]\nexclude_kinds = [\"weather\"]\nsessions = [\"2\"]",
            input(),
        )
        .await;
        assert_eq!(out, vec![pos("2", 44)]);
        let out =
            run_config::<FilterConfig>("exclude_kinds = [\"position\", \"tick\"]", input()).await;
        assert_eq!(out, vec![weather("1"), weather("2"), end("1")]);
        // Nothing filtered: the batch passes as is.
        let out = run_config::<FilterConfig>("", input()).await;
        assert_eq!(out, input());
    }

    #[test]
    fn declared_kinds_and_checks() {
        let config: FilterConfig =
            parse_config("include_kinds = [\"position\", \"lap\"]\nexclude_kinds = [\"lap\"]");
        assert_eq!(config.emits(), Kinds::of(&[RecordKind::Position]));
        assert_eq!(config.accepts(), Kinds::of(&[RecordKind::Position]));
        assert!(config.check().is_empty());
        let open: FilterConfig = parse_config("cars = [1]");
        assert!(open.emits().is_passthrough());
        assert!(open.accepts().is_all());

        let bad: FilterConfig = parse_config("include_kinds = [\"frames\"]");
        let problems = bad.check();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "include_kinds[0]");
        assert!(problems[0].message.contains("frame, document"));
        let nothing: FilterConfig =
            parse_config("include_kinds = [\"lap\"]\nexclude_kinds = [\"lap\"]");
        assert_eq!(nothing.check()[0].key, "include_kinds");
        let empty: FilterConfig = parse_config("cars = []");
        assert_eq!(empty.check()[0].key, "cars");
    }
}
