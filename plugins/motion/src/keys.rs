//! "Which car, which session" for any record: the keys `decimate` and `filter` group and
//! select by.
//!
//! Records name their car `car` (positions, telemetry) or `driver_number` (OpenF1 documents);
//! both mean the same number. Session-wide records (weather, frames, layouts, metadata) have no
//! car. A [`ReferencePath`](pitwall_api::record::ReferencePath) is treated as session-wide too:
//! it describes the circuit, so filtering cars must not remove the outline's raw material.
//!
//! Raw JSON records are looked into for OpenF1's `driver_number` and `session_key` fields, so
//! a generic `file` source replaying OpenF1 documents can be filtered the same way.

use std::borrow::Cow;

use pitwall_api::component::OptionProblem;
use pitwall_api::record::{Record, RecordKind};

/// The car or driver number a record is about, if it is about one car.
pub fn car_of(record: &Record) -> Option<u32> {
    match record {
        Record::Json(value) => value
            .get("driver_number")
            .and_then(|n| n.as_u64())
            .and_then(|n| u32::try_from(n).ok()),
        typed => typed.car(),
    }
}

/// The session key a record belongs to, if it carries one. Borrowed for typed records;
/// owned only for raw JSON whose `session_key` is a number.
pub fn session_of(record: &Record) -> Option<Cow<'_, str>> {
    if let Record::Json(value) = record {
        return match value.get("session_key")? {
            serde_json::Value::String(text) => Some(Cow::Borrowed(text.as_str())),
            serde_json::Value::Number(n) => Some(Cow::Owned(n.to_string())),
            _ => None,
        };
    }
    let key: &str = record.session_key()?;
    // A layout that went through JSON loses its key (it is not serialised): treat an empty
    // key as "no session" rather than as a session named "".
    (!key.is_empty()).then_some(Cow::Borrowed(key))
}

/// Parse a list of kind names from an option, reporting unknown names under `key`.
pub fn parse_kind_names(key: &str, names: &[String]) -> Result<Vec<RecordKind>, OptionProblem> {
    let mut kinds = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        match RecordKind::from_name(name) {
            Some(kind) => kinds.push(kind),
            None => {
                return Err(OptionProblem::new(
                    format!("{key}[{i}]"),
                    format!(
                        "unknown record kind `{name}`; valid kinds are: {}",
                        valid_kind_names()
                    ),
                ))
            }
        }
    }
    Ok(kinds)
}

/// Every kind name, comma separated, for error messages.
pub fn valid_kind_names() -> String {
    RecordKind::ALL
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Log the first few occurrences of a recurring problem, then every 1000th.
pub(crate) fn should_log(count: u64) -> bool {
    count <= 5 || count % 1000 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::record::{CarPosition, Lap, SessionEnd, Weather};
    use std::sync::Arc;

    #[test]
    fn cars_and_sessions_of_records() {
        let position = Record::Position(CarPosition {
            session_key: "9158".into(),
            car: 44,
            ..Default::default()
        });
        assert_eq!(car_of(&position), Some(44));
        assert_eq!(session_of(&position).as_deref(), Some("9158"));

        let lap = Record::Lap(Arc::new(Lap {
            session_key: "1".into(),
            driver_number: 16,
            ..Default::default()
        }));
        assert_eq!(car_of(&lap), Some(16));

        let weather = Record::Weather(Arc::new(Weather {
            session_key: "7".into(),
            ..Default::default()
        }));
        assert_eq!(car_of(&weather), None);
        assert_eq!(session_of(&weather).as_deref(), Some("7"));

        assert_eq!(car_of(&Record::Tick), None);
        assert_eq!(session_of(&Record::Tick), None);
        let end = Record::SessionEnd(SessionEnd {
            session_key: "".into(),
        });
        assert_eq!(session_of(&end), None);

        let json = Record::Json(Arc::new(
            serde_json::json!({"session_key": 9158, "driver_number": 1}),
        ));
        assert_eq!(car_of(&json), Some(1));
        assert_eq!(session_of(&json).as_deref(), Some("9158"));
    }

    #[test]
    fn kind_names_are_checked() {
        let ok = parse_kind_names("k", &["position".into(), "car_data".into()]).unwrap();
        assert_eq!(ok, vec![RecordKind::Position, RecordKind::CarData]);
        let err = parse_kind_names("k", &["position".into(), "postion".into()]).unwrap_err();
        assert_eq!(err.key, "k[1]");
        assert!(err.message.contains("postion") && err.message.contains("race_position"));
    }
}
