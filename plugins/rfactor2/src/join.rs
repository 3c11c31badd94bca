//! Telemetry joined to scoring: the common [`CarTelemetry`] record.
//!
//! The two buffers list vehicles in their own orders, so they are joined by `mID`, never by
//! index, and only the `[0, mNumVehicles)` entries of each are looked at (the parsers return
//! just those). Conventions follow `pitwall_api::telemetry`:
//!
//! - speed: the length of the local velocity, in km/h;
//! - `acc_g`: the local acceleration / 9.81, in rF2's own axis order, which is also Assetto
//!   Corsa's (x lateral, y vertical, z longitudinal; rF2's +x points left, +z backwards);
//! - pedals and steering: the *filtered* inputs (what the car got, after aids);
//! - lap times of -1 (none yet) become `None`; the current lap's time is telemetry's
//!   elapsed time minus the lap's start;
//! - `spline`: the car's `mLapDist` over the track's `mLapDist`, clamped to 0..1;
//! - `status`: scoring's `mGamePhase`; `session_type`: `mSession`;
//! - tyre temperature: the mean of the tread's three zones, in °C.
//!
//! Numbers that are not finite as `f32` (a game writing NaN, or garbage) become 0.

use std::collections::HashMap;
use std::sync::Arc;

use pitwall_api::telemetry::lap_time;
use pitwall_api::CarTelemetry;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::parse::{text, Scoring, Telemetry, VehicleScoring, VehicleTelemetry};

const G: f64 = 9.81;
const KELVIN: f64 = 273.15;

/// Which cars become records.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cars {
    /// Only the car of the person at this rig (`mIsPlayer` in scoring).
    #[default]
    Player,
    /// Every valid vehicle (opponents too).
    All,
}

/// What every record of one stream shares.
#[derive(Clone, Debug)]
pub struct Stream {
    pub game: Arc<str>,
    pub session: Arc<str>,
}

/// Names seen on the buffers, decoded once and shared between frames (128 cars would
/// otherwise allocate four strings each, fifty times a second).
#[derive(Debug, Default)]
pub struct Names {
    known: HashMap<Box<[u8]>, Arc<str>>,
}

impl Names {
    /// Names kept before the cache starts over (a long league night sees a few hundred).
    const MAX: usize = 4096;

    /// The decoded name; `None` for an empty one.
    pub fn get(&mut self, bytes: &[u8]) -> Option<Arc<str>> {
        if bytes.is_empty() {
            return None;
        }
        if let Some(name) = self.known.get(bytes) {
            return Some(name.clone());
        }
        let name: Arc<str> = Arc::from(text(bytes).as_ref());
        if name.is_empty() {
            return None;
        }
        if self.known.len() >= Self::MAX {
            self.known.clear();
        }
        self.known.insert(bytes.into(), name.clone());
        Some(name)
    }
}

/// The records of one telemetry frame. Without scoring yet, `Cars::Player` yields nothing
/// (no car is known to be the player's) and `Cars::All` yields telemetry-only records.
pub fn join(
    telemetry: &Telemetry<'_>,
    scoring: Option<&Scoring<'_>>,
    cars: Cars,
    stream: &Stream,
    monotonic_ns: u64,
    names: &mut Names,
) -> Vec<CarTelemetry> {
    let scored = |id: i32| scoring.and_then(|s| s.vehicles.iter().find(|v| v.id == id));
    match cars {
        Cars::Player => {
            let Some(player) = scoring.and_then(|s| s.vehicles.iter().find(|v| v.is_player)) else {
                return Vec::new();
            };
            telemetry
                .vehicles
                .iter()
                .find(|v| v.id == player.id)
                .map(|car| record(car, Some(player), scoring, stream, monotonic_ns, names))
                .into_iter()
                .collect()
        }
        Cars::All => telemetry
            .vehicles
            .iter()
            .map(|car| record(car, scored(car.id), scoring, stream, monotonic_ns, names))
            .collect(),
    }
}

fn record(
    car: &VehicleTelemetry<'_>,
    scored: Option<&VehicleScoring<'_>>,
    scoring: Option<&Scoring<'_>>,
    stream: &Stream,
    monotonic_ns: u64,
    names: &mut Names,
) -> CarTelemetry {
    let info = scoring.map(|s| &s.info);
    let vel = car.local_vel.map(finite);
    let speed_ms = (vel[0] * vel[0] + vel[1] * vel[1] + vel[2] * vel[2]).sqrt();
    let car_model = scored
        .and_then(|s| names.get(s.vehicle_name))
        .or_else(|| names.get(car.vehicle_name));
    let track = info
        .and_then(|i| names.get(i.track_name))
        .or_else(|| names.get(car.track_name));
    let spline = match (scored, info) {
        (Some(s), Some(i)) if finite(i.lap_dist) > 0.0 => {
            num(finite(s.lap_dist) / i.lap_dist).clamp(0.0, 1.0)
        }
        _ => 0.0,
    };
    let wheels = |f: &dyn Fn(usize) -> f64| [0, 1, 2, 3].map(|i| num(f(i)));
    CarTelemetry {
        game: stream.game.clone(),
        session: stream.session.clone(),
        car_id: car.id,
        is_player: scored.is_some_and(|s| s.is_player),
        monotonic_ns,
        driver: scored.and_then(|s| names.get(s.driver_name)),
        car_model,
        track,
        track_configuration: None,
        speed_kmh: num(speed_ms * 3.6),
        throttle: num(car.filtered_throttle),
        brake: num(car.filtered_brake),
        clutch: num(car.filtered_clutch),
        steering: num(car.filtered_steering),
        gear: car.gear,
        rpm: num(car.engine_rpm),
        max_rpm: num(car.engine_max_rpm),
        acc_g: car.local_accel.map(|a| num(finite(a) / G)),
        velocity: vel.map(num),
        angular_velocity: car.local_rot.map(num),
        tyre_slip: [0.0; 4],
        tyre_load: wheels(&|i| car.wheels[i].tire_load_n),
        tyre_temp_c: wheels(&|i| {
            let zones = car.wheels[i].temperature_k.map(finite);
            let mean = zones.iter().sum::<f64>() / 3.0;
            if mean > 0.0 {
                mean - KELVIN
            } else {
                0.0
            }
        }),
        suspension_travel: wheels(&|i| car.wheels[i].suspension_deflection_m),
        position: car.pos.map(num),
        status: info.map_or(0, |i| i32::from(i.game_phase)),
        session_type: info.map(|i| i.session),
        completed_laps: scored.map_or(0, |s| i32::from(s.total_laps.max(0))),
        place: scored.map_or(0, |s| i32::from(s.place)),
        spline,
        current_lap_s: lap_time(num(finite(car.elapsed_time) - finite(car.lap_start_et))),
        last_lap_s: scored.and_then(|s| lap_time(num(s.last_lap_time))),
        best_lap_s: scored.and_then(|s| lap_time(num(s.best_lap_time))),
        lap_time_s: None,
        delta_lap_s: 0.0,
        in_pit: scored.is_some_and(|s| s.in_pits),
    }
}

fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// As `f32`, 0 for anything not finite there (NaN, infinities, and numbers too big for an
/// `f32`, which garbage produces).
fn num(x: f64) -> f32 {
    let y = x as f32;
    if y.is_finite() {
        y
    } else {
        0.0
    }
}
