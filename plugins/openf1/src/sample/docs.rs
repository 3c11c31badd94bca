//! The OpenF1 documents of a simulated race: one function per endpoint, each returning the
//! rows the endpoint would return, plus the per-driver `location` and `car_data` files.

use std::f64::consts::TAU;
use std::io;

use fastrand::Rng;
use pitwall_api::record::format_iso8601_ns;
use serde::Serialize;
use serde_json::{json, Value};

use super::sim::{CarState, Race};
use super::track::V_TOP;
use super::Writer;

/// Average period of OpenF1 `location` and `car_data` samples (~3.7 Hz), seconds.
pub(crate) const SAMPLE_PERIOD_S: f64 = 0.27;
/// Intervals are published about every 4 s.
const INTERVAL_PERIOD_S: f64 = 4.0;
/// OpenF1 points for places 1..=10 (2024), plus one for the fastest lap in the top ten.
const POINTS: [f64; 10] = [25.0, 18.0, 15.0, 12.0, 10.0, 8.0, 6.0, 4.0, 2.0, 1.0];
/// Upper speed of each gear, km/h (Monza ratios, roughly).
const GEAR_TOP_KMH: [f64; 8] = [95.0, 130.0, 165.0, 200.0, 235.0, 270.0, 305.0, 360.0];

pub(crate) struct Context<'a> {
    pub race: &'a Race,
    pub session_key: u32,
    pub meeting_key: u32,
    pub data_start_ns: i64,
    pub seed: u64,
}

impl Context<'_> {
    /// Nanoseconds since the epoch of simulation time `t`, whole microseconds like OpenF1.
    fn ns(&self, t: f64) -> i64 {
        self.data_start_ns + (t * 1e6).round() as i64 * 1000
    }

    fn iso(&self, t: f64) -> String {
        format_iso8601_ns(self.ns(t))
    }

    /// A random stream of its own for each document, so adding a row to one document does
    /// not change another.
    fn rng(&self, stream: u64) -> Rng {
        Rng::with_seed(self.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn number(&self, c: usize) -> u32 {
        self.race.cars[c].entry.number
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn laps_behind(n: u32) -> String {
    if n == 1 {
        "+1 LAP".to_string()
    } else {
        format!("+{n} LAPS")
    }
}

pub(crate) fn sessions(ctx: &Context) -> Vec<Value> {
    let start = ctx.race.t_formation;
    vec![json!({
        "circuit_key": 39,
        "circuit_short_name": "Monza",
        "country_code": "ITA",
        "country_key": 13,
        "country_name": "Italy",
        "date_end": ctx.iso(start + 7200.0),
        "date_start": ctx.iso(start),
        "gmt_offset": "02:00:00",
        "is_cancelled": false,
        "location": "Monza",
        "meeting_key": ctx.meeting_key,
        "session_key": ctx.session_key,
        "session_name": "Race (simulated)",
        "session_type": "Race",
        "year": 2024,
    })]
}

pub(crate) fn meetings(ctx: &Context) -> Vec<Value> {
    let start = ctx.race.t_formation;
    vec![json!({
        "circuit_info_url": "https://api.multiviewer.app/api/v1/circuits/39/2020",
        "circuit_key": 39,
        "circuit_short_name": "Monza",
        "circuit_type": "Permanent",
        "country_code": "ITA",
        "country_flag": null,
        "country_key": 13,
        "country_name": "Italy",
        "date_end": ctx.iso(start + 7200.0),
        "date_start": ctx.iso(start - 2.0 * 86_400.0 - 3600.0),
        "gmt_offset": "02:00:00",
        "location": "Monza",
        "meeting_key": ctx.meeting_key,
        "meeting_name": "Simulated Grand Prix (pitwall-flow sample)",
        "meeting_official_name": "SIMULATED GRAND PRIX ON THE MONZA CIRCUIT (pitwall-flow sample, not a real event)",
        "year": 2024,
    })]
}

pub(crate) fn drivers(ctx: &Context) -> Vec<Value> {
    let mut cars: Vec<usize> = (0..ctx.race.cars.len()).collect();
    cars.sort_by_key(|&c| ctx.number(c));
    cars.into_iter()
        .map(|c| {
            let e = &ctx.race.cars[c].entry;
            let initial = e.first_name.chars().next().unwrap_or('S');
            json!({
                "broadcast_name": format!("{initial} {}", e.last_name.to_uppercase()),
                "country_code": e.country_code,
                "driver_number": e.number,
                "first_name": e.first_name,
                "full_name": format!("{} {}", e.first_name, e.last_name.to_uppercase()),
                "headshot_url": null,
                "last_name": e.last_name,
                "meeting_key": ctx.meeting_key,
                "name_acronym": e.acronym,
                "session_key": ctx.session_key,
                "team_colour": e.colour,
                "team_name": e.team,
            })
        })
        .collect()
}

/// One row of OpenF1 `laps`.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct LapRow {
    pub date_start: Option<String>,
    pub driver_number: u32,
    pub duration_sector_1: Option<f64>,
    pub duration_sector_2: Option<f64>,
    pub duration_sector_3: Option<f64>,
    pub i1_speed: Option<u32>,
    pub i2_speed: Option<u32>,
    pub is_pit_out_lap: bool,
    pub lap_duration: Option<f64>,
    pub lap_number: u32,
    pub meeting_key: u32,
    pub segments_sector_1: Option<Vec<u32>>,
    pub segments_sector_2: Option<Vec<u32>>,
    pub segments_sector_3: Option<Vec<u32>>,
    pub session_key: u32,
    pub st_speed: Option<u32>,
    #[serde(skip)]
    pub(crate) t0: f64,
}

pub(crate) fn laps(ctx: &Context) -> Vec<LapRow> {
    let race = ctx.race;
    let [s1_end, s2_end] = race.sector_ends_m;
    let minis = &race.track.mini_sector_ends_m;
    let mut rng = ctx.rng(1);
    let mut rows = Vec::new();
    for (c, car) in race.cars.iter().enumerate() {
        for lap in &car.laps {
            let table = &lap.table;
            let reached = |s: f64| s <= table.s_end();
            let at = |s: f64| table.time_at(s, lap.f);
            let duration = lap.t1 - lap.t0;
            let t_s1 = at(s1_end);
            let t_s2 = at(s2_end);
            let trap = |s: f64| {
                reached(s).then(|| {
                    let spot = table.spot_at(at(s), lap.f);
                    (spot.speed * 3.6).round() as u32
                })
            };
            let mut segments = |from: f64, to: f64| -> Option<Vec<u32>> {
                if !reached(to.min(race.track.length_m)) {
                    return None;
                }
                let values = minis
                    .iter()
                    .filter(|&&end| end > from && end <= to)
                    .map(|&end| {
                        if table.in_lane(end) || table.in_lane(end - 50.0) {
                            2064
                        } else {
                            let roll = rng.f64();
                            if roll < 0.04 {
                                2051
                            } else if roll < 0.45 {
                                2049
                            } else {
                                2048
                            }
                        }
                    })
                    .collect();
                Some(values)
            };
            let segments_sector_1 = segments(0.0, s1_end);
            let segments_sector_2 = segments(s1_end, s2_end);
            let segments_sector_3 = segments(s2_end, race.track.length_m + 1.0);
            rows.push(LapRow {
                date_start: Some(ctx.iso(lap.t0)),
                driver_number: ctx.number(c),
                duration_sector_1: (lap.number > 1 && reached(s1_end)).then(|| round3(t_s1)),
                duration_sector_2: reached(s2_end).then(|| round3(t_s2 - t_s1)),
                duration_sector_3: lap.complete.then(|| round3(duration - t_s2)),
                i1_speed: trap(race.speed_traps_m[0]),
                i2_speed: trap(race.speed_traps_m[1]),
                is_pit_out_lap: lap.pit_out,
                lap_duration: (lap.complete && lap.number > 1).then(|| round3(duration)),
                lap_number: lap.number,
                meeting_key: ctx.meeting_key,
                segments_sector_1,
                segments_sector_2,
                segments_sector_3,
                session_key: ctx.session_key,
                st_speed: trap(race.speed_traps_m[2]),
                t0: lap.t0,
            });
        }
    }
    rows.sort_by(|a, b| {
        a.t0.total_cmp(&b.t0)
            .then(a.driver_number.cmp(&b.driver_number))
    });
    rows
}

/// The shared dates of `location` samples: ~3.7 Hz from the first sample to the end.
pub(crate) fn location_times(ctx: &Context) -> Vec<f64> {
    let mut rng = ctx.rng(2);
    let mut times = Vec::new();
    let mut t = 0.0;
    while t <= ctx.race.data_end() {
        times.push(t);
        t += SAMPLE_PERIOD_S - 0.02 + 0.04 * rng.f64();
    }
    times
}

pub(crate) fn positions(ctx: &Context) -> Vec<Value> {
    let race = ctx.race;
    let mut previous = vec![0u32; race.cars.len()];
    let mut rows = Vec::new();
    for t in location_times(ctx) {
        let order = race.order_at(t);
        let mut date: Option<String> = None;
        for (place, &c) in order.iter().enumerate() {
            let position = place as u32 + 1;
            if previous[c] != position {
                previous[c] = position;
                let date = date.get_or_insert_with(|| ctx.iso(t)).clone();
                rows.push(json!({
                    "date": date,
                    "driver_number": ctx.number(c),
                    "meeting_key": ctx.meeting_key,
                    "position": position,
                    "session_key": ctx.session_key,
                }));
            }
        }
    }
    rows
}

pub(crate) fn intervals(ctx: &Context) -> Vec<Value> {
    let race = ctx.race;
    let length = race.track.length_m;
    let mut rng = ctx.rng(3);
    let offsets: Vec<f64> = race.cars.iter().map(|_| rng.f64() * 1.5).collect();
    let last = race
        .cars
        .iter()
        .filter_map(|car| car.finish_time)
        .fold(race.t_chequered, f64::max);
    let mut rows: Vec<(f64, u32, Value)> = Vec::new();
    let mut tick = race.t_lights_out + INTERVAL_PERIOD_S;
    while tick <= last + INTERVAL_PERIOD_S {
        for c in race.order_at(tick) {
            let car = &race.cars[c];
            if car.retire_time.is_some_and(|r| r <= tick)
                || car
                    .finish_time
                    .is_some_and(|f| f < tick - INTERVAL_PERIOD_S)
            {
                continue;
            }
            let t = tick + offsets[c] + rng.f64() * 0.2;
            // The order at this row's own instant, so the car ahead is really ahead.
            let order = race.order_at(t);
            let place = order.iter().position(|&o| o == c).unwrap_or(0);
            let leader = order[0];
            // Where this car is, and when it got there (a finished car stays at the line).
            let (progress, when) = match car.finish_time.filter(|&f| f <= t) {
                Some(finish) => (f64::from(car.laps_completed) * length, finish),
                None => (race.state(c, t).progress, t),
            };
            let gap_to = |other: usize| -> Option<Value> {
                let ahead = race.rank_key(other, t).0 - progress;
                if ahead >= length && race.cars[other].retire_time.is_none() {
                    let lapped = if other == leader {
                        (ahead / length).floor() as u32
                    } else {
                        1
                    };
                    return Some(json!(laps_behind(lapped)));
                }
                let reached = race.time_at_progress(other, progress)?;
                Some(json!(round3((when - reached).max(0.0))))
            };
            let (gap_to_leader, interval) = if place == 0 {
                (json!(0.0), Value::Null)
            } else {
                (
                    gap_to(leader).unwrap_or(Value::Null),
                    gap_to(order[place - 1]).unwrap_or(Value::Null),
                )
            };
            rows.push((
                t,
                ctx.number(c),
                json!({
                    "date": ctx.iso(t),
                    "driver_number": ctx.number(c),
                    "gap_to_leader": gap_to_leader,
                    "interval": interval,
                    "meeting_key": ctx.meeting_key,
                    "session_key": ctx.session_key,
                }),
            ));
        }
        tick += INTERVAL_PERIOD_S;
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    rows.into_iter().map(|(_, _, row)| row).collect()
}

pub(crate) fn stints(ctx: &Context) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cars: Vec<usize> = (0..ctx.race.cars.len()).collect();
    cars.sort_by_key(|&c| ctx.number(c));
    for c in cars {
        for (i, stint) in ctx.race.cars[c].stints.iter().enumerate() {
            rows.push(json!({
                "compound": stint.compound.name(),
                "driver_number": ctx.number(c),
                "lap_end": stint.lap_end,
                "lap_start": stint.lap_start,
                "meeting_key": ctx.meeting_key,
                "session_key": ctx.session_key,
                "stint_number": i + 1,
                "tyre_age_at_start": stint.tyre_age_at_start,
            }));
        }
    }
    rows
}

pub(crate) fn pits(ctx: &Context) -> Vec<Value> {
    let mut stops: Vec<(f64, usize)> = ctx
        .race
        .cars
        .iter()
        .enumerate()
        .filter_map(|(c, car)| car.pit.as_ref().map(|p| (p.t_lane_in, c)))
        .collect();
    stops.sort_by(|a, b| a.0.total_cmp(&b.0));
    stops
        .into_iter()
        .filter_map(|(_, c)| {
            let pit = ctx.race.cars[c].pit.as_ref()?;
            let lane = round3(pit.t_lane_out - pit.t_lane_in);
            Some(json!({
                "date": ctx.iso(pit.t_lane_in),
                "driver_number": ctx.number(c),
                "lane_duration": lane,
                "lap_number": pit.lap,
                "meeting_key": ctx.meeting_key,
                "pit_duration": lane,
                "session_key": ctx.session_key,
                "stop_duration": (pit.stop_s * 10.0).round() / 10.0,
            }))
        })
        .collect()
}

/// The leader's lap number at `t` (1 before the start).
fn leader_lap(race: &Race, t: f64) -> u32 {
    race.cars
        .iter()
        .flat_map(|car| car.laps.iter())
        .filter(|lap| lap.t0 <= t)
        .map(|lap| lap.number)
        .max()
        .unwrap_or(1)
}

pub(crate) fn race_control(ctx: &Context) -> Vec<Value> {
    let race = ctx.race;
    let mut rows: Vec<(f64, Value)> = Vec::new();
    let mut add = |t: f64,
                   category: &str,
                   flag: Option<&str>,
                   scope: Option<&str>,
                   sector: Option<u32>,
                   driver: Option<u32>,
                   message: String| {
        rows.push((
            t,
            json!({
                "category": category,
                "date": ctx.iso(t),
                "driver_number": driver,
                "flag": flag,
                "lap_number": leader_lap(race, t),
                "meeting_key": ctx.meeting_key,
                "message": message,
                "scope": scope,
                "sector": sector,
                "session_key": ctx.session_key,
            }),
        ));
    };
    add(
        race.t_formation - 240.0,
        "Other",
        None,
        None,
        None,
        None,
        "RISK OF RAIN FOR F1 RACE IS 0% (SIMULATED SESSION)".into(),
    );
    add(
        race.t_formation,
        "Flag",
        Some("GREEN"),
        Some("Track"),
        None,
        None,
        "GREEN LIGHT - PIT EXIT OPEN".into(),
    );
    if let Some(t) = race.drs_enabled {
        add(t, "Drs", None, None, None, None, "DRS ENABLED".into());
    }
    let yellow = &race.yellow;
    add(
        yellow.t_start,
        "Flag",
        Some("YELLOW"),
        Some("Sector"),
        Some(yellow.marshal_sector),
        None,
        format!("YELLOW IN TRACK SECTOR {}", yellow.marshal_sector),
    );
    add(
        yellow.t_clear,
        "Flag",
        Some("CLEAR"),
        Some("Sector"),
        Some(yellow.marshal_sector),
        None,
        format!("CLEAR IN TRACK SECTOR {}", yellow.marshal_sector),
    );
    for car in &race.cars {
        if let Some(t) = car.retire_time {
            add(
                t + 8.0,
                "Other",
                None,
                None,
                None,
                Some(car.entry.number),
                format!(
                    "CAR {} ({}) STOPPED ON TRACK",
                    car.entry.number, car.entry.acronym
                ),
            );
        }
    }
    add(
        race.t_chequered,
        "Flag",
        Some("CHEQUERED"),
        Some("Track"),
        None,
        None,
        "CHEQUERED FLAG".into(),
    );
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    rows.into_iter().map(|(_, row)| row).collect()
}

/// Cars in classification order: finishers by laps then time, then retirements.
pub(crate) fn classification(race: &Race) -> Vec<usize> {
    let mut cars: Vec<usize> = (0..race.cars.len()).collect();
    cars.sort_by(|&a, &b| {
        let (ca, cb) = (&race.cars[a], &race.cars[b]);
        ca.retire_time
            .is_some()
            .cmp(&cb.retire_time.is_some())
            .then(cb.laps_completed.cmp(&ca.laps_completed))
            .then(
                ca.finish_time
                    .unwrap_or(f64::MAX)
                    .total_cmp(&cb.finish_time.unwrap_or(f64::MAX)),
            )
    });
    cars
}

pub(crate) fn session_result(ctx: &Context) -> Vec<Value> {
    let race = ctx.race;
    let order = classification(race);
    let fastest = laps(ctx)
        .into_iter()
        .filter_map(|lap| lap.lap_duration.map(|d| (d, lap.driver_number)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, driver)| driver);
    let winner = order.first().map(|&c| &race.cars[c]);
    order
        .iter()
        .enumerate()
        .map(|(place, &c)| {
            let car = &race.cars[c];
            let dnf = car.retire_time.is_some();
            let position = (!dnf).then_some(place as u32 + 1);
            let mut points = position
                .and_then(|p| POINTS.get(p as usize - 1).copied())
                .unwrap_or(0.0);
            if position.is_some_and(|p| p <= 10) && fastest == Some(car.entry.number) {
                points += 1.0;
            }
            let gap = match (car.finish_time, winner) {
                (Some(finish), Some(w)) if !dnf => {
                    let behind = w.laps_completed.saturating_sub(car.laps_completed);
                    if place == 0 {
                        json!(0.0)
                    } else if behind > 0 {
                        json!(laps_behind(behind))
                    } else {
                        json!(round3(finish - w.finish_time.unwrap_or(finish)))
                    }
                }
                _ => Value::Null,
            };
            json!({
                "dnf": dnf,
                "dns": false,
                "dsq": false,
                "driver_number": car.entry.number,
                "duration": car.finish_time.filter(|_| !dnf).map(|f| round3(f - race.t_lights_out)),
                "gap_to_leader": gap,
                "meeting_key": ctx.meeting_key,
                "number_of_laps": car.laps_completed,
                "points": points,
                "position": position,
                "session_key": ctx.session_key,
            })
        })
        .collect()
}

/// The grid, as OpenF1 files it: under the qualifying session, which in this simulated
/// meeting has key `session_key - 1` (real OpenF1 keys of a weekend are close together too).
pub(crate) fn starting_grid(ctx: &Context) -> Vec<Value> {
    let mut cars: Vec<usize> = (0..ctx.race.cars.len()).collect();
    cars.sort_by_key(|&c| ctx.race.cars[c].grid_position);
    cars.into_iter()
        .map(|c| {
            let car = &ctx.race.cars[c];
            json!({
                "driver_number": car.entry.number,
                "lap_duration": round3(car.quali_s),
                "meeting_key": ctx.meeting_key,
                "position": car.grid_position,
                "session_key": ctx.session_key.saturating_sub(1),
            })
        })
        .collect()
}

pub(crate) fn weather(ctx: &Context) -> Vec<Value> {
    let mut rng = ctx.rng(4);
    let mut rows = Vec::new();
    let (mut air, mut track, mut humidity, mut pressure): (f64, f64, f64, f64) =
        (26.8, 41.5, 46.0, 1011.9);
    let mut wind_direction = 200.0 + 40.0 * rng.f64();
    let mut t = 20.0 * rng.f64();
    while t <= ctx.race.data_end() {
        rows.push(json!({
            "air_temperature": (air * 10.0_f64).round() / 10.0,
            "date": ctx.iso(t),
            "humidity": humidity.round(),
            "meeting_key": ctx.meeting_key,
            "pressure": (pressure * 10.0_f64).round() / 10.0,
            "rainfall": 0,
            "session_key": ctx.session_key,
            "track_temperature": (track * 10.0_f64).round() / 10.0,
            "wind_direction": (wind_direction as i64).rem_euclid(360),
            "wind_speed": (10.0 * (1.0 + 1.5 * rng.f64())).round() / 10.0,
        }));
        air += (rng.f64() - 0.55) * 0.2;
        track += (rng.f64() - 0.6) * 0.4;
        humidity = (humidity + (rng.f64() - 0.45) * 1.0).clamp(30.0, 70.0);
        pressure += (rng.f64() - 0.5) * 0.1;
        wind_direction += (rng.f64() - 0.5) * 20.0;
        t += 60.0 + (rng.f64() - 0.5) * 2.0;
    }
    rows
}

#[derive(Serialize)]
struct LocationRow<'a> {
    date: &'a str,
    driver_number: u32,
    meeting_key: u32,
    session_key: u32,
    x: i64,
    y: i64,
    z: i64,
}

#[derive(Serialize)]
struct CarDataRow<'a> {
    brake: u8,
    date: &'a str,
    driver_number: u32,
    drs: u8,
    meeting_key: u32,
    n_gear: u8,
    rpm: u32,
    session_key: u32,
    speed: u32,
    throttle: u8,
}

/// Write `location/{n}` and `car_data/{n}` for every car, cars spread over a few threads.
/// Returns (location rows, car_data rows, bytes).
pub(crate) fn write_telemetry(ctx: &Context, writer: &Writer) -> io::Result<(usize, usize, u64)> {
    let times = location_times(ctx);
    let dates: Vec<String> = times.iter().map(|&t| ctx.iso(t)).collect();
    let cars: Vec<usize> = (0..ctx.race.cars.len()).collect();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let chunk = cars.len().div_ceil(threads).max(1);
    let results: Vec<io::Result<(usize, usize, u64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = cars
            .chunks(chunk)
            .map(|chunk| {
                let (times, dates) = (&times, &dates);
                scope.spawn(move || -> io::Result<(usize, usize, u64)> {
                    let mut totals = (0, 0, 0);
                    for &c in chunk {
                        let (rows, bytes) = write_location(ctx, writer, c, times, dates)?;
                        totals.0 += rows;
                        totals.2 += bytes;
                        let (rows, bytes) = write_car_data(ctx, writer, c)?;
                        totals.1 += rows;
                        totals.2 += bytes;
                    }
                    Ok(totals)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("telemetry writer panicked")))
            })
            .collect()
    });
    let mut totals = (0, 0, 0);
    for result in results {
        let (a, b, c) = result?;
        totals.0 += a;
        totals.1 += b;
        totals.2 += c;
    }
    Ok(totals)
}

fn write_location(
    ctx: &Context,
    writer: &Writer,
    c: usize,
    times: &[f64],
    dates: &[String],
) -> io::Result<(usize, u64)> {
    let race = ctx.race;
    let number = ctx.number(c);
    let mut out = writer.open(&format!("location/{number}"))?;
    for (&t, date) in times.iter().zip(dates) {
        let state = race.state(c, t);
        let (x, y) = race.track.position(state.spot.s, state.spot.in_lane);
        let z = 150.0 + 40.0 * (TAU * state.spot.s / race.track.length_m).sin();
        out.push(&LocationRow {
            date,
            driver_number: number,
            meeting_key: ctx.meeting_key,
            session_key: ctx.session_key,
            x: x.round() as i64,
            y: y.round() as i64,
            z: z.round() as i64,
        })?;
    }
    Ok((times.len(), out.finish()?))
}

fn write_car_data(ctx: &Context, writer: &Writer, c: usize) -> io::Result<(usize, u64)> {
    let race = ctx.race;
    let number = ctx.number(c);
    let mut rng = ctx.rng(100 + u64::from(number));
    let mut out = writer.open(&format!("car_data/{number}"))?;
    let mut t = rng.f64() * SAMPLE_PERIOD_S;
    let mut rows = 0;
    while t <= race.data_end() {
        let state = race.state(c, t);
        let row = telemetry(race, c, t, &state, &mut rng);
        let date = ctx.iso(t);
        out.push(&CarDataRow {
            date: &date,
            driver_number: number,
            meeting_key: ctx.meeting_key,
            session_key: ctx.session_key,
            ..row
        })?;
        rows += 1;
        t += SAMPLE_PERIOD_S - 0.03 + 0.06 * rng.f64();
    }
    Ok((rows, out.finish()?))
}

/// Speed, gear, revs, pedals and DRS consistent with the car's motion at `t`.
fn telemetry<'a>(race: &Race, c: usize, t: f64, state: &CarState, rng: &mut Rng) -> CarDataRow<'a> {
    let spot = state.spot;
    let speed = spot.speed * 3.6;
    let engine_off = state.lap == 0
        && spot.speed == 0.0
        && (t < race.t_formation - 30.0 || t > race.t_chequered + 30.0);
    let (n_gear, rpm) = if spot.speed < 0.3 {
        (
            if engine_off { 0 } else { 1 },
            if engine_off { 0.0 } else { 4200.0 },
        )
    } else {
        let gear = GEAR_TOP_KMH
            .iter()
            .position(|&top| speed < top)
            .unwrap_or(7);
        let low = if gear == 0 {
            0.0
        } else {
            GEAR_TOP_KMH[gear - 1] * 0.8
        };
        let high = GEAR_TOP_KMH[gear];
        let fraction = ((speed - low) / (high - low)).clamp(0.0, 1.0);
        (gear as u8 + 1, 8500.0 + 3600.0 * fraction)
    };
    let rpm = if rpm > 0.0 {
        (rpm + (rng.f64() - 0.5) * 200.0).round() as u32
    } else {
        0
    };
    let (throttle, brake) = if spot.speed < 0.3 {
        (0, 0)
    } else if spot.in_lane {
        (
            if spot.accel < -0.5 {
                0
            } else {
                25 + rng.u8(0..10)
            },
            if spot.accel < -2.0 { 100 } else { 0 },
        )
    } else if spot.accel < -4.0 {
        (0, 100)
    } else if spot.accel < -0.5 {
        (0, 0)
    } else if spot.accel > 0.3 || race.track.v_race(spot.s) >= V_TOP - 0.5 {
        (100, 0)
    } else {
        (40 + rng.u8(0..35), 0)
    };
    let drs = if state.lap > 0 && !spot.in_lane {
        race.drs_at(c, state.progress)
    } else {
        0
    };
    CarDataRow {
        brake,
        date: "",
        driver_number: 0,
        drs,
        meeting_key: 0,
        n_gear,
        rpm,
        session_key: 0,
        speed: speed.round() as u32,
        throttle,
    }
}
