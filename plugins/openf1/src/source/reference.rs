//! Reference paths: the raw material of the circuit map (`track_layout`).
//!
//! - The **lap** path is the location of the driver of the session's fastest timed lap, from
//!   the lap's `date_start` to `date_start + lap_duration` (FORMATS.md 2, "derived from OpenF1"),
//!   with the lap's sector durations so that the sector points can be placed.
//! - The **pit lane** path is one pass through the pit lane. OpenF1's `pit` rows give a time and
//!   the lane duration but not where the lane starts, so the pass is found in the car's own
//!   telemetry: around the pit record, the stretch of samples at or below the pit speed limit
//!   (80 km/h at most circuits, 60 at a few) that contains the car's slowest moment (the stop).
//!   Without telemetry, the `lane_duration` before the pit record's time stands in.
//!
//! Samples at 0,0 ("car not placed") never reach here: the loader drops them.

use pitwall_api::record::{parse_iso8601_ns, Lap, PathKind, Pit, ReferencePath, SessionKey};

use super::rows::{CarSample, LocationSample};

/// Above this speed (km/h) a car is not in the pit lane.
const PIT_LANE_MAX_KMH: f32 = 90.0;
/// Used when a pit row has no usable `lane_duration`.
const DEFAULT_LANE_S: f64 = 25.0;
const NS: f64 = 1e9;

/// Samples with `from <= time <= to`.
pub fn between(samples: &[LocationSample], from: i64, to: i64) -> &[LocationSample] {
    let start = samples.partition_point(|s| s.time_ns < from);
    let end = samples.partition_point(|s| s.time_ns <= to);
    &samples[start..end.max(start)]
}

fn to_path(samples: &[LocationSample]) -> Vec<(i64, f64, f64)> {
    samples
        .iter()
        .map(|s| (s.time_ns, f64::from(s.x), f64::from(s.y)))
        .collect()
}

/// The fastest timed lap that has enough location samples.
pub fn fastest_lap_path<'a>(
    session_key: &SessionKey,
    laps: &[Lap],
    location: impl Fn(u32) -> Option<&'a [LocationSample]>,
) -> Option<ReferencePath> {
    let mut timed: Vec<(f64, i64, &Lap)> = laps
        .iter()
        .filter_map(|lap| {
            let duration = lap
                .lap_duration
                .filter(|d| d.is_finite() && *d > 20.0 && *d < 600.0)?;
            let start = lap.date_start.as_deref().and_then(parse_iso8601_ns)?;
            Some((duration, start, lap))
        })
        .collect();
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (duration, start, lap) in timed.into_iter().take(10) {
        let Some(samples) = location(lap.driver_number) else {
            continue;
        };
        let end = start + (duration * NS) as i64;
        let samples = between(samples, start, end);
        // OpenF1 samples at ~3.7 Hz; a lap with gaps longer than a couple of seconds on
        // average would draw a poor outline: try the next fastest.
        if (samples.len() as f64) < (duration * 0.5).max(10.0) {
            continue;
        }
        let sectors = [
            lap.duration_sector_1,
            lap.duration_sector_2,
            lap.duration_sector_3,
        ];
        let sector_durations = if sectors.iter().all(|s| s.is_some_and(|s| s > 0.0)) {
            sectors.iter().flatten().copied().collect()
        } else {
            Vec::new()
        };
        return Some(ReferencePath {
            session_key: session_key.clone(),
            path: PathKind::Lap,
            car: lap.driver_number,
            lap_number: Some(lap.lap_number),
            samples: to_path(samples),
            sector_durations,
        });
    }
    None
}

/// One pass through the pit lane, from the first pit record that yields one.
pub fn pit_lane_path<'a>(
    session_key: &SessionKey,
    pits: &[Pit],
    location: impl Fn(u32) -> Option<&'a [LocationSample]>,
    car_data: impl Fn(u32) -> Option<&'a [CarSample]>,
) -> Option<ReferencePath> {
    for pit in pits {
        let Some(time) = pit.date.as_deref().and_then(parse_iso8601_ns) else {
            continue;
        };
        let Some(samples) = location(pit.driver_number) else {
            continue;
        };
        let lane_s = pit
            .lane_duration
            .filter(|d| d.is_finite() && (3.0..=120.0).contains(d))
            .unwrap_or(DEFAULT_LANE_S);
        let lane_ns = (lane_s * NS) as i64;
        let by_speed = car_data(pit.driver_number)
            .and_then(|telemetry| slow_stretch(telemetry, time, lane_ns));
        let (from, to) = by_speed.unwrap_or((time - lane_ns, time));
        let pass = between(samples, from, to);
        if pass.len() >= 5 {
            return Some(ReferencePath {
                session_key: session_key.clone(),
                path: PathKind::PitLane,
                car: pit.driver_number,
                lap_number: pit.lap_number,
                samples: to_path(pass),
                sector_durations: Vec::new(),
            });
        }
    }
    None
}

/// Around `time`, the stretch at pit-lane speed that contains the slowest sample.
fn slow_stretch(telemetry: &[CarSample], time: i64, lane_ns: i64) -> Option<(i64, i64)> {
    let margin = lane_ns + 20_000_000_000;
    let start = telemetry.partition_point(|s| s.time_ns < time - margin);
    let end = telemetry.partition_point(|s| s.time_ns <= time + margin);
    let window = &telemetry[start..end.max(start)];
    let (slowest, speed) = window
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.speed_kmh().map(|v| (i, v)))
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    if speed > PIT_LANE_MAX_KMH {
        return None;
    }
    let slow = |s: &CarSample| s.speed_kmh().is_some_and(|v| v <= PIT_LANE_MAX_KMH);
    let mut first = slowest;
    while first > 0 && slow(&window[first - 1]) {
        first -= 1;
    }
    let mut last = slowest;
    while last + 1 < window.len() && slow(&window[last + 1]) {
        last += 1;
    }
    let (from, to) = (window[first].time_ns, window[last].time_ns);
    let duration = to - from;
    // A stretch that runs into the window's edge is a slow lap (safety car), not a pass.
    let bounded = first > 0 && last + 1 < window.len();
    (bounded && duration >= 3_000_000_000 && duration <= 3 * lane_ns + 30_000_000_000)
        .then_some((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(t_s: f64, x: f32) -> LocationSample {
        LocationSample {
            time_ns: (t_s * NS) as i64,
            x,
            y: 1.0,
            z: 0.0,
        }
    }

    fn car(t_s: f64, speed: f32) -> CarSample {
        CarSample {
            time_ns: (t_s * NS) as i64,
            speed,
            rpm: f32::NAN,
            throttle: f32::NAN,
            brake: f32::NAN,
            gear: 0,
            drs: 0,
        }
    }

    #[test]
    fn pit_pass_is_the_slow_stretch_around_the_stop() {
        // 0.25 s samples over 200 s; pit lane from 100 s to 125 s, stopped at 110-112 s.
        let mut location = Vec::new();
        let mut telemetry = Vec::new();
        for i in 0..800 {
            let t = f64::from(i) * 0.25;
            location.push(loc(t, i as f32));
            let speed = if (110.0..112.0).contains(&t) {
                0.0
            } else if (100.0..125.0).contains(&t) {
                80.0
            } else {
                250.0
            };
            telemetry.push(car(t, speed));
        }
        let pit = Pit {
            session_key: "1".into(),
            driver_number: 7,
            date: Some(pitwall_api::record::format_iso8601_ns((125.0 * NS) as i64)),
            lap_number: Some(3),
            lane_duration: Some(25.0),
            stop_duration: Some(2.0),
        };
        let path = pit_lane_path(
            &"1".into(),
            &[pit],
            |_| Some(&location[..]),
            |_| Some(&telemetry[..]),
        )
        .unwrap();
        assert_eq!(path.path, PathKind::PitLane);
        assert_eq!(path.samples.first().unwrap().0, (100.0 * NS) as i64);
        assert_eq!(path.samples.last().unwrap().0, (124.75 * NS) as i64);
    }

    #[test]
    fn fastest_lap_with_samples_wins() {
        let location: Vec<LocationSample> =
            (0..2000).map(|i| loc(f64::from(i) * 0.25, 1.0)).collect();
        let lap = |driver, number, start_s: f64, duration| Lap {
            session_key: "1".into(),
            driver_number: driver,
            lap_number: number,
            date_start: Some(pitwall_api::record::format_iso8601_ns(
                (start_s * NS) as i64,
            )),
            lap_duration: Some(duration),
            duration_sector_1: Some(30.0),
            duration_sector_2: Some(30.0),
            duration_sector_3: Some(duration - 60.0),
            ..Lap::default()
        };
        // Driver 9 is fastest but has no samples; driver 4's 90.5 s lap is next.
        let laps = [
            lap(4, 2, 100.0, 91.0),
            lap(9, 3, 100.0, 89.0),
            lap(4, 3, 191.0, 90.5),
        ];
        let path = fastest_lap_path(&"1".into(), &laps, |driver| {
            (driver == 4).then_some(&location[..])
        })
        .unwrap();
        assert_eq!((path.car, path.lap_number), (4, Some(3)));
        assert_eq!(path.sector_durations, vec![30.0, 30.0, 30.5]);
        assert_eq!(path.samples.len(), 363); // 191.0 ..= 281.5 s every 0.25 s
    }
}
