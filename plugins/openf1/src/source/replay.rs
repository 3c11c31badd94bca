//! Replay of a cached session: preamble, then every time series merged in time order, paced.
//!
//! The merge is lazy: per-driver series stay in their compact form and become records only as
//! they are sent, a batch at a time, so memory stays at the size of the cache's samples rather
//! than of a million [`Event`]s. A binary heap over the streams (one per driver and series,
//! one for the small series, one for ticks) yields the next event; ties go to data before the
//! tick at the same instant, since a tick says "event time has reached t".

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;
use std::sync::Arc;

use pitwall_api::pacing::Pacer;
use pitwall_api::record::{Event, Record, RecordKind, SessionEnd, SessionKey};
use pitwall_api::{ComponentError, Io};

use super::cache::{self, SessionData};
use super::fetch::{self, Api};
use super::reference;
use super::{OpenF1Config, StartAt};
use crate::race::reference_start_ns;

/// Events per batch when the replay runs ahead of the clock (speed 0, or catching up).
const MAX_BATCH: usize = 1024;

/// `"latest"`: OpenF1's answer when it can be reached. When it cannot (no network at the
/// track, the API down) and the cache holds a downloaded session, the newest of those is
/// replayed after one attempt, with a warning, instead of failing a replay that needs no
/// network. With nothing cached the question is retried as any other request.
async fn resolve_latest(api: &Api, cache_root: &Path) -> Result<u64, fetch::FetchError> {
    let Some(cached) = cache::newest_downloaded_session(cache_root) else {
        return fetch::resolve_session_key(api, "latest").await;
    };
    match fetch::resolve_session_key_once(api, "latest").await {
        Ok(key) => Ok(key),
        Err(error) if error.is_transient() => {
            tracing::warn!(
                %error,
                session_key = cached,
                cache_dir = %cache_root.display(),
                "openf1: cannot ask OpenF1 for the latest session; replaying the newest downloaded one"
            );
            Ok(cached)
        }
        Err(error) => Err(error),
    }
}

/// Download the session if the cache is not complete, load it, and replay it.
pub async fn run(
    config: &OpenF1Config,
    cache_root: &Path,
    io: &mut Io,
) -> Result<(), ComponentError> {
    let session_key = match config.session_key.fixed() {
        Some(key) => key,
        None => {
            let api = Api::new(config)?;
            tokio::select! {
                key = resolve_latest(&api, cache_root) => key?,
                _ = io.shutdown.triggered() => return Ok(()),
            }
        }
    };
    let dir = cache::session_dir(cache_root, session_key);
    if !cache::is_complete(&dir) {
        let api = Api::new(config)?;
        let options = fetch::DownloadOptions {
            window_minutes: config.window_minutes,
            progress: None,
        };
        tracing::info!(session_key, dir = %dir.display(), "openf1: downloading the session into the cache");
        tokio::select! {
            done = fetch::download_session(&api, &dir, session_key, &options) => done?,
            _ = io.shutdown.triggered() => return Ok(()),
        }
    }
    let load_dir = dir.clone();
    let started = std::time::Instant::now();
    let data = tokio::task::spawn_blocking(move || cache::load_cache(&load_dir)).await??;
    tracing::info!(
        session_key,
        samples = data.sample_count(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "openf1: cache loaded"
    );
    if data.skipped.rows > 0 || data.skipped.files > 0 {
        tracing::warn!(
            rows = data.skipped.rows,
            files = data.skipped.files,
            dir = %dir.display(),
            "openf1: skipped malformed or duplicate rows in the cache"
        );
        io.metrics.add_discarded(data.skipped.rows as usize);
        for _ in 0..data.skipped.files {
            io.metrics.add_error();
        }
    }
    replay(&data, config, io).await;
    Ok(())
}

/// Replay loaded data (again and again with `loop`) until its end or until shutdown.
pub async fn replay(data: &SessionData, config: &OpenF1Config, io: &mut Io) {
    let start = start_time(data, config.start_at());
    let tick_ns = i64::try_from(config.tick_ms.max(1)).unwrap_or(100) * 1_000_000;
    let preamble = preamble(data, start);
    let lead_ns = i64::try_from(config.lead_ms)
        .unwrap_or(0)
        .saturating_mul(1_000_000);
    let mut pacer = Pacer::new(config.speed).with_lead(lead_ns);
    loop {
        let started = std::time::Instant::now();
        let sent_before = io.metrics.snapshot().sent;
        if !send(io, preamble.clone()).await {
            return;
        }
        let mut merge = Merge::new(data, start, tick_ns);
        if !play(&mut merge, &mut pacer, io).await {
            return;
        }
        tracing::info!(
            session_key = %data.session_key,
            events = io.metrics.snapshot().sent - sent_before,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "openf1: replay reached the end of the session"
        );
        if !config.loop_replay || io.shutdown.is_triggered() {
            return;
        }
        pacer.restart();
    }
}

/// The instant the replay starts at.
pub fn start_time(data: &SessionData, start: StartAt) -> i64 {
    let data_start = data.time_range().map(|(first, _)| first);
    match start {
        StartAt::At(time) => time,
        StartAt::DataStart => data_start.unwrap_or(0),
        StartAt::RaceStart => reference_start_ns(&data.laps, &data.grid)
            .or(data_start)
            .unwrap_or(0),
    }
}

/// Everything a replay knows before it starts, stamped `time_ns`: the session, drivers,
/// laps, stints, pit stops, results, grid, the reference paths, and where everyone stands
/// at the start (the latest race position, gap, location and weather from before it).
pub fn preamble(data: &SessionData, time_ns: i64) -> Vec<Event> {
    let key = &data.session_key;
    let mut events = Vec::new();
    let mut push = |record| events.push(Event::new(time_ns, record));
    push(Record::Session(Arc::new(data.session.clone())));
    for driver in &data.drivers {
        push(Record::Driver(Arc::new(driver.clone())));
    }
    for lap in &data.laps {
        push(Record::Lap(Arc::new(lap.clone())));
    }
    for stint in &data.stints {
        push(Record::Stint(Arc::new(stint.clone())));
    }
    for pit in &data.pits {
        push(Record::Pit(Arc::new(pit.clone())));
    }
    for result in &data.results {
        push(Record::SessionResult(Arc::new(result.clone())));
    }
    for slot in &data.grid {
        push(Record::StartingGrid(Arc::new(slot.clone())));
    }
    let location = |driver| data.car(driver).map(|car| &car.location[..]);
    let car_data = |driver| data.car(driver).map(|car| &car.car_data[..]);
    match reference::fastest_lap_path(key, &data.laps, location) {
        Some(path) => push(Record::ReferencePath(Arc::new(path))),
        None => {
            tracing::info!(session_key = %key, "openf1: no timed lap with location samples; no lap reference path")
        }
    }
    match reference::pit_lane_path(key, &data.pits, location, car_data) {
        Some(path) => push(Record::ReferencePath(Arc::new(path))),
        None => {
            tracing::info!(session_key = %key, "openf1: no pit pass with location samples; no pit-lane reference path")
        }
    }
    // Positions, gaps and weather are change events: a replay that starts at the race
    // start must still say where everyone stands then, so the latest value of each from
    // before the start is part of what is known at the start.
    let before = &data.series[..data.series.partition_point(|e| e.time_ns < time_ns)];
    let mut state_at_start = std::collections::BTreeMap::new();
    for event in before {
        let key = match &event.record {
            Record::RacePosition(position) => (RecordKind::RacePosition, position.car),
            Record::Interval(interval) => (RecordKind::Interval, interval.driver_number),
            Record::Weather(_) => (RecordKind::Weather, 0),
            _ => continue,
        };
        state_at_start.insert(key, &event.record);
    }
    for record in state_at_start.into_values() {
        push(record.clone());
    }
    // Race control's messages before the start (the track opening, the weather outlook)
    // are what a feed of race control shows at the start.
    for event in before {
        if let Record::RaceControl(_) = &event.record {
            push(event.record.clone());
        }
    }
    // Likewise each car's last location before the start (on the grid, in the garage), so
    // a display has every car from the first instant instead of from its next sample.
    for car in &data.cars {
        let at = car
            .location
            .partition_point(|sample| sample.time_ns < time_ns);
        if car
            .location
            .get(at)
            .is_some_and(|next| next.time_ns == time_ns)
        {
            continue; // It has a sample at the start itself.
        }
        if let Some(sample) = at.checked_sub(1).map(|last| &car.location[last]) {
            if sample.x != 0.0 || sample.y != 0.0 {
                push(Record::Position(sample.to_record(key, car.driver_number)));
            }
        }
    }
    events
}

/// Pace the merged series out in batches; `false` when shutdown interrupted it.
async fn play(merge: &mut Merge<'_>, pacer: &mut Pacer, io: &mut Io) -> bool {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(time) = merge.peek_time() {
        if let Some(delay) = pacer.delay_until(time) {
            if !batch.is_empty() && !send(io, std::mem::take(&mut batch)).await {
                return false;
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = io.shutdown.triggered() => return false,
            }
            continue;
        }
        if let Some(event) = merge.next_event() {
            batch.push(event);
        }
        if batch.len() >= MAX_BATCH {
            if !send(
                io,
                std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH)),
            )
            .await
            {
                return false;
            }
            // Let other tasks run between batches at speed 0.
            tokio::task::yield_now().await;
        }
    }
    batch.push(Event::new(
        merge.end_time(),
        Record::SessionEnd(SessionEnd {
            session_key: merge.session_key.clone(),
        }),
    ));
    send(io, batch).await
}

/// Send a batch unless shutdown fires first; `false` on shutdown.
async fn send(io: &mut Io, batch: Vec<Event>) -> bool {
    if io.shutdown.is_triggered() {
        return false;
    }
    tokio::select! {
        _ = io.output.send(batch) => true,
        _ = io.shutdown.triggered() => false,
    }
}

/// Streams of a replay, merged lazily by time.
pub struct Merge<'d> {
    data: &'d SessionData,
    session_key: SessionKey,
    /// (next time, stream); streams `2i`/`2i+1` are car `i`'s location/car data, then the
    /// small series, then ticks (last, so a tick follows the data of its instant).
    heap: BinaryHeap<Reverse<(i64, usize)>>,
    cursors: Vec<usize>,
    series_stream: usize,
    tick_stream: usize,
    tick_ns: i64,
    next_tick: i64,
    last_tick: i64,
}

impl<'d> Merge<'d> {
    /// Merge everything at or after `start`, with a tick every `tick_ns` from `start` to the
    /// first tick at or after the last event.
    pub fn new(data: &'d SessionData, start: i64, tick_ns: i64) -> Self {
        let cars = data.cars.len();
        let series_stream = 2 * cars;
        let tick_stream = series_stream + 1;
        let mut cursors = vec![0; tick_stream];
        let mut heap = BinaryHeap::with_capacity(tick_stream + 1);
        let mut end = start;
        for (i, car) in data.cars.iter().enumerate() {
            let at = car.location.partition_point(|s| s.time_ns < start);
            cursors[2 * i] = at;
            if let Some(sample) = car.location.get(at) {
                heap.push(Reverse((sample.time_ns, 2 * i)));
                end = end.max(car.location[car.location.len() - 1].time_ns);
            }
            let at = car.car_data.partition_point(|s| s.time_ns < start);
            cursors[2 * i + 1] = at;
            if let Some(sample) = car.car_data.get(at) {
                heap.push(Reverse((sample.time_ns, 2 * i + 1)));
                end = end.max(car.car_data[car.car_data.len() - 1].time_ns);
            }
        }
        let at = data.series.partition_point(|e| e.time_ns < start);
        cursors[series_stream] = at;
        if let Some(event) = data.series.get(at) {
            heap.push(Reverse((event.time_ns, series_stream)));
            end = end.max(data.series[data.series.len() - 1].time_ns);
        }
        let ticks = (end - start + tick_ns - 1) / tick_ns;
        let last_tick = start + ticks * tick_ns;
        heap.push(Reverse((start, tick_stream)));
        Self {
            data,
            session_key: data.session_key.clone(),
            heap,
            cursors,
            series_stream,
            tick_stream,
            tick_ns,
            next_tick: start,
            last_tick,
        }
    }

    pub fn peek_time(&self) -> Option<i64> {
        self.heap.peek().map(|Reverse((time, _))| *time)
    }

    /// When the replay ends: the last tick.
    pub fn end_time(&self) -> i64 {
        self.last_tick
    }

    pub fn next_event(&mut self) -> Option<Event> {
        let Reverse((time, stream)) = self.heap.pop()?;
        let key = &self.session_key;
        let (record, next) = if stream == self.tick_stream {
            self.next_tick += self.tick_ns;
            let next = (self.next_tick <= self.last_tick).then_some(self.next_tick);
            (Record::Tick, next)
        } else if stream == self.series_stream {
            let at = self.cursors[stream];
            self.cursors[stream] += 1;
            let series = &self.data.series;
            (
                series[at].record.clone(),
                series.get(at + 1).map(|e| e.time_ns),
            )
        } else {
            let car = &self.data.cars[stream / 2];
            let at = self.cursors[stream];
            self.cursors[stream] += 1;
            if stream % 2 == 0 {
                let record = Record::Position(car.location[at].to_record(key, car.driver_number));
                (record, car.location.get(at + 1).map(|s| s.time_ns))
            } else {
                let record = Record::CarData(car.car_data[at].to_record(key, car.driver_number));
                (record, car.car_data.get(at + 1).map(|s| s.time_ns))
            }
        };
        if let Some(next) = next {
            self.heap.push(Reverse((next, stream)));
        }
        Some(Event::new(time, record))
    }
}

impl Iterator for Merge<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.next_event()
    }
}
