//! Lap tables: how one car moves through one stretch of track, as distance against time.
//!
//! A table integrates `dt = ds / v` along the stretch at nodes a few metres apart. Time on
//! track ("racing time") is later scaled by the lap's pace factor `f`; time in the pit lane
//! (speed limit, the stop itself) is not, because every car drives the lane alike. So one
//! table serves every car and lap of its shape, and a lap of any duration is a choice of `f`.

use super::track::{Track, STEP_M, V_PIT};

/// Acceleration from a standstill on the grid, m/s².
const A_START: f64 = 11.0;
/// Acceleration and braking inside the pit lane, m/s².
const A_PIT: f64 = 8.0;
/// Braking towards the pit lane, m/s².
const B_LANE: f64 = 30.0;
/// Gentle stop at the end of a formation or cool-down lap, m/s².
const B_SOFT: f64 = 6.0;

/// The shape of one stretch.
#[derive(Clone, Debug)]
pub(crate) struct StretchSpec {
    pub s_start: f64,
    pub s_end: f64,
    /// Starts from a standstill (grid).
    pub from_rest: bool,
    /// Comes to a standstill at `s_end`.
    pub stop_at_end: bool,
    /// In the pit lane before this distance (an out-lap).
    pub lane_until: Option<f64>,
    /// In the pit lane from this distance on (an in-lap).
    pub lane_from: Option<f64>,
    /// A stop in the lane: (distance, seconds).
    pub box_stop: Option<(f64, f64)>,
    /// Fraction of racing speed (formation and cool-down laps are slow).
    pub speed_cap: f64,
}

impl StretchSpec {
    pub fn flying(s_start: f64, s_end: f64) -> Self {
        Self {
            s_start,
            s_end,
            from_rest: false,
            stop_at_end: false,
            lane_until: None,
            lane_from: None,
            box_stop: None,
            speed_cap: 1.0,
        }
    }
}

#[derive(Debug)]
pub(crate) struct LapTable {
    /// Metres along the lap (unwrapped; a grid start is negative), non-decreasing.
    s: Vec<f64>,
    /// Cumulative racing time, scaled by the pace factor.
    racing: Vec<f64>,
    /// Cumulative fixed time (pit lane).
    fixed: Vec<f64>,
    lane_until: f64,
    lane_from: f64,
}

/// Where a car is within a table.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Spot {
    pub s: f64,
    pub in_lane: bool,
    /// m/s.
    pub speed: f64,
    /// Speed is rising (for throttle and brake).
    pub accel: f64,
}

impl LapTable {
    pub fn build(track: &Track, spec: &StretchSpec) -> LapTable {
        let lane_until = spec.lane_until.unwrap_or(f64::NEG_INFINITY);
        let lane_from = spec.lane_from.unwrap_or(f64::INFINITY);
        let mut breaks = vec![spec.s_start, spec.s_end];
        for b in [spec.lane_until, spec.lane_from, spec.box_stop.map(|b| b.0)]
            .into_iter()
            .flatten()
        {
            if b > spec.s_start && b < spec.s_end {
                breaks.push(b);
            }
        }
        breaks.sort_by(f64::total_cmp);
        breaks.dedup();
        let mut nodes = vec![spec.s_start];
        for pair in breaks.windows(2) {
            let cells = ((pair[1] - pair[0]) / STEP_M).ceil().max(1.0) as usize;
            for k in 1..cells {
                nodes.push(pair[0] + (pair[1] - pair[0]) * k as f64 / cells as f64);
            }
            nodes.push(pair[1]);
        }
        let in_lane = |m: f64| m < lane_until || m >= lane_from;
        let speed_at = |m: f64| -> f64 {
            let mut v;
            if in_lane(m) {
                v = V_PIT;
                if let Some((s_box, _)) = spec.box_stop {
                    v = v.min((2.0 * A_PIT * (m - s_box).abs()).sqrt());
                }
                if spec.stop_at_end {
                    v = v.min((2.0 * A_PIT * (spec.s_end - m)).sqrt());
                }
            } else {
                v = track.v_race(m) * spec.speed_cap;
                if spec.from_rest {
                    v = v.min((2.0 * A_START * (m - spec.s_start)).sqrt());
                }
                if m >= lane_until {
                    v = v.min((V_PIT * V_PIT + 2.0 * A_START * (m - lane_until)).sqrt());
                }
                if m < lane_from {
                    v = v.min((V_PIT * V_PIT + 2.0 * B_LANE * (lane_from - m)).sqrt());
                }
                if spec.stop_at_end {
                    v = v.min((2.0 * B_SOFT * (spec.s_end - m)).sqrt());
                }
            }
            v.max(1.0)
        };
        let mut table = LapTable {
            s: Vec::with_capacity(nodes.len() + 1),
            racing: Vec::with_capacity(nodes.len() + 1),
            fixed: Vec::with_capacity(nodes.len() + 1),
            lane_until,
            lane_from,
        };
        let (mut racing, mut fixed) = (0.0, 0.0);
        table.push(nodes[0], racing, fixed);
        for pair in nodes.windows(2) {
            let mid = (pair[0] + pair[1]) / 2.0;
            let dt = (pair[1] - pair[0]) / speed_at(mid);
            if in_lane(mid) {
                fixed += dt;
            } else {
                racing += dt;
            }
            table.push(pair[1], racing, fixed);
            if let Some((s_box, seconds)) = spec.box_stop {
                if pair[1] == s_box {
                    fixed += seconds;
                    table.push(pair[1], racing, fixed);
                }
            }
        }
        table
    }

    fn push(&mut self, s: f64, racing: f64, fixed: f64) {
        self.s.push(s);
        self.racing.push(racing);
        self.fixed.push(fixed);
    }

    pub fn s_start(&self) -> f64 {
        self.s[0]
    }

    pub fn s_end(&self) -> f64 {
        *self.s.last().unwrap_or(&0.0)
    }

    pub fn racing_total(&self) -> f64 {
        *self.racing.last().unwrap_or(&0.0)
    }

    pub fn fixed_total(&self) -> f64 {
        *self.fixed.last().unwrap_or(&0.0)
    }

    /// Duration of the stretch at pace factor `f`.
    pub fn duration(&self, f: f64) -> f64 {
        f * self.racing_total() + self.fixed_total()
    }

    /// The pace factor that makes the stretch last `duration` seconds.
    pub fn factor_for(&self, duration: f64) -> f64 {
        let racing = self.racing_total().max(1e-9);
        ((duration - self.fixed_total()) / racing).max(0.1)
    }

    pub fn in_lane(&self, s: f64) -> bool {
        s < self.lane_until || s >= self.lane_from
    }

    fn time_at_node(&self, i: usize, f: f64) -> f64 {
        f * self.racing[i] + self.fixed[i]
    }

    /// Where the car is `tau` seconds into the stretch at pace factor `f`.
    pub fn spot_at(&self, tau: f64, f: f64) -> Spot {
        let n = self.s.len();
        // First node whose time is beyond tau.
        let mut lo = 0usize;
        let mut hi = n;
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.time_at_node(mid, f) <= tau {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            return self.stopped(self.s[0]);
        }
        if lo >= n {
            return self.stopped(self.s[n - 1]);
        }
        let (i, j) = (lo - 1, lo);
        let (t0, t1) = (self.time_at_node(i, f), self.time_at_node(j, f));
        let ds = self.s[j] - self.s[i];
        if ds <= 0.0 || t1 <= t0 {
            return self.stopped(self.s[i]);
        }
        let frac = (tau - t0) / (t1 - t0);
        let s = self.s[i] + ds * frac;
        let speed = ds / (t1 - t0);
        // Neighbouring cell speeds, for the sign of acceleration.
        let cell_speed = |a: usize, b: usize| -> f64 {
            let (ta, tb) = (self.time_at_node(a, f), self.time_at_node(b, f));
            if tb > ta {
                (self.s[b] - self.s[a]) / (tb - ta)
            } else {
                0.0
            }
        };
        let next = if j + 1 < n {
            cell_speed(j, j + 1)
        } else {
            speed
        };
        let prev = if i > 0 { cell_speed(i - 1, i) } else { speed };
        Spot {
            s,
            in_lane: self.in_lane(s),
            speed,
            accel: (next - prev) / (2.0 * (t1 - t0)).max(1e-3),
        }
    }

    fn stopped(&self, s: f64) -> Spot {
        Spot {
            s,
            in_lane: self.in_lane(s),
            speed: 0.0,
            accel: 0.0,
        }
    }

    /// Seconds into the stretch at which the car first reaches `s` (clamped to the stretch).
    pub fn time_at(&self, s: f64, f: f64) -> f64 {
        let n = self.s.len();
        let j = self.s.partition_point(|&x| x < s);
        if j == 0 {
            return self.time_at_node(0, f);
        }
        if j >= n {
            return self.time_at_node(n - 1, f);
        }
        let i = j - 1;
        let ds = self.s[j] - self.s[i];
        let frac = if ds > 0.0 { (s - self.s[i]) / ds } else { 0.0 };
        let (t0, t1) = (self.time_at_node(i, f), self.time_at_node(j, f));
        t0 + (t1 - t0) * frac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_invert_and_scale() {
        let track = Track::monza();
        let flying = LapTable::build(&track, &StretchSpec::flying(0.0, track.length_m));
        let lap = flying.duration(1.0);
        assert!((lap - track.reference_lap_s()).abs() < 0.5, "{lap}");
        let f = flying.factor_for(85.0);
        assert!((flying.duration(f) - 85.0).abs() < 1e-9);
        for tau in [0.0, 10.0, 42.5, 84.9] {
            let spot = flying.spot_at(tau, f);
            assert!((flying.time_at(spot.s, f) - tau).abs() < 1e-6);
            assert!(spot.speed > 0.0);
        }
        // An out-lap from the pit box stands still for the stop, in the lane.
        let track_len = track.length_m;
        let spec = StretchSpec {
            lane_until: Some(super::super::track::PIT_EXIT_AFTER_LINE_M),
            box_stop: Some((60.0, 2.5)),
            ..StretchSpec::flying(0.0, track_len)
        };
        let out = LapTable::build(&track, &spec);
        let arrive = out.time_at(60.0, 1.0);
        let during = out.spot_at(arrive + 1.0, 1.0);
        assert!((during.s - 60.0).abs() < 1e-9 && during.speed == 0.0 && during.in_lane);
        assert!(out.duration(1.0) > lap + 10.0);
    }
}
