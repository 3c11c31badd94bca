//! The circuit the simulated cars drive: the real Monza outline, its arc length, a speed
//! profile derived from its curvature, and a pit lane beside the main straight.
//!
//! Distances here are metres along the outline from its first point (the start/finish line);
//! coordinates are the outline's own units (1/10 m, OpenF1's `location` frame).

use serde::Deserialize;

/// The MultiViewer circuit JSON of Monza 2020 (see `data/README.md` for its origin).
pub const MONZA_CIRCUIT_JSON: &str = include_str!("../../data/multiviewer-monza-2020.json");

/// Spacing of the speed profile and of lap tables, metres.
pub(crate) const STEP_M: f64 = 5.0;
/// Top speed on the straights, m/s (342 km/h).
pub(crate) const V_TOP: f64 = 95.0;
/// Lateral grip, m/s².
const A_LAT: f64 = 36.0;
/// Pit lane speed limit, m/s (80 km/h).
pub(crate) const V_PIT: f64 = 80.0 / 3.6;
/// Lateral offset of the pit lane from the track centre line, outline units (25 m).
const PIT_OFFSET_UNITS: f64 = 250.0;
/// Length over which the pit lane leaves and rejoins the track, metres.
const PIT_RAMP_M: f64 = 70.0;
/// Pit entry, metres before the line (on the main straight after Parabolica).
const PIT_ENTRY_BEFORE_LINE_M: f64 = 170.0;
/// Pit exit, metres after the line.
pub(crate) const PIT_EXIT_AFTER_LINE_M: f64 = 210.0;

#[derive(Deserialize)]
struct CircuitJson {
    x: Vec<f64>,
    y: Vec<f64>,
    #[serde(default, rename = "miniSectorsIndexes")]
    mini_sectors: Vec<usize>,
    #[serde(default, rename = "marshalSectors")]
    marshal_sectors: Vec<MarshalSector>,
}

#[derive(Deserialize)]
struct MarshalSector {
    number: u32,
    /// Where the marshal sector begins, outline units along the lap.
    length: f64,
}

/// The outline and everything derived from it.
pub(crate) struct Track {
    xs: Vec<f64>,
    ys: Vec<f64>,
    /// Cumulative arc length at each outline point, metres (closed: last = lap length).
    cum_m: Vec<f64>,
    pub length_m: f64,
    /// Racing speed at `i * step_m`, m/s; one entry per step, cyclic.
    v_race: Vec<f64>,
    step_m: f64,
    /// +1 or -1: which side of the direction of travel the pit lane lies on (the inside).
    pit_side: f64,
    pub pit_entry_m: f64,
    pub pit_exit_m: f64,
    /// Metres along the lap where the mini sectors end (from MultiViewer).
    pub mini_sector_ends_m: Vec<f64>,
    /// (start metres, number) of each marshal sector.
    marshal_sectors: Vec<(f64, u32)>,
}

impl Track {
    pub fn monza() -> Track {
        Track::from_json(MONZA_CIRCUIT_JSON).expect("the bundled circuit JSON is valid")
    }

    pub fn from_json(text: &str) -> Result<Track, String> {
        let circuit: CircuitJson = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if circuit.x.len() != circuit.y.len() || circuit.x.len() < 10 {
            return Err("the circuit outline needs matching x[] and y[] of 10+ points".into());
        }
        let mut xs = circuit.x.clone();
        let mut ys = circuit.y.clone();
        // Close the loop.
        xs.push(xs[0]);
        ys.push(ys[0]);
        let mut cum_m = Vec::with_capacity(xs.len());
        let mut total = 0.0;
        cum_m.push(0.0);
        for i in 1..xs.len() {
            total += (xs[i] - xs[i - 1]).hypot(ys[i] - ys[i - 1]) / 10.0;
            cum_m.push(total);
        }
        // Shoelace: a negative area means the outline runs clockwise, so the inside of the
        // circuit is on the right of the direction of travel.
        let area: f64 = (0..xs.len() - 1)
            .map(|i| xs[i] * ys[i + 1] - xs[i + 1] * ys[i])
            .sum();
        let pit_side = if area < 0.0 { 1.0 } else { -1.0 };
        let mini_sector_ends_m = circuit
            .mini_sectors
            .iter()
            .filter_map(|&i| cum_m.get(i).copied())
            .collect();
        let mut marshal_sectors: Vec<(f64, u32)> = circuit
            .marshal_sectors
            .iter()
            .map(|m| ((m.length / 10.0).rem_euclid(total), m.number))
            .collect();
        marshal_sectors.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut track = Track {
            xs,
            ys,
            cum_m,
            length_m: total,
            v_race: Vec::new(),
            step_m: STEP_M,
            pit_side,
            pit_entry_m: total - PIT_ENTRY_BEFORE_LINE_M,
            pit_exit_m: PIT_EXIT_AFTER_LINE_M,
            mini_sector_ends_m,
            marshal_sectors,
        };
        track.compute_speed_profile();
        Ok(track)
    }

    /// Wrap a distance into `[0, length)`.
    pub fn wrap(&self, s: f64) -> f64 {
        s.rem_euclid(self.length_m)
    }

    /// The centre line at `s` metres, in outline units.
    pub fn point(&self, s: f64) -> (f64, f64) {
        let s = self.wrap(s);
        let i = self
            .cum_m
            .partition_point(|&c| c <= s)
            .clamp(1, self.cum_m.len() - 1);
        let (c0, c1) = (self.cum_m[i - 1], self.cum_m[i]);
        let frac = if c1 > c0 { (s - c0) / (c1 - c0) } else { 0.0 };
        (
            self.xs[i - 1] + (self.xs[i] - self.xs[i - 1]) * frac,
            self.ys[i - 1] + (self.ys[i] - self.ys[i - 1]) * frac,
        )
    }

    /// Unit direction of travel at `s`, from the outline 10 m either side.
    fn tangent(&self, s: f64) -> (f64, f64) {
        let (x0, y0) = self.point(s - 10.0);
        let (x1, y1) = self.point(s + 10.0);
        let len = (x1 - x0).hypot(y1 - y0).max(1e-9);
        ((x1 - x0) / len, (y1 - y0) / len)
    }

    /// Where a car at `s` metres is: on the track, or in the pit lane beside it.
    pub fn position(&self, s: f64, in_lane: bool) -> (f64, f64) {
        let (x, y) = self.point(s);
        if !in_lane {
            return (x, y);
        }
        let offset = self.lane_offset(s);
        let (tx, ty) = self.tangent(s);
        // Right-hand normal of (tx, ty) is (ty, -tx).
        (
            x + self.pit_side * ty * offset,
            y - self.pit_side * tx * offset,
        )
    }

    /// Lateral offset of the pit lane at `s`, easing in after the entry and out before the exit.
    fn lane_offset(&self, s: f64) -> f64 {
        let lane_len = self.wrap(self.pit_exit_m - self.pit_entry_m);
        let u = self.wrap(s - self.pit_entry_m);
        if u > lane_len {
            return 0.0;
        }
        let ease = |v: f64| {
            let v = v.clamp(0.0, 1.0);
            v * v * (3.0 - 2.0 * v)
        };
        PIT_OFFSET_UNITS * ease(u / PIT_RAMP_M) * ease((lane_len - u) / PIT_RAMP_M)
    }

    /// Racing speed at `s`, m/s.
    pub fn v_race(&self, s: f64) -> f64 {
        let u = self.wrap(s) / self.step_m;
        let n = self.v_race.len();
        let i = (u.floor() as usize).min(n - 1);
        let frac = u - i as f64;
        self.v_race[i] * (1.0 - frac) + self.v_race[(i + 1) % n] * frac
    }

    /// Time of one flying lap at racing speed, seconds.
    pub fn reference_lap_s(&self) -> f64 {
        self.time_to(self.length_m)
    }

    /// Time from the line to `s` at racing speed.
    pub fn time_to(&self, s: f64) -> f64 {
        let n = (s / self.step_m).ceil().max(1.0) as usize;
        let ds = s / n as f64;
        (0..n)
            .map(|i| ds / self.v_race((i as f64 + 0.5) * ds).max(0.5))
            .sum()
    }

    /// The distance at which a flying lap reaches `fraction` of its time.
    pub fn distance_at_time_fraction(&self, fraction: f64) -> f64 {
        let total = self.reference_lap_s();
        let mut t = 0.0;
        let n = (self.length_m / self.step_m).ceil() as usize;
        let ds = self.length_m / n as f64;
        for i in 0..n {
            t += ds / self.v_race((i as f64 + 0.5) * ds).max(0.5);
            if t >= fraction * total {
                return (i + 1) as f64 * ds;
            }
        }
        self.length_m
    }

    /// Where racing speed peaks within `[from, to)` metres.
    pub fn fastest_point_in(&self, from: f64, to: f64) -> f64 {
        let mut best = (from, 0.0);
        let mut s = from;
        while s < to {
            let v = self.v_race(s);
            if v > best.1 {
                best = (s, v);
            }
            s += self.step_m;
        }
        best.0
    }

    /// The marshal sector number at `s` (1 when the circuit has none).
    pub fn marshal_sector(&self, s: f64) -> u32 {
        let s = self.wrap(s);
        self.marshal_sectors
            .iter()
            .rev()
            .find(|(start, _)| *start <= s)
            .or(self.marshal_sectors.last())
            .map_or(1, |(_, number)| *number)
    }

    /// Curvature-limited speeds, then acceleration and braking limits around the loop.
    fn compute_speed_profile(&mut self) {
        let n = (self.length_m / STEP_M).round().max(8.0) as usize;
        self.step_m = self.length_m / n as f64;
        let ds = self.step_m;
        let heading: Vec<f64> = (0..n)
            .map(|i| {
                let (tx, ty) = self.tangent(i as f64 * ds);
                ty.atan2(tx)
            })
            .collect();
        let wrap_pi = |a: f64| {
            let mut a = a % std::f64::consts::TAU;
            if a > std::f64::consts::PI {
                a -= std::f64::consts::TAU;
            } else if a < -std::f64::consts::PI {
                a += std::f64::consts::TAU;
            }
            a
        };
        let curvature: Vec<f64> = (0..n)
            .map(|i| wrap_pi(heading[(i + 1) % n] - heading[(i + n - 1) % n]) / (2.0 * ds))
            .collect();
        // Smooth over ±15 m: the outline's integer coordinates make raw curvature noisy.
        let window = 3usize;
        let mut v: Vec<f64> = (0..n)
            .map(|i| {
                let sum: f64 = (0..=2 * window)
                    .map(|k| curvature[(i + n + k - window) % n])
                    .sum();
                let kappa = (sum / (2 * window + 1) as f64).abs();
                if kappa < 1e-6 {
                    V_TOP
                } else {
                    (A_LAT / kappa).sqrt().min(V_TOP)
                }
            })
            .collect();
        let accel = |v: f64| (11.0 * (1.0 - v / 102.0)).max(0.5);
        let brake = |v: f64| 28.0 + 22.0 * (v / V_TOP).min(1.0);
        for _ in 0..2 {
            for i in 0..n {
                let j = (i + 1) % n;
                let reachable = (v[i] * v[i] + 2.0 * accel(v[i]) * ds).sqrt();
                v[j] = v[j].min(reachable);
            }
        }
        for _ in 0..2 {
            for i in (0..n).rev() {
                let j = (i + 1) % n;
                let stoppable = (v[j] * v[j] + 2.0 * brake(v[j]) * ds).sqrt();
                v[i] = v[i].min(stoppable);
            }
        }
        self.v_race = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monza_is_a_plausible_lap() {
        let track = Track::monza();
        assert!(
            (5700.0..5850.0).contains(&track.length_m),
            "{}",
            track.length_m
        );
        let lap = track.reference_lap_s();
        assert!((74.0..90.0).contains(&lap), "reference lap {lap}");
        let slowest = (0..1000)
            .map(|i| track.v_race(i as f64 * track.length_m / 1000.0))
            .fold(f64::MAX, f64::min);
        assert!(
            (15.0..40.0).contains(&slowest),
            "slowest corner {slowest} m/s"
        );
        // The pit lane runs beside the main straight, 25 m off the centre line at its middle.
        let mid = track.pit_entry_m + track.wrap(track.pit_exit_m - track.pit_entry_m) / 2.0;
        let (lx, ly) = track.position(mid, true);
        let (tx, ty) = track.position(mid, false);
        assert!(((lx - tx).hypot(ly - ty) - PIT_OFFSET_UNITS).abs() < 1.0);
        assert_eq!(track.marshal_sector(10.0), 1);
        assert_eq!(track.marshal_sector(460.0), 2);
    }
}
