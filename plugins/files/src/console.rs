//! Sink `console`: events to standard output, for looking at a pipeline while it runs.
//!
//! Two formats:
//! - `json` (default): one JSON object per line, the serde form of an event, exactly what
//!   the `file` sink writes and the `file` source reads:
//!   `{"time_ns":5,"kind":"race_position","session_key":"9158","car":44,"position":1}`;
//! - `pretty`: `2024-05-26 13:03:35.123 race_position  {"session_key":"9158",...}` for
//!   people: the event time in UTC (or seconds since the session start for simulators that
//!   have no wall clock), the kind, then the payload.
//!
//! `kinds` limits what is printed (and is what the sink then declares it accepts). Output
//! goes through one locked, buffered writer per batch and is flushed after every batch. If
//! standard output goes away (a closed pipe) the sink keeps draining its input silently so
//! the rest of the graph is not disturbed.
//!
//! ```toml
//! [sinks.look]
//! type = "console"
//! inputs = ["f1"]
//! format = "json"          # or "pretty"
//! # kinds = ["lap", "race_control"]
//! ```

use std::io::{self, BufWriter, Write};

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::record::format_iso8601_ns;
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io, Kinds, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::{parse_kind_names, should_log};

/// How events are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleFormat {
    /// One JSON object per line (the event's serde form).
    #[default]
    Json,
    /// Time, kind and payload, for people.
    Pretty,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// "json" (one JSON object per line) or "pretty".
    #[serde(default)]
    pub format: ConsoleFormat,
    /// Print only these record kinds (kind names, e.g. "lap").
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
}

impl ConsoleConfig {
    fn kind_set(&self) -> Option<Kinds> {
        self.kinds
            .as_ref()
            .map(|names| Kinds::of(&parse_kind_names("kinds", names).unwrap_or_default()))
    }
}

impl ComponentConfig for ConsoleConfig {
    fn accepts(&self) -> Kinds {
        self.kind_set().unwrap_or_else(Kinds::any)
    }

    fn check(&self) -> Vec<OptionProblem> {
        match &self.kinds {
            Some(names) => parse_kind_names("kinds", names).err().into_iter().collect(),
            None => Vec::new(),
        }
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        Ok(Box::new(ConsoleSink {
            format: self.format,
            kinds: self.kind_set(),
            broken: false,
            unprintable: 0,
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<ConsoleConfig>(
        "console",
        Role::Sink,
        "Prints events to standard output as JSON lines or readable text",
    )
}

/// Write one event as one line. Nothing is written when the event cannot be rendered (a raw
/// JSON record that is not an object has no serde form): the error is returned instead.
pub fn write_event<W: Write>(
    out: &mut W,
    event: &Event,
    format: ConsoleFormat,
    scratch: &mut Vec<u8>,
) -> io::Result<()> {
    scratch.clear();
    match format {
        ConsoleFormat::Json => serde_json::to_writer(&mut *scratch, event)?,
        ConsoleFormat::Pretty => {
            // The record's serde form starts with its tag: `{"kind":"lap","session_key":..}`.
            // Print the kind in a column, then the rest of the fields in their own order.
            let payload = serde_json::to_vec(&event.record)?;
            write_time(scratch, event.time_ns)?;
            let name = event.kind().name();
            write!(scratch, " {name:<14}")?;
            let tag = format!("{{\"kind\":\"{name}\"");
            match payload.strip_prefix(tag.as_bytes()) {
                Some(b"}") => {}
                Some(rest) => {
                    scratch.extend_from_slice(b" {");
                    scratch.extend_from_slice(rest.strip_prefix(b",").unwrap_or(rest));
                }
                None => {
                    scratch.push(b' ');
                    scratch.extend_from_slice(&payload);
                }
            }
            while scratch.last() == Some(&b' ') {
                scratch.pop();
            }
        }
    }
    scratch.push(b'\n');
    out.write_all(scratch)
}

/// Event time for people: UTC date and time to the millisecond, or seconds for clocks that
/// count from a session start (anything before 1973).
fn write_time(out: &mut Vec<u8>, time_ns: i64) -> io::Result<()> {
    if time_ns >= 100_000_000_000_000_000 {
        let text = format_iso8601_ns(time_ns); // 2024-05-26T13:03:35.123000+00:00
        out.extend_from_slice(&text.as_bytes()[..10]);
        out.push(b' ');
        out.extend_from_slice(&text.as_bytes()[11..23]);
        Ok(())
    } else {
        write!(out, "{:.3}s", time_ns as f64 / 1e9)
    }
}

/// Write the events of `kinds` (all when `None`), one line each. Returns how many could not
/// be rendered and were skipped; an error only for a failing writer.
pub fn write_batch<W: Write>(
    out: &mut W,
    events: &[Event],
    format: ConsoleFormat,
    kinds: Option<&Kinds>,
) -> io::Result<u64> {
    let mut scratch = Vec::with_capacity(256);
    let mut skipped = 0;
    for event in events {
        if kinds.is_some_and(|k| !k.contains(event.kind())) {
            continue;
        }
        match write_event(out, event, format, &mut scratch) {
            Ok(()) => {}
            // Rendering errors come from serde_json; writer errors are io errors.
            Err(error) if error.get_ref().is_some_and(|e| e.is::<serde_json::Error>()) => {
                skipped += 1;
            }
            Err(error) => return Err(error),
        }
    }
    Ok(skipped)
}

struct ConsoleSink {
    format: ConsoleFormat,
    kinds: Option<Kinds>,
    /// Standard output failed (closed pipe): drain without printing.
    broken: bool,
    unprintable: u64,
}

impl ConsoleSink {
    fn print(&self, events: &[Event]) -> io::Result<u64> {
        let stdout = io::stdout();
        let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
        let skipped = write_batch(&mut out, events, self.format, self.kinds.as_ref())?;
        out.flush()?;
        Ok(skipped)
    }
}

#[async_trait]
impl Component for ConsoleSink {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let Some(input) = io.input.as_mut() else {
            return Ok(());
        };
        while let Some(batch) = input.recv().await {
            if self.broken {
                continue;
            }
            match self.print(&batch) {
                Ok(0) => {}
                Ok(skipped) => {
                    for _ in 0..skipped {
                        io.metrics.add_error();
                    }
                    self.unprintable += skipped;
                    if should_log(self.unprintable) {
                        tracing::warn!(
                            count = self.unprintable,
                            "console: skipped events that have no JSON form"
                        );
                    }
                }
                Err(error) => {
                    io.metrics.add_error();
                    tracing::warn!(%error, "console: standard output failed; no more output from this sink");
                    self.broken = true;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::record::{RacePosition, Record};
    use pitwall_api::testing::parse_config;
    use pitwall_api::RecordKind;
    use std::sync::Arc;

    fn race_position(time_ns: i64) -> Event {
        Event::new(
            time_ns,
            Record::RacePosition(RacePosition {
                session_key: "9158".into(),
                car: 44,
                position: 1,
            }),
        )
    }

    #[test]
    fn json_lines_are_the_event_serde_form() {
        let mut out = Vec::new();
        let events = vec![race_position(5), Event::new(7, Record::Tick)];
        let skipped = write_batch(&mut out, &events, ConsoleFormat::Json, None).unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"time_ns\":5,\"kind\":\"race_position\",\"session_key\":\"9158\",\"car\":44,\"position\":1}\n\
             {\"time_ns\":7,\"kind\":\"tick\"}\n"
        );
    }

    #[test]
    fn pretty_lines_for_people() {
        let mut out = Vec::new();
        let events = vec![
            race_position(1_716_728_615_123_000_000),
            Event::new(2_500_000_000, Record::Tick),
        ];
        write_batch(&mut out, &events, ConsoleFormat::Pretty, None).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2024-05-26 13:03:35.123 race_position  {\"session_key\":\"9158\",\"car\":44,\"position\":1}\n\
             2.500s tick\n"
        );
    }

    #[test]
    fn kinds_filter_and_unprintable_events() {
        let mut out = Vec::new();
        let events = vec![
            race_position(1),
            Event::new(2, Record::Tick),
            // A raw JSON array has no place for `kind`: it cannot be rendered.
            Event::new(3, Record::Json(Arc::new(serde_json::json!([1, 2])))),
            Event::new(4, Record::Json(Arc::new(serde_json::json!({"a": 1})))),
        ];
        let kinds = Kinds::of(&[RecordKind::Tick, RecordKind::Json]);
        let skipped = write_batch(&mut out, &events, ConsoleFormat::Json, Some(&kinds)).unwrap();
        assert_eq!(skipped, 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"time_ns\":2,\"kind\":\"tick\"}\n{\"time_ns\":4,\"kind\":\"json\",\"a\":1}\n"
        );
    }

    #[test]
    fn options() {
        let config: ConsoleConfig = parse_config("format = \"pretty\"\nkinds = [\"lap\"]");
        assert_eq!(config.format, ConsoleFormat::Pretty);
        assert_eq!(config.accepts(), Kinds::of(&[RecordKind::Lap]));
        assert!(config.check().is_empty());
        let bad: ConsoleConfig = parse_config("kinds = [\"laps\"]");
        assert_eq!(bad.check()[0].key, "kinds[0]");
        let all: ConsoleConfig = parse_config("");
        assert!(all.accepts().is_all());
    }

    #[tokio::test]
    async fn sink_drains_its_input() {
        let out = pitwall_api::testing::run_config::<ConsoleConfig>(
            "kinds = [\"tick\"]",
            vec![race_position(1)],
        )
        .await;
        assert!(out.is_empty(), "a sink emits nothing");
    }
}
