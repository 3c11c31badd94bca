//! The JSON documents of one session, as the `cardputer` sink serves them at
//! `GET /session/{session_key}/{name}`.
//!
//! Each document is built from the records of its kind (see [`SessionDocuments::apply`]) and
//! serialized lazily: the first request after a change serializes it once into shared
//! [`Bytes`], later requests clone those bytes, and the next change drops them. A replay that
//! updates `intervals` every few milliseconds therefore costs nothing until someone asks, and a
//! thousand devices asking for `drivers` cost one serialization.
//!
//! | name             | built from        | shape                                                     |
//! |------------------|-------------------|-----------------------------------------------------------|
//! | `drivers`        | `driver`          | array, one per `driver_number` (latest wins), by number   |
//! | `track_layout`   | `track_layout`    | the latest layout object                                  |
//! | `race_metadata`  | `race_metadata`   | the latest metadata object                                |
//! | `session_info`   | `session`         | the latest session object                                 |
//! | `session_result` | `session_result`  | array, one per driver, by position (unclassified last)    |
//! | `laps`           | `lap`             | array, one per (driver, lap), by lap then driver          |
//! | `stints`         | `stint`           | array, one per (driver, stint), by driver then stint      |
//! | `intervals`      | `interval`        | array, every interval in arrival order                    |
//! | `positions`      | `race_position`   | array of `{date, driver_number, position, session_key}`   |
//! | `pit`            | `pit`             | array, every pit stop in arrival order                    |
//! | `starting_grid`  | `starting_grid`   | array, one per driver, by grid position                   |
//!
//! A `document` record `{name, body}` sets the document `name` to `body`, verbatim; for the
//! names above it overrides the built document from then on. A document that nothing has
//! filled yet does not exist (404), like an unknown name.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use pitwall_api::record::{
    format_iso8601_ns, Driver, GridSlot, Interval, Lap, Pit, RaceMetadata, Record, Session,
    SessionKey, SessionResultEntry, Stint, TrackLayout,
};
use serde::Serialize;

/// The documents built from records, in the order of [`Built::ALL`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Built {
    Drivers,
    TrackLayout,
    RaceMetadata,
    SessionInfo,
    SessionResult,
    Laps,
    Stints,
    Intervals,
    Positions,
    Pit,
    StartingGrid,
}

impl Built {
    const ALL: [Built; 11] = [
        Built::Drivers,
        Built::TrackLayout,
        Built::RaceMetadata,
        Built::SessionInfo,
        Built::SessionResult,
        Built::Laps,
        Built::Stints,
        Built::Intervals,
        Built::Positions,
        Built::Pit,
        Built::StartingGrid,
    ];

    fn name(self) -> &'static str {
        match self {
            Built::Drivers => "drivers",
            Built::TrackLayout => "track_layout",
            Built::RaceMetadata => "race_metadata",
            Built::SessionInfo => "session_info",
            Built::SessionResult => "session_result",
            Built::Laps => "laps",
            Built::Stints => "stints",
            Built::Intervals => "intervals",
            Built::Positions => "positions",
            Built::Pit => "pit",
            Built::StartingGrid => "starting_grid",
        }
    }

    fn from_name(name: &str) -> Option<Built> {
        Built::ALL
            .iter()
            .copied()
            .find(|built| built.name() == name)
    }
}

/// Names of the documents built from records (a `document` record may add others).
pub fn built_names() -> impl Iterator<Item = &'static str> {
    Built::ALL.iter().map(|built| built.name())
}

/// One entry of the `positions` document: OpenF1's `position` shape.
#[derive(Clone, Debug, Serialize)]
struct PositionEntry {
    date: String,
    driver_number: u32,
    position: u32,
    session_key: SessionKey,
}

/// The documents of one session and their cached serializations.
#[derive(Default)]
pub struct SessionDocuments {
    drivers: BTreeMap<u32, Arc<Driver>>,
    track_layout: Option<Arc<TrackLayout>>,
    race_metadata: Option<Arc<RaceMetadata>>,
    session_info: Option<Arc<Session>>,
    session_result: BTreeMap<u32, Arc<SessionResultEntry>>,
    /// Keyed by (lap_number, driver_number): lap order reads like a timing sheet.
    laps: BTreeMap<(u32, u32), Arc<Lap>>,
    /// Keyed by (driver_number, stint_number).
    stints: BTreeMap<(u32, u32), Arc<Stint>>,
    intervals: Vec<Arc<Interval>>,
    positions: Vec<PositionEntry>,
    pit: Vec<Arc<Pit>>,
    starting_grid: BTreeMap<u32, Arc<GridSlot>>,
    /// Documents set by `document` records, already serialized.
    overrides: HashMap<String, Bytes>,
    /// Serialized built documents; `None` until asked for, and again after a change.
    cache: [Option<Bytes>; Built::ALL.len()],
}

impl SessionDocuments {
    pub fn new() -> Self {
        Self::default()
    }

    /// Fold one record into the documents. Returns false for records that feed no document
    /// (frames, session ends, kinds this sink does not keep).
    pub fn apply(&mut self, time_ns: i64, record: &Record) -> bool {
        let changed = match record {
            Record::Driver(driver) => {
                self.drivers.insert(driver.driver_number, driver.clone());
                Built::Drivers
            }
            Record::TrackLayout(layout) => {
                self.track_layout = Some(layout.clone());
                Built::TrackLayout
            }
            Record::RaceMetadata(metadata) => {
                self.race_metadata = Some(metadata.clone());
                Built::RaceMetadata
            }
            Record::Session(session) => {
                self.session_info = Some(session.clone());
                Built::SessionInfo
            }
            Record::SessionResult(entry) => {
                self.session_result
                    .insert(entry.driver_number, entry.clone());
                Built::SessionResult
            }
            Record::Lap(lap) => {
                self.laps
                    .insert((lap.lap_number, lap.driver_number), lap.clone());
                Built::Laps
            }
            Record::Stint(stint) => {
                self.stints
                    .insert((stint.driver_number, stint.stint_number), stint.clone());
                Built::Stints
            }
            Record::Interval(interval) => {
                self.intervals.push(interval.clone());
                Built::Intervals
            }
            Record::RacePosition(position) => {
                self.positions.push(PositionEntry {
                    date: format_iso8601_ns(time_ns),
                    driver_number: position.car,
                    position: position.position,
                    session_key: position.session_key.clone(),
                });
                Built::Positions
            }
            Record::Pit(pit) => {
                self.pit.push(pit.clone());
                Built::Pit
            }
            Record::StartingGrid(slot) => {
                self.starting_grid.insert(slot.driver_number, slot.clone());
                Built::StartingGrid
            }
            Record::Document(document) => {
                match serde_json::to_vec(&document.body) {
                    Ok(body) => {
                        self.overrides
                            .insert(document.name.clone(), Bytes::from(body));
                    }
                    Err(error) => {
                        tracing::warn!(name = %document.name, %error, "document body does not serialize");
                        return false;
                    }
                }
                return true;
            }
            _ => return false,
        };
        self.cache[changed as usize] = None;
        true
    }

    /// The serialized document `name`, or `None` if there is no such document (yet).
    pub fn get(&mut self, name: &str) -> Option<Bytes> {
        if let Some(body) = self.overrides.get(name) {
            return Some(body.clone());
        }
        let built = Built::from_name(name)?;
        if let Some(body) = &self.cache[built as usize] {
            return Some(body.clone());
        }
        let body = match self.serialize(built)? {
            Ok(body) => Bytes::from(body),
            Err(error) => {
                tracing::warn!(name, %error, "document does not serialize");
                return None;
            }
        };
        self.cache[built as usize] = Some(body.clone());
        Some(body)
    }

    /// `None` while nothing has filled the document.
    fn serialize(&self, built: Built) -> Option<serde_json::Result<Vec<u8>>> {
        fn array<'a, T: Serialize + 'a>(
            items: impl ExactSizeIterator<Item = &'a T>,
        ) -> Option<serde_json::Result<Vec<u8>>> {
            if items.len() == 0 {
                return None;
            }
            let items: Vec<&T> = items.collect();
            Some(serde_json::to_vec(&items))
        }
        fn one<T: Serialize>(item: &Option<Arc<T>>) -> Option<serde_json::Result<Vec<u8>>> {
            item.as_ref().map(serde_json::to_vec)
        }
        match built {
            Built::Drivers => array(self.drivers.values()),
            Built::TrackLayout => one(&self.track_layout),
            Built::RaceMetadata => one(&self.race_metadata),
            Built::SessionInfo => one(&self.session_info),
            Built::SessionResult => {
                let mut entries: Vec<&Arc<SessionResultEntry>> =
                    self.session_result.values().collect();
                entries
                    .sort_by_key(|entry| (entry.position.unwrap_or(u32::MAX), entry.driver_number));
                array(entries.into_iter())
            }
            Built::Laps => array(self.laps.values()),
            Built::Stints => array(self.stints.values()),
            Built::Intervals => array(self.intervals.iter()),
            Built::Positions => array(self.positions.iter()),
            Built::Pit => array(self.pit.iter()),
            Built::StartingGrid => {
                let mut slots: Vec<&Arc<GridSlot>> = self.starting_grid.values().collect();
                slots.sort_by_key(|slot| (slot.position, slot.driver_number));
                array(slots.into_iter())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::record::{Document, RacePosition};

    fn json(bytes: Bytes) -> serde_json::Value {
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn drivers_are_deduplicated_and_cached_until_changed() {
        let mut docs = SessionDocuments::new();
        assert_eq!(docs.get("drivers"), None);
        let driver = |number, acronym: &str| {
            Record::Driver(Arc::new(Driver {
                session_key: "1".into(),
                driver_number: number,
                name_acronym: Some(acronym.into()),
                ..Default::default()
            }))
        };
        assert!(docs.apply(0, &driver(44, "HAM")));
        assert!(docs.apply(0, &driver(1, "VER")));
        let first = docs.get("drivers").unwrap();
        // Cached: the same allocation is handed out again.
        assert_eq!(first.as_ptr(), docs.get("drivers").unwrap().as_ptr());
        docs.apply(0, &driver(44, "LEW"));
        let doc = json(docs.get("drivers").unwrap());
        let acronyms: Vec<&str> = doc
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name_acronym"].as_str().unwrap())
            .collect();
        assert_eq!(acronyms, ["VER", "LEW"]);
    }

    #[test]
    fn positions_carry_the_event_date_and_overrides_win() {
        let mut docs = SessionDocuments::new();
        docs.apply(
            1_716_728_615_123_000_000,
            &Record::RacePosition(RacePosition {
                session_key: "9".into(),
                car: 16,
                position: 2,
            }),
        );
        let doc = json(docs.get("positions").unwrap());
        assert_eq!(
            doc,
            serde_json::json!([{"date": "2024-05-26T13:03:35.123000+00:00", "driver_number": 16, "position": 2, "session_key": "9"}])
        );
        docs.apply(
            0,
            &Record::Document(Arc::new(Document {
                session_key: "9".into(),
                name: "positions".into(),
                body: serde_json::json!({"custom": true}),
            })),
        );
        assert_eq!(
            json(docs.get("positions").unwrap()),
            serde_json::json!({"custom": true})
        );
        assert_eq!(docs.get("nope"), None);
        assert!(!docs.apply(0, &Record::Tick));
    }
}
