//! The race itself: qualifying order, a lap-by-lap race with overtakes, pit stops and a
//! retirement, and every car's motion as a timeline of stretches.
//!
//! The race is decided one lap at a time. Each car has a target lap time (driver pace,
//! tyre compound and wear, fuel load, noise); a car that would catch the car ahead of it on
//! the same lap either passes it (with a probability that grows with its pace advantage) or
//! is held up just behind it. The chosen lap duration then fixes the pace factor of that
//! lap's table, so the car's position at every instant agrees with its lap times.
//!
//! Times are seconds since the first sample of the session (`data_start_ns`).

use std::collections::HashMap;
use std::sync::Arc;

use fastrand::Rng;

use super::roster::{field, Entry};
use super::table::{LapTable, Spot, StretchSpec};
use super::track::Track;

/// Flying-lap time of a car of pace 1.0 on fresh mediums with no fuel, seconds.
const BASE_RACE_LAP_S: f64 = 81.4;
/// Pole-position lap time of a car of pace 1.0.
const BASE_QUALI_LAP_S: f64 = 79.4;
/// Extra lap time at the start from a full fuel load, seconds.
const FUEL_EFFECT_S: f64 = 1.5;
/// Grid: pole sits this far behind the line, the next slots 8 m apart.
const POLE_BEHIND_LINE_M: f64 = 6.0;
const GRID_SPACING_M: f64 = 8.0;
/// Minimum gap when held up behind another car, seconds.
const HELD_GAP_S: f64 = 0.25;
/// Pre-race: data starts this long before the formation lap.
pub(crate) const PRE_FORMATION_S: f64 = 300.0;
/// Formation lap speed as a fraction of racing speed.
const FORMATION_CAP: f64 = 0.6;
const COOL_DOWN_CAP: f64 = 0.55;
/// DRS zones at Monza (metres along the lap): after Parabolica across the line to Turn 1,
/// and from the exit of Lesmo 2 to Ascari.
const DRS_ZONES: [(f64, f64); 2] = [(5420.0, 760.0), (3010.0, 3720.0)];

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Compound {
    Soft,
    Medium,
    Hard,
}

impl Compound {
    pub fn name(self) -> &'static str {
        match self {
            Self::Soft => "SOFT",
            Self::Medium => "MEDIUM",
            Self::Hard => "HARD",
        }
    }

    /// (offset, wear per lap of age), seconds.
    fn effect(self) -> (f64, f64) {
        match self {
            Self::Soft => (-0.5, 0.09),
            Self::Medium => (0.0, 0.05),
            Self::Hard => (0.4, 0.03),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Motion {
    Hold { s: f64, lane: bool },
    Move { table: Arc<LapTable>, f: f64 },
}

/// How a segment counts towards race distance.
#[derive(Copy, Clone, Debug)]
enum Progress {
    /// Race distance is `base + s`.
    Along(f64),
    Fixed(f64),
}

#[derive(Clone, Debug)]
struct Segment {
    t0: f64,
    motion: Motion,
    progress: Progress,
    /// Race lap number while racing; 0 before the start and after the flag.
    lap: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct RaceLap {
    pub number: u32,
    pub t0: f64,
    pub t1: f64,
    pub table: Arc<LapTable>,
    pub f: f64,
    /// The lap was finished (not the lap a car retired on).
    pub complete: bool,
    pub pit_in: bool,
    pub pit_out: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct PitStop {
    pub lap: u32,
    pub t_lane_in: f64,
    pub t_lane_out: f64,
    pub stop_s: f64,
}

#[derive(Clone, Debug)]
pub(crate) struct StintPlan {
    pub compound: Compound,
    pub lap_start: u32,
    pub lap_end: u32,
    pub tyre_age_at_start: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct Car {
    pub entry: Entry,
    pub grid_position: u32,
    pub quali_s: f64,
    pace: f64,
    segments: Vec<Segment>,
    pub laps: Vec<RaceLap>,
    pub laps_completed: u32,
    pub finish_time: Option<f64>,
    pub retire_time: Option<f64>,
    pub retire_progress: f64,
    pub pit: Option<PitStop>,
    pub stints: Vec<StintPlan>,
    /// Race-distance intervals with DRS open.
    pub drs_open: Vec<(f64, f64)>,
}

/// A flag shown by race control.
#[derive(Clone, Debug)]
pub(crate) struct Yellow {
    pub t_start: f64,
    pub t_clear: f64,
    pub marshal_sector: u32,
}

pub(crate) struct Race {
    pub track: Track,
    pub cars: Vec<Car>,
    pub laps_total: u32,
    pub t_formation: f64,
    pub t_lights_out: f64,
    pub t_chequered: f64,
    pub t_end: f64,
    pub sector_ends_m: [f64; 2],
    /// i1, i2 and speed-trap positions, metres.
    pub speed_traps_m: [f64; 3],
    pub yellow: Yellow,
    pub drs_enabled: Option<f64>,
}

/// What a car is doing at one instant.
#[derive(Copy, Clone, Debug)]
pub(crate) struct CarState {
    pub spot: Spot,
    /// Race distance for ranking, metres.
    pub progress: f64,
    pub lap: u32,
}

fn normal(rng: &mut Rng) -> f64 {
    // Sum of four uniforms, scaled to unit variance: close enough to a Gaussian here.
    ((0..4).map(|_| rng.f64()).sum::<f64>() - 2.0) * 3f64.sqrt()
}

impl Race {
    pub fn simulate(laps: u32, cars: u32, seed: u64) -> Race {
        let track = Track::monza();
        let mut rng = Rng::with_seed(seed);
        let length = track.length_m;
        let reference = track.reference_lap_s();
        let entries = field(cars);
        let n = entries.len();

        // Pace and qualifying.
        let paces: Vec<f64> = entries
            .iter()
            .map(|e| 1.0 + e.team_pace + 0.0015 * normal(&mut rng))
            .collect();
        let quali: Vec<f64> = paces
            .iter()
            .map(|p| BASE_QUALI_LAP_S * (p + 0.0025 * normal(&mut rng)))
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| quali[a].total_cmp(&quali[b]));
        let mut grid_position = vec![0u32; n];
        for (slot, &car) in order.iter().enumerate() {
            grid_position[car] = slot as u32 + 1;
        }
        let grid_offset =
            |car: usize| POLE_BEHIND_LINE_M + GRID_SPACING_M * f64::from(grid_position[car] - 1);

        // Strategy: one stop around half distance, then a different compound.
        let pit_lap: Vec<Option<u32>> = (0..n)
            .map(|_| {
                if laps < 2 {
                    return None;
                }
                let latest = if laps >= 3 { laps - 2 } else { 1 };
                let planned = (f64::from(laps) * (0.5 + 0.12 * normal(&mut rng))).round();
                Some((planned as u32).clamp(1, latest))
            })
            .collect();
        let first_compound: Vec<Compound> = (0..n)
            .map(|car| {
                let roll = rng.f64();
                if grid_position[car] <= 10 {
                    if roll < 0.75 {
                        Compound::Medium
                    } else {
                        Compound::Soft
                    }
                } else if roll < 0.6 {
                    Compound::Hard
                } else {
                    Compound::Medium
                }
            })
            .collect();
        let stop_seconds: Vec<f64> = (0..n)
            .map(|_| {
                let slow = if rng.f64() < 0.08 {
                    2.0 + rng.f64() * 2.0
                } else {
                    0.0
                };
                2.1 + rng.f64() * 0.7 + slow
            })
            .collect();

        // One retirement in longer races: a car outside the top three on the grid stops
        // on track somewhere away from the pit straight.
        let retirement: Option<(usize, u32, f64)> = (laps >= 10 && n >= 4).then(|| {
            let candidates: Vec<usize> = (0..n).filter(|&c| grid_position[c] > 3).collect();
            let car = candidates[rng.usize(..candidates.len())];
            let lap = rng.u32((laps * 3 / 10).max(2)..=(laps * 8 / 10).max(2));
            let s = length * (0.15 + 0.7 * rng.f64());
            (car, lap, s)
        });

        // Pre-race: on the grid, the formation lap, back on the grid.
        let t_formation = PRE_FORMATION_S;
        let mut cars: Vec<Car> = entries
            .into_iter()
            .enumerate()
            .map(|(i, entry)| Car {
                entry,
                grid_position: grid_position[i],
                quali_s: quali[i],
                pace: paces[i],
                segments: Vec::new(),
                laps: Vec::new(),
                laps_completed: 0,
                finish_time: None,
                retire_time: None,
                retire_progress: 0.0,
                pit: None,
                stints: Vec::new(),
                drs_open: Vec::new(),
            })
            .collect();
        let mut formation_end = t_formation;
        for (i, car) in cars.iter_mut().enumerate() {
            let g = grid_offset(i);
            let leave = t_formation + 0.8 * f64::from(car.grid_position - 1);
            let table = Arc::new(LapTable::build(
                &track,
                &StretchSpec {
                    from_rest: true,
                    stop_at_end: true,
                    speed_cap: FORMATION_CAP,
                    ..StretchSpec::flying(-g, length - g)
                },
            ));
            let f = 1.0 + 0.02 * rng.f64();
            formation_end = formation_end.max(leave + table.duration(f));
            car.segments.push(Segment {
                t0: 0.0,
                motion: Motion::Hold { s: -g, lane: false },
                progress: Progress::Fixed(-g),
                lap: 0,
            });
            car.segments.push(Segment {
                t0: leave,
                motion: Motion::Move { table, f },
                progress: Progress::Fixed(-g),
                lap: 0,
            });
            car.segments.push(Segment {
                t0: leave + car.segments[1].duration(),
                motion: Motion::Hold { s: -g, lane: false },
                progress: Progress::Fixed(-g),
                lap: 0,
            });
        }
        let t_lights_out = (formation_end + 20.0 + rng.f64() * 8.0).round();

        // The race, lap by lap.
        let flying = Arc::new(LapTable::build(&track, &StretchSpec::flying(0.0, length)));
        let mut tables: HashMap<(u8, usize), Arc<LapTable>> = HashMap::new();
        let mut lap_end: Vec<f64> = vec![t_lights_out; n];
        let mut running: Vec<bool> = vec![true; n];
        let mut age: Vec<u32> = vec![0; n];
        let mut compound: Vec<Compound> = first_compound.clone();
        for k in 1..=laps {
            let mut order: Vec<usize> = (0..n).filter(|&c| running[c]).collect();
            if k == 1 {
                order.sort_by_key(|&c| grid_position[c]);
            } else {
                order.sort_by(|&a, &b| lap_end[a].total_cmp(&lap_end[b]));
            }
            // (car, t0, end, takes part in the fight for position)
            let mut done: Vec<(usize, f64, f64, bool)> = Vec::with_capacity(order.len());
            for &c in &order {
                let t0 = lap_end[c];
                let pit_in = pit_lap[c] == Some(k);
                let pit_out = k > 1 && pit_lap[c] == Some(k - 1);
                let retire_here = retirement.filter(|r| r.0 == c && r.1 == k);
                let team_box = car_box_m(&cars[c].entry);
                let key = if k == 1 && !pit_in && retire_here.is_none() {
                    Some((1u8, grid_position[c] as usize))
                } else if !pit_in && !pit_out && retire_here.is_none() {
                    Some((0u8, 0))
                } else {
                    None
                };
                let table = match key {
                    Some((0, _)) => flying.clone(),
                    Some(key) => tables
                        .entry(key)
                        .or_insert_with(|| {
                            Arc::new(LapTable::build(
                                &track,
                                &StretchSpec {
                                    from_rest: true,
                                    ..StretchSpec::flying(-grid_offset(c), length)
                                },
                            ))
                        })
                        .clone(),
                    None => {
                        let s_start = if k == 1 { -grid_offset(c) } else { 0.0 };
                        let s_end = retire_here.map_or(length, |r| r.2);
                        Arc::new(LapTable::build(
                            &track,
                            &StretchSpec {
                                from_rest: k == 1,
                                stop_at_end: retire_here.is_some(),
                                lane_until: pit_out.then_some(track.pit_exit_m),
                                lane_from: pit_in.then_some(track.pit_entry_m),
                                box_stop: pit_out.then_some((team_box, stop_seconds[c])),
                                ..StretchSpec::flying(s_start, s_end)
                            },
                        ))
                    }
                };
                // Target pace for this lap.
                let (offset, wear) = compound[c].effect();
                let fuel = FUEL_EFFECT_S * (1.0 - f64::from(k - 1) / f64::from(laps.max(1)));
                let target = BASE_RACE_LAP_S * (cars[c].pace + 0.003 * normal(&mut rng))
                    + offset
                    + wear * f64::from(age[c])
                    + fuel;
                let mut f = target / reference;
                if k == 1 {
                    f += 0.004 * rng.f64();
                }
                let mut end = t0 + table.duration(f);
                let fights = !pit_in && !pit_out && retire_here.is_none();
                if fights {
                    for &(_, a_t0, a_end, a_fights) in done.iter().rev() {
                        if t0 - a_t0 > 3.0 {
                            break;
                        }
                        if !a_fights || end >= a_end + HELD_GAP_S {
                            continue;
                        }
                        let advantage = (a_end + HELD_GAP_S - end).min(1.0);
                        let chance = if k == 1 { 0.45 } else { 0.15 } + 0.4 * advantage;
                        if rng.f64() < chance {
                            end = end.min(a_end - 0.15 - 0.2 * rng.f64());
                        } else {
                            end = a_end + HELD_GAP_S + 0.35 * rng.f64();
                            break;
                        }
                    }
                    f = table.factor_for(end - t0);
                }
                done.push((c, t0, end, fights));
                let car = &mut cars[c];
                car.laps.push(RaceLap {
                    number: k,
                    t0,
                    t1: end,
                    table: table.clone(),
                    f,
                    complete: retire_here.is_none(),
                    pit_in,
                    pit_out,
                });
                car.segments.push(Segment {
                    t0,
                    motion: Motion::Move {
                        table: table.clone(),
                        f,
                    },
                    progress: Progress::Along(f64::from(k - 1) * length),
                    lap: k,
                });
                if pit_in {
                    car.pit = Some(PitStop {
                        lap: k,
                        t_lane_in: t0 + table.time_at(track.pit_entry_m, f),
                        t_lane_out: f64::NAN,
                        stop_s: stop_seconds[c],
                    });
                }
                if pit_out {
                    if let Some(pit) = car.pit.as_mut() {
                        pit.t_lane_out = t0 + table.time_at(track.pit_exit_m, f);
                    }
                    compound[c] = second_compound(first_compound[c]);
                    age[c] = 0;
                }
                age[c] += 1;
                lap_end[c] = end;
                if let Some(r) = retire_here {
                    running[c] = false;
                    car.retire_time = Some(end);
                    car.retire_progress = f64::from(k - 1) * length + r.2;
                    car.segments.push(Segment {
                        t0: end,
                        motion: Motion::Hold {
                            s: r.2,
                            lane: false,
                        },
                        progress: Progress::Fixed(car.retire_progress),
                        lap: 0,
                    });
                }
            }
        }

        // The flag falls when the first car completes the distance; every other car ends
        // with the lap it is on.
        let t_chequered = cars
            .iter()
            .filter_map(|car| car.laps.iter().find(|l| l.number == laps && l.complete))
            .map(|l| l.t1)
            .fold(f64::INFINITY, f64::min);
        let mut finishers: Vec<(usize, f64)> = Vec::new();
        for (i, car) in cars.iter_mut().enumerate() {
            if car.retire_time.is_some() {
                car.laps_completed = car.laps.iter().filter(|l| l.complete).count() as u32;
                continue;
            }
            car.laps.retain(|l| l.t0 < t_chequered);
            car.segments
                .retain(|s| s.lap == 0 || car.laps.iter().any(|l| l.number == s.lap));
            car.laps_completed = car.laps.len() as u32;
            if let Some(last) = car.laps.last() {
                car.finish_time = Some(last.t1);
                finishers.push((i, last.t1));
            }
            if let Some(pit) = &car.pit {
                if !car.laps.iter().any(|l| l.pit_out) || pit.lap > car.laps_completed {
                    car.pit = None;
                }
            }
        }
        finishers.sort_by(|a, b| {
            cars[b.0]
                .laps_completed
                .cmp(&cars[a.0].laps_completed)
                .then(a.1.total_cmp(&b.1))
        });

        // Cool-down lap into parc fermé in the pit lane.
        let mut t_end = t_chequered;
        let spacing = (150.0 / n as f64).min(8.0);
        for (rank, &(c, finish)) in finishers.iter().enumerate() {
            let car = &mut cars[c];
            let base = f64::from(car.laps_completed) * length;
            let finished_in_lane = car.laps.last().is_some_and(|l| l.pit_in);
            let (motion, hold, done_at) = if finished_in_lane {
                (
                    None,
                    Motion::Hold {
                        s: length,
                        lane: true,
                    },
                    finish,
                )
            } else {
                let park = track.pit_entry_m + 15.0 + spacing * rank as f64;
                let table = Arc::new(LapTable::build(
                    &track,
                    &StretchSpec {
                        stop_at_end: true,
                        lane_from: Some(track.pit_entry_m),
                        speed_cap: COOL_DOWN_CAP,
                        ..StretchSpec::flying(0.0, park)
                    },
                ));
                let f = 1.0 + 0.05 * rng.f64();
                let done_at = finish + table.duration(f);
                (
                    Some(Motion::Move { table, f }),
                    Motion::Hold {
                        s: park,
                        lane: true,
                    },
                    done_at,
                )
            };
            if let Some(motion) = motion {
                car.segments.push(Segment {
                    t0: finish,
                    motion,
                    progress: Progress::Fixed(base),
                    lap: 0,
                });
            }
            car.segments.push(Segment {
                t0: done_at,
                motion: hold,
                progress: Progress::Fixed(base),
                lap: 0,
            });
            t_end = t_end.max(done_at);
        }
        for (i, car) in cars.iter_mut().enumerate() {
            let limit = car.laps_completed.max(1);
            let first = first_compound[i];
            car.stints = match car.pit.as_ref().map(|p| p.lap) {
                Some(p) => vec![
                    StintPlan {
                        compound: first,
                        lap_start: 1,
                        lap_end: p,
                        tyre_age_at_start: 0,
                    },
                    StintPlan {
                        compound: second_compound(first),
                        lap_start: p + 1,
                        lap_end: limit.max(p + 1),
                        tyre_age_at_start: 0,
                    },
                ],
                None => vec![StintPlan {
                    compound: first,
                    lap_start: 1,
                    lap_end: limit,
                    tyre_age_at_start: 0,
                }],
            };
        }
        let t_end = t_end + 60.0;

        let sector_ends_m = [
            track.distance_at_time_fraction(1.0 / 3.0),
            track.distance_at_time_fraction(2.0 / 3.0),
        ];
        let st = track.fastest_point_in(0.0, sector_ends_m[0].min(1200.0));
        let speed_traps_m = [
            track.fastest_point_in(st + 300.0, sector_ends_m[0]),
            track.fastest_point_in(sector_ends_m[0], sector_ends_m[1]),
            st,
        ];

        let yellow = match cars.iter().find(|c| c.retire_time.is_some()) {
            Some(car) => {
                let t = car.retire_time.unwrap_or(t_lights_out) + 3.0;
                Yellow {
                    t_start: t,
                    t_clear: (t + 100.0).min(t_chequered - 1.0).max(t + 5.0),
                    marshal_sector: track.marshal_sector(car.retire_progress.rem_euclid(length)),
                }
            }
            None => {
                let t = t_lights_out + (t_chequered - t_lights_out) * (0.3 + 0.4 * rng.f64());
                Yellow {
                    t_start: t,
                    t_clear: t + 20.0 + 10.0 * rng.f64(),
                    marshal_sector: track.marshal_sector(length * rng.f64()),
                }
            }
        };

        let mut race = Race {
            track,
            cars,
            laps_total: laps,
            t_formation,
            t_lights_out,
            t_chequered,
            t_end,
            sector_ends_m,
            speed_traps_m,
            yellow,
            drs_enabled: None,
        };
        race.drs_enabled = race.leader_lap_start(3);
        race.compute_drs();
        race
    }
}

/// Where a team's pit box is, metres after the line (in the lane).
fn car_box_m(entry: &Entry) -> f64 {
    35.0 + 11.0 * (entry.team_index % 10) as f64
}

fn second_compound(first: Compound) -> Compound {
    match first {
        Compound::Soft | Compound::Medium => Compound::Hard,
        Compound::Hard => Compound::Medium,
    }
}

impl Segment {
    fn duration(&self) -> f64 {
        match &self.motion {
            Motion::Hold { .. } => f64::INFINITY,
            Motion::Move { table, f } => table.duration(*f),
        }
    }
}

impl Race {
    /// What car `c` is doing at `t`.
    pub fn state(&self, c: usize, t: f64) -> CarState {
        let segments = &self.cars[c].segments;
        let i = segments.partition_point(|s| s.t0 <= t).max(1) - 1;
        let segment = &segments[i];
        let spot = match &segment.motion {
            Motion::Hold { s, lane } => Spot {
                s: *s,
                in_lane: *lane,
                speed: 0.0,
                accel: 0.0,
            },
            Motion::Move { table, f } => table.spot_at(t - segment.t0, *f),
        };
        let progress = match segment.progress {
            Progress::Along(base) => base + spot.s,
            Progress::Fixed(value) => value,
        };
        CarState {
            spot,
            progress,
            lap: segment.lap,
        }
    }

    /// Ranking key at `t`: higher is further ahead. Finished cars rank by laps, then by
    /// who finished first; retired cars rank last.
    pub fn rank_key(&self, c: usize, t: f64) -> (f64, f64) {
        let car = &self.cars[c];
        if car.retire_time.is_some_and(|r| r <= t) {
            return (-1e12 + car.retire_progress, 0.0);
        }
        if let Some(finish) = car.finish_time.filter(|&f| f <= t) {
            return (f64::from(car.laps_completed) * self.track.length_m, -finish);
        }
        if t < self.t_lights_out {
            return (-f64::from(car.grid_position), 0.0);
        }
        (self.state(c, t).progress, 0.0)
    }

    /// Car indices in race order at `t`.
    pub fn order_at(&self, t: f64) -> Vec<usize> {
        let mut keyed: Vec<(usize, (f64, f64))> = (0..self.cars.len())
            .map(|c| (c, self.rank_key(c, t)))
            .collect();
        keyed.sort_by(|a, b| {
            b.1 .0
                .total_cmp(&a.1 .0)
                .then(b.1 .1.total_cmp(&a.1 .1))
                .then(
                    self.cars[a.0]
                        .grid_position
                        .cmp(&self.cars[b.0].grid_position),
                )
        });
        keyed.into_iter().map(|(c, _)| c).collect()
    }

    /// When car `c` first reached race distance `progress`, if it did while racing.
    pub fn time_at_progress(&self, c: usize, progress: f64) -> Option<f64> {
        let length = self.track.length_m;
        self.cars[c].laps.iter().find_map(|lap| {
            let base = f64::from(lap.number - 1) * length;
            let s = progress - base;
            (s >= lap.table.s_start() && s <= lap.table.s_end())
                .then(|| lap.t0 + lap.table.time_at(s, lap.f))
        })
    }

    /// When the race leader started lap `k`.
    fn leader_lap_start(&self, k: u32) -> Option<f64> {
        self.cars
            .iter()
            .filter_map(|car| car.laps.iter().find(|l| l.number == k))
            .map(|l| l.t0)
            .reduce(f64::min)
    }

    /// DRS opens in a zone for a car within a second of another car at its activation
    /// point, from lap 3 on.
    fn compute_drs(&mut self) {
        let length = self.track.length_m;
        for k in 3..=self.laps_total {
            for (from, to) in DRS_ZONES {
                let start = f64::from(k - 1) * length + from;
                let end = if to < from {
                    start + (length - from) + to
                } else {
                    start + (to - from)
                };
                let mut crossings: Vec<(f64, usize)> = (0..self.cars.len())
                    .filter_map(|c| {
                        let t = self.time_at_progress(c, start)?;
                        let lap = self.cars[c]
                            .laps
                            .iter()
                            .find(|l| l.number == k && t >= l.t0 && t <= l.t1)?;
                        // Not from the pit lane.
                        (!lap.pit_in).then_some((t, c))
                    })
                    .collect();
                crossings.sort_by(|a, b| a.0.total_cmp(&b.0));
                for pair in crossings.windows(2) {
                    if pair[1].0 - pair[0].0 < 1.0 {
                        self.cars[pair[1].1].drs_open.push((start, end));
                    }
                }
            }
        }
        for car in &mut self.cars {
            car.drs_open.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
    }

    /// DRS state of car `c` at race distance `progress`: 12 open, 8 eligible soon, 0 off.
    pub fn drs_at(&self, c: usize, progress: f64) -> u8 {
        let zones = &self.cars[c].drs_open;
        let i = zones.partition_point(|z| z.0 <= progress);
        if i > 0 && progress < zones[i - 1].1 {
            return 12;
        }
        if i < zones.len() && zones[i].0 - progress < 150.0 {
            return 8;
        }
        0
    }

    pub fn data_end(&self) -> f64 {
        self.t_end
    }
}
