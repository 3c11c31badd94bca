//! Live mode: poll the OpenF1 REST API and emit what is new.
//!
//! Every `poll_interval_ms`:
//! - `location` and `car_data` for all drivers, but only after a `date>` cursor (the newest
//!   sample seen; at the start, the last 30 s): one small query each instead of one per driver
//!   per second, which the rate limit would never allow;
//! - `position` and `intervals` after their own cursors (their whole history on the first poll).
//!
//! Every 3 polls `race_control`, `weather` and `pit` (cursors too); every 5 polls the documents
//! `drivers`, `laps`, `stints` and `session_result`, re-fetched whole and emitted row by row
//! when a row is new or changed (a lap appears when it starts and changes when it completes).
//! The token bucket paces all of it: with the free tier's 30 requests per 10 s a poll cycle
//! takes longer than a second.
//!
//! Time-series records carry their own `date`, sorted within each poll's batch. Documents lead
//! their batch (consumers learn the session and drivers before their data), stamped with the
//! batch's first instant. Ticks follow the newest data time.
//! Reference paths are emitted as they become known: a new fastest lap or a pit pass, once the
//! recent location samples (kept for a few minutes) cover it.
//!
//! The session ends (a `SessionEnd`, then the source finishes) when its scheduled end is more
//! than 30 minutes past and nothing new came for 10 minutes. Rejected credentials end the run
//! with an error (the engine retries with backoff); any other failed request is counted, logged
//! and tried again at the next poll.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use pitwall_api::record::{
    format_iso8601_ns, parse_iso8601_ns, Driver, Event, GridSlot, Interval, Lap, Pit,
    RaceControlMessage, Record, Session, SessionEnd, SessionKey, SessionResultEntry, Stint,
    Weather,
};
use pitwall_api::{ComponentError, Io};
use serde::Deserialize;
use tokio::time::Instant;

use super::cache::{merge_drivers, now_ns};
use super::fetch::{self, Api, FetchError};
use super::reference;
use super::rows::{self, CarSample, DateOnly, LocationSample, Skipped};
use super::{worth_logging, OpenF1Config};

/// Location and car data kept per driver for reference paths.
const BUFFER_NS: i64 = 240_000_000_000;
/// How far back the first location/car_data poll reaches.
const FIRST_WINDOW_NS: i64 = 30_000_000_000;
const SLOW_EVERY: u64 = 3;
const DOCUMENTS_EVERY: u64 = 5;

pub async fn run(config: &OpenF1Config, io: &mut Io) -> Result<(), ComponentError> {
    let api = Api::new(config)?;
    let session_key = match config.session_key.fixed() {
        Some(key) => key,
        None => tokio::select! {
            key = fetch::resolve_session_key(&api, "latest") => key?,
            _ = io.shutdown.triggered() => return Ok(()),
        },
    };
    tracing::info!(session_key, "openf1: polling live");
    let mut live = Live::new(session_key, config.tick_ms);
    let interval = Duration::from_millis(config.poll_interval_ms.max(1));
    let mut cycle = 0u64;
    loop {
        let started = Instant::now();
        let outcome = tokio::select! {
            outcome = live.poll(&api, cycle) => outcome,
            _ = io.shutdown.triggered() => return Ok(()),
        };
        for error in &outcome.errors {
            io.metrics.add_error();
            live.failures += 1;
            if worth_logging(live.failures) {
                tracing::warn!(%error, failures = live.failures, "openf1: live poll failed; trying again");
            }
        }
        if outcome.skipped.rows > 0 {
            io.metrics.add_discarded(outcome.skipped.rows as usize);
        }
        let mut events = outcome.events;
        let finished = live.finished();
        if finished {
            events.push(Event::new(
                live.clock(),
                Record::SessionEnd(SessionEnd {
                    session_key: live.key.clone(),
                }),
            ));
        }
        if !events.is_empty() {
            tokio::select! {
                _ = io.output.send(events) => {}
                _ = io.shutdown.triggered() => return Ok(()),
            }
        }
        if let Some(fatal) = outcome.fatal {
            return Err(fatal.into());
        }
        if finished {
            return Ok(());
        }
        cycle += 1;
        tokio::select! {
            _ = tokio::time::sleep_until(started + interval) => {}
            _ = io.shutdown.triggered() => return Ok(()),
        }
    }
}

/// What one poll produced.
#[derive(Default)]
pub struct PollOutcome {
    /// Sorted by time.
    pub events: Vec<Event>,
    pub errors: Vec<FetchError>,
    /// An error that makes polling pointless (rejected credentials).
    pub fatal: Option<FetchError>,
    pub skipped: Skipped,
}

/// The state of a live session between polls.
pub struct Live {
    key_number: u64,
    pub key: SessionKey,
    session_sent: bool,
    scheduled_end: Option<i64>,
    /// Newest row time per time-series endpoint.
    cursors: HashMap<&'static str, i64>,
    drivers: HashMap<u32, Arc<Driver>>,
    laps: HashMap<(u32, u32), Arc<Lap>>,
    stints: HashMap<(u32, u32), Arc<Stint>>,
    results: HashMap<u32, Arc<SessionResultEntry>>,
    grid_sent: bool,
    location: HashMap<u32, VecDeque<LocationSample>>,
    car_data: HashMap<u32, VecDeque<CarSample>>,
    best_lap_s: f64,
    pending_pits: Vec<Pit>,
    pit_path_sent: bool,
    /// Newest time-series time seen, and the tick grid behind it.
    newest: Option<i64>,
    pub(crate) next_tick: Option<i64>,
    tick_ns: i64,
    last_news: Instant,
    pub failures: u64,
}

impl Live {
    pub fn new(session_key: u64, tick_ms: u64) -> Self {
        Self {
            key_number: session_key,
            key: session_key.to_string().into(),
            session_sent: false,
            scheduled_end: None,
            cursors: HashMap::new(),
            drivers: HashMap::new(),
            laps: HashMap::new(),
            stints: HashMap::new(),
            results: HashMap::new(),
            grid_sent: false,
            location: HashMap::new(),
            car_data: HashMap::new(),
            best_lap_s: f64::INFINITY,
            pending_pits: Vec::new(),
            pit_path_sent: false,
            newest: None,
            next_tick: None,
            tick_ns: i64::try_from(tick_ms.max(1)).unwrap_or(100) * 1_000_000,
            last_news: Instant::now(),
            failures: 0,
        }
    }

    /// The stream's current event time: the newest data seen, else the wall clock.
    fn clock(&self) -> i64 {
        self.newest.unwrap_or_else(now_ns)
    }

    fn finished(&self) -> bool {
        let Some(end) = self.scheduled_end else {
            return false;
        };
        now_ns() > end + 30 * 60_000_000_000 && self.last_news.elapsed() > Duration::from_secs(600)
    }

    fn by_session(&self) -> (&'static str, &'static str, String) {
        ("session_key", "=", self.key_number.to_string())
    }

    /// `session_key=K` plus `date>cursor` when the endpoint has one.
    async fn after_cursor(
        &self,
        api: &Api,
        endpoint: &'static str,
        default_from: Option<i64>,
    ) -> Result<String, FetchError> {
        let mut filters = vec![self.by_session()];
        if let Some(from) = self.cursors.get(endpoint).copied().or(default_from) {
            filters.push(("date", ">", format_iso8601_ns(from)));
        }
        api.get(endpoint, &filters).await
    }

    fn advance(&mut self, endpoint: &'static str, text: &str) {
        let newest = serde_json::from_str::<Vec<DateOnly<'_>>>(text)
            .ok()
            .and_then(|rows| {
                rows.iter()
                    .filter_map(|row| row.date.as_deref().and_then(parse_iso8601_ns))
                    .max()
            });
        if let Some(newest) = newest {
            let cursor = self.cursors.entry(endpoint).or_insert(newest);
            *cursor = (*cursor).max(newest);
            self.last_news = Instant::now();
        }
    }

    /// Keep a location sample for reference paths.
    pub(crate) fn keep_location(&mut self, car: u32, sample: LocationSample) {
        self.location.entry(car).or_default().push_back(sample);
    }

    /// Keep a car_data sample for reference paths (pit lane detection).
    pub(crate) fn keep_car_data(&mut self, car: u32, sample: CarSample) {
        self.car_data.entry(car).or_default().push_back(sample);
    }

    /// Store a lap; whether it was new or changed.
    pub(crate) fn keep_lap(&mut self, lap: Lap) -> bool {
        changed(&mut self.laps, (lap.driver_number, lap.lap_number), lap)
    }

    /// A pit stop whose pass may become a reference path.
    pub(crate) fn keep_pit(&mut self, pit: Pit) {
        if !self.pit_path_sent {
            self.pending_pits.push(pit);
        }
    }

    /// Data up to `time_ns` has been seen.
    pub(crate) fn saw_data_at(&mut self, time_ns: i64) {
        self.newest = Some(self.newest.map_or(time_ns, |n| n.max(time_ns)));
    }

    /// The newest data time seen.
    pub(crate) fn newest(&self) -> Option<i64> {
        self.newest
    }

    /// Drop samples older than a few minutes, then the reference paths that became known
    /// (only looked for when laps changed or pit passes are pending).
    pub(crate) fn housekeeping(&mut self, laps_changed: bool) -> Vec<Record> {
        let horizon = self.clock() - BUFFER_NS;
        for buffer in self.location.values_mut() {
            while buffer.front().is_some_and(|s| s.time_ns < horizon) {
                buffer.pop_front();
            }
            buffer.make_contiguous();
        }
        for buffer in self.car_data.values_mut() {
            while buffer.front().is_some_and(|s| s.time_ns < horizon) {
                buffer.pop_front();
            }
            buffer.make_contiguous();
        }
        if laps_changed || !self.pending_pits.is_empty() {
            self.reference_paths()
        } else {
            Vec::new()
        }
    }

    /// One poll cycle.
    pub async fn poll(&mut self, api: &Api, cycle: u64) -> PollOutcome {
        let mut out = PollOutcome::default();
        let mut documents: Vec<Record> = Vec::new();
        let mut timed: Vec<Event> = Vec::new();

        if !self.session_sent {
            match self.session(api).await {
                Ok(session) => {
                    documents.push(Record::Session(Arc::new(session)));
                    self.session_sent = true;
                }
                Err(error) => {
                    self.fail(&mut out, error);
                    return out;
                }
            }
        }
        let first_from = now_ns() - FIRST_WINDOW_NS;
        let key = self.key.clone();

        match self.after_cursor(api, "location", Some(first_from)).await {
            Ok(text) => {
                self.advance("location", &text);
                match rows::location_rows(&text, &mut out.skipped) {
                    Ok(samples) => {
                        for (car, sample) in samples {
                            timed.push(Event::new(
                                sample.time_ns,
                                Record::Position(sample.to_record(&key, car)),
                            ));
                            self.keep_location(car, sample);
                        }
                    }
                    Err(_) => out.skipped.files += 1,
                }
            }
            Err(error) => self.fail(&mut out, error),
        }
        match self.after_cursor(api, "car_data", Some(first_from)).await {
            Ok(text) => {
                self.advance("car_data", &text);
                if let Ok(samples) = rows::car_rows(&text, &mut out.skipped) {
                    for (car, sample) in samples {
                        timed.push(Event::new(
                            sample.time_ns,
                            Record::CarData(sample.to_record(&key, car)),
                        ));
                        self.keep_car_data(car, sample);
                    }
                } else {
                    out.skipped.files += 1;
                }
            }
            Err(error) => self.fail(&mut out, error),
        }
        match self.after_cursor(api, "position", None).await {
            Ok(text) => {
                self.advance("position", &text);
                match rows::race_positions(&text, &key, &mut out.skipped) {
                    Ok(rows) => timed.extend(
                        rows.into_iter()
                            .map(|(t, row)| Event::new(t, Record::RacePosition(row))),
                    ),
                    Err(_) => out.skipped.files += 1,
                }
            }
            Err(error) => self.fail(&mut out, error),
        }
        self.dated::<Interval>(api, "intervals", &mut out, &mut timed, |row| {
            (row.date.clone(), Record::Interval(Arc::new(row)))
        })
        .await;
        if cycle.is_multiple_of(SLOW_EVERY) {
            self.dated::<RaceControlMessage>(api, "race_control", &mut out, &mut timed, |row| {
                (row.date.clone(), Record::RaceControl(Arc::new(row)))
            })
            .await;
            self.dated::<Weather>(api, "weather", &mut out, &mut timed, |row| {
                (row.date.clone(), Record::Weather(Arc::new(row)))
            })
            .await;
            let mut pits = Vec::new();
            self.dated::<Pit>(api, "pit", &mut out, &mut timed, |row| {
                pits.push(row.clone());
                (row.date.clone(), Record::Pit(Arc::new(row)))
            })
            .await;
            self.pending_pits.extend(pits);
        }
        let mut laps_changed = false;
        if cycle.is_multiple_of(DOCUMENTS_EVERY) {
            laps_changed = self.documents(api, &mut out, &mut documents).await;
        }

        if let Some(newest) = timed.iter().map(|e| e.time_ns).max() {
            self.saw_data_at(newest);
        }
        documents.extend(self.housekeeping(laps_changed));

        if let Some(newest) = self.newest {
            let mut tick = self
                .next_tick
                .unwrap_or(newest)
                .max(newest - 10 * self.tick_ns);
            while tick <= newest {
                timed.push(Event::new(tick, Record::Tick));
                tick += self.tick_ns;
            }
            self.next_tick = Some(tick);
        }
        // Stable: at one instant, data before the tick that follows it.
        timed.sort_by_key(|event| (event.time_ns, matches!(event.record, Record::Tick)));
        // Documents first, so that consumers know the session and drivers before their data,
        // stamped with the batch's first instant so that time never goes back in a batch.
        let stamp = timed
            .first()
            .map_or_else(|| self.clock(), |event| event.time_ns);
        out.events = documents
            .into_iter()
            .map(|record| Event::new(stamp, record))
            .chain(timed)
            .collect();
        out
    }

    fn fail(&mut self, out: &mut PollOutcome, error: FetchError) {
        let fatal = matches!(error, FetchError::Auth(_))
            || matches!(
                error,
                FetchError::Status {
                    status: 401 | 403,
                    ..
                }
            );
        if fatal {
            out.fatal = Some(error);
        } else {
            out.errors.push(error);
        }
    }

    async fn session(&mut self, api: &Api) -> Result<Session, FetchError> {
        let text = api.get("sessions", &[self.by_session()]).await?;
        let mut skipped = Skipped::default();
        let sessions: Vec<Session> =
            rows::records(&text, &self.key, &mut skipped).map_err(|e| FetchError::Json {
                what: "sessions".into(),
                message: e.to_string(),
            })?;
        let mut session = sessions
            .into_iter()
            .next()
            .ok_or_else(|| FetchError::NoSession(self.key.to_string()))?;
        self.scheduled_end = session.date_end.as_deref().and_then(parse_iso8601_ns);
        if let Some(meeting) = session.meeting_key {
            #[derive(Deserialize)]
            struct Meeting {
                #[serde(default)]
                meeting_name: Option<String>,
            }
            if let Ok(text) = api
                .get("meetings", &[("meeting_key", "=", meeting.to_string())])
                .await
            {
                let meetings: Vec<Meeting> = serde_json::from_str(&text).unwrap_or_default();
                session.meeting_name = meetings.into_iter().find_map(|m| m.meeting_name);
            }
        }
        Ok(session)
    }

    /// A cursor-polled endpoint whose rows become records of type `T` with a `date`.
    async fn dated<T: serde::de::DeserializeOwned>(
        &mut self,
        api: &Api,
        endpoint: &'static str,
        out: &mut PollOutcome,
        timed: &mut Vec<Event>,
        mut convert: impl FnMut(T) -> (Option<String>, Record),
    ) {
        let text = match self.after_cursor(api, endpoint, None).await {
            Ok(text) => text,
            Err(error) => return self.fail(out, error),
        };
        self.advance(endpoint, &text);
        match rows::records::<T>(&text, &self.key, &mut out.skipped) {
            Ok(rows) => {
                for row in rows {
                    let (date, record) = convert(row);
                    match date.as_deref().and_then(parse_iso8601_ns) {
                        Some(time) => timed.push(Event::new(time, record)),
                        None => out.skipped.rows += 1,
                    }
                }
            }
            Err(_) => out.skipped.files += 1,
        }
    }

    /// Re-fetch the documents; emit new and changed rows. Returns whether laps changed.
    async fn documents(
        &mut self,
        api: &Api,
        out: &mut PollOutcome,
        records: &mut Vec<Record>,
    ) -> bool {
        let key = self.key.clone();
        if let Some(rows) = self.document::<Driver>(api, "drivers", out).await {
            for driver in merge_drivers(rows) {
                if changed(&mut self.drivers, driver.driver_number, driver.clone()) {
                    records.push(Record::Driver(Arc::new(driver)));
                }
            }
        }
        let mut laps_changed = false;
        if let Some(rows) = self.document::<Lap>(api, "laps", out).await {
            for lap in rows {
                if changed(
                    &mut self.laps,
                    (lap.driver_number, lap.lap_number),
                    lap.clone(),
                ) {
                    laps_changed = true;
                    records.push(Record::Lap(Arc::new(lap)));
                }
            }
        }
        if let Some(rows) = self.document::<Stint>(api, "stints", out).await {
            for stint in rows {
                if changed(
                    &mut self.stints,
                    (stint.driver_number, stint.stint_number),
                    stint.clone(),
                ) {
                    records.push(Record::Stint(Arc::new(stint)));
                }
            }
        }
        if let Some(rows) = self
            .document::<SessionResultEntry>(api, "session_result", out)
            .await
        {
            for result in rows {
                if changed(&mut self.results, result.driver_number, result.clone()) {
                    records.push(Record::SessionResult(Arc::new(result)));
                }
            }
        }
        if !self.grid_sent {
            // Best effort, once: OpenF1 usually files the grid under the qualifying session.
            if let Some(rows) = self.document::<GridSlot>(api, "starting_grid", out).await {
                self.grid_sent = true;
                records.extend(rows.into_iter().map(|mut slot| {
                    slot.session_key = key.clone();
                    Record::StartingGrid(Arc::new(slot))
                }));
            }
        }
        laps_changed
    }

    async fn document<T: serde::de::DeserializeOwned>(
        &mut self,
        api: &Api,
        endpoint: &str,
        out: &mut PollOutcome,
    ) -> Option<Vec<T>> {
        match api.get(endpoint, &[self.by_session()]).await {
            Ok(text) => match rows::records::<T>(&text, &self.key, &mut out.skipped) {
                Ok(rows) => Some(rows),
                Err(_) => {
                    out.skipped.files += 1;
                    None
                }
            },
            Err(error) => {
                self.fail(out, error);
                None
            }
        }
    }

    /// A new fastest lap or the first pit pass, when the buffered samples cover it.
    fn reference_paths(&mut self) -> Vec<Record> {
        let mut records = Vec::new();
        let location = |driver: u32| self.location.get(&driver).map(|b| b.as_slices().0);
        let covered = |driver: u32, from: i64, to: i64| {
            self.location.get(&driver).is_some_and(|b| {
                b.front().is_some_and(|s| s.time_ns <= from)
                    && b.back().is_some_and(|s| s.time_ns >= to)
            })
        };
        let candidates: Vec<Lap> = self
            .laps
            .values()
            .filter(|lap| lap.lap_duration.is_some_and(|d| d < self.best_lap_s))
            .filter(|lap| {
                let start = lap.date_start.as_deref().and_then(parse_iso8601_ns);
                let duration = lap.lap_duration.unwrap_or(0.0);
                start.is_some_and(|s| covered(lap.driver_number, s, s + (duration * 1e9) as i64))
            })
            .map(|lap| (**lap).clone())
            .collect();
        if let Some(path) = reference::fastest_lap_path(&self.key, &candidates, location) {
            let duration = candidates
                .iter()
                .find(|lap| {
                    lap.driver_number == path.car && Some(lap.lap_number) == path.lap_number
                })
                .and_then(|lap| lap.lap_duration);
            self.best_lap_s = duration.unwrap_or(self.best_lap_s);
            records.push(Record::ReferencePath(Arc::new(path)));
        }
        if !self.pit_path_sent {
            let newest = self.clock();
            // A pass needs samples until well after the pit record: wait for them.
            let ready: Vec<Pit> = self
                .pending_pits
                .iter()
                .filter(|pit| {
                    let time = pit
                        .date
                        .as_deref()
                        .and_then(parse_iso8601_ns)
                        .unwrap_or(i64::MAX);
                    let lane = (pit.lane_duration.unwrap_or(25.0).clamp(0.0, 120.0) * 1e9) as i64;
                    time.saturating_add(lane + 20_000_000_000) <= newest
                })
                .cloned()
                .collect();
            let car_data = |driver: u32| self.car_data.get(&driver).map(|b| b.as_slices().0);
            if let Some(path) = reference::pit_lane_path(&self.key, &ready, location, car_data) {
                self.pit_path_sent = true;
                records.push(Record::ReferencePath(Arc::new(path)));
            }
            let ready: HashSet<Option<String>> = ready.into_iter().map(|pit| pit.date).collect();
            self.pending_pits.retain(|pit| !ready.contains(&pit.date));
        }
        if self.pit_path_sent {
            self.pending_pits.clear();
        }
        records
    }
}

/// Store `value` under `key`; whether it was new or different.
fn changed<K: std::hash::Hash + Eq, V: PartialEq>(
    map: &mut HashMap<K, Arc<V>>,
    key: K,
    value: V,
) -> bool {
    match map.get(&key) {
        Some(known) if **known == value => false,
        _ => {
            map.insert(key, Arc::new(value));
            true
        }
    }
}
