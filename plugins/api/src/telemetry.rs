//! One car's telemetry at one instant, the same record for every game.
//!
//! Assetto Corsa (gRPC bridge, UDP, shared memory), rFactor 2 / Le Mans Ultimate and
//! `.pb.gz` recordings all emit [`CarTelemetry`], so every sink and transform works with
//! every game. Units and conventions are fixed here once:
//!
//! - speed in km/h; pedals 0..1; steering -1 (full left) .. 1 (full right);
//! - gear: -1 reverse, 0 neutral, 1 first gear (Assetto Corsa counts 0 = R, 1 = N: its
//!   sources subtract one, and [`to_frame`] adds it back so recordings stay compatible);
//! - acceleration in g as Assetto Corsa orders it: x lateral, y vertical, z longitudinal;
//! - lap times in seconds, `None` when the game has none yet (rF2 reports -1, AC 0);
//! - `spline`: how far round the lap, 0.0 at the start/finish line up to 1.0.
//!
//! The [`proto`] module is the `telemetry.v1` wire format of the Assetto Corsa bridge
//! (`proto/telemetry/v1/telemetry.proto`), shared by the gRPC source and the recording
//! sink and source.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The `telemetry.v1` protobuf messages, generated at build time from `proto/`.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/telemetry.v1.rs"));
}

/// Names of the games, as they appear in the `game` field of records and recordings.
pub mod game {
    pub const ASSETTO_CORSA: &str = "assetto_corsa";
    pub const RFACTOR2: &str = "rfactor2";
}

/// One car's telemetry at one instant (see the module docs for units and conventions).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CarTelemetry {
    /// The game that produced it (`assetto_corsa`, `rfactor2`, or what a bridge says).
    pub game: Arc<str>,
    /// The stream it belongs to: a rig's session id, a shared-memory buffer's name.
    pub session: Arc<str>,
    /// The game's id for the car (rF2 `mID`, AC car index); 0 when a stream has one car.
    pub car_id: i32,
    /// The car the person at this rig drives.
    pub is_player: bool,
    /// The producer's monotonic clock, in nanoseconds (frames of one stream increase).
    pub monotonic_ns: u64,
    pub driver: Option<Arc<str>>,
    pub car_model: Option<Arc<str>>,
    pub track: Option<Arc<str>>,
    pub track_configuration: Option<Arc<str>>,

    pub speed_kmh: f32,
    pub throttle: f32,
    pub brake: f32,
    pub clutch: f32,
    pub steering: f32,
    pub gear: i32,
    pub rpm: f32,
    /// 0 when the game has not said.
    pub max_rpm: f32,
    pub acc_g: [f32; 3],
    pub velocity: [f32; 3],
    pub angular_velocity: [f32; 3],
    /// Per wheel: front left, front right, rear left, rear right.
    pub tyre_slip: [f32; 4],
    pub tyre_load: [f32; 4],
    pub tyre_temp_c: [f32; 4],
    pub suspension_travel: [f32; 4],

    /// World coordinates in metres (x, y up, z), when the source knows them.
    pub position: [f32; 3],
    /// Session status as the game reports it (AC: 0 off, 1 replay, 2 live, 3 pause).
    pub status: i32,
    /// The game's own code for the kind of session (rF2 `mSession`: 0 test day, 1-4
    /// practice, 5-8 qualifying, 9 warm-up, 10-13 race; AC graphics `session`).
    pub session_type: Option<i32>,
    pub completed_laps: i32,
    /// Race position, 1-based; 0 when unknown.
    pub place: i32,
    pub spline: f32,
    pub current_lap_s: Option<f32>,
    pub last_lap_s: Option<f32>,
    pub best_lap_s: Option<f32>,
    /// The game's own running lap time, when it reports one apart from `current_lap_s`.
    pub lap_time_s: Option<f32>,
    /// Gap to the best lap at this point of the lap (negative = faster).
    pub delta_lap_s: f32,
    pub in_pit: bool,
}

/// A lap time where the game uses 0 or a negative number for "none yet".
pub fn lap_time(seconds: f32) -> Option<f32> {
    (seconds.is_finite() && seconds > 0.0).then_some(seconds)
}

/// Reuses one `Arc<str>` for a string that repeats on every frame (a rig's session id, a
/// car model), so a stream of frames allocates it once.
#[derive(Debug, Default, Clone)]
pub struct Interned(Option<Arc<str>>);

impl Interned {
    pub fn get(&mut self, text: &str) -> Arc<str> {
        match &self.0 {
            Some(arc) if &**arc == text => arc.clone(),
            _ => {
                let arc: Arc<str> = Arc::from(text);
                self.0 = Some(arc.clone());
                arc
            }
        }
    }

    /// Like [`Interned::get`], `None` for an empty string.
    pub fn non_empty(&mut self, text: &str) -> Option<Arc<str>> {
        (!text.is_empty()).then(|| self.get(text))
    }
}

/// Strings a stream of frames repeats: kept between frames by whoever decodes them.
#[derive(Debug, Default, Clone)]
pub struct FrameStrings {
    pub game: Interned,
    pub session: Interned,
    pub car_model: Interned,
    pub track: Interned,
    pub track_configuration: Interned,
}

fn vec3(v: Option<proto::Vec3f>) -> [f32; 3] {
    v.map_or([0.0; 3], |v| [v.x, v.y, v.z])
}

fn wheels(w: Option<proto::Wheel4f>) -> [f32; 4] {
    w.map_or([0.0; 4], |w| [w.fl, w.fr, w.rl, w.rr])
}

fn to_vec3(v: [f32; 3]) -> Option<proto::Vec3f> {
    Some(proto::Vec3f {
        x: v[0],
        y: v[1],
        z: v[2],
    })
}

fn to_wheels(w: [f32; 4]) -> Option<proto::Wheel4f> {
    Some(proto::Wheel4f {
        fl: w[0],
        fr: w[1],
        rl: w[2],
        rr: w[3],
    })
}

/// A bridge frame as the common record. Missing sub-messages read as zeros, which is what
/// proto3 itself does with missing scalars.
pub fn from_frame(frame: &proto::TelemetryFrame, strings: &mut FrameStrings) -> CarTelemetry {
    let physics = frame.physics.unwrap_or_default();
    let graphics = frame.graphics.unwrap_or_default();
    let stat = frame.stat.as_ref();
    let game = if frame.game.is_empty() {
        strings.game.get(game::ASSETTO_CORSA)
    } else {
        strings.game.get(&frame.game)
    };
    CarTelemetry {
        game,
        session: strings.session.get(&frame.session_id),
        car_id: 0,
        is_player: true,
        monotonic_ns: frame.monotonic_ns,
        driver: None,
        car_model: stat.and_then(|s| strings.car_model.non_empty(&s.car_model)),
        track: stat.and_then(|s| strings.track.non_empty(&s.track)),
        track_configuration: stat.and_then(|s| {
            strings
                .track_configuration
                .non_empty(&s.track_configuration)
        }),
        speed_kmh: physics.speed_kmh,
        throttle: physics.gas,
        brake: physics.brake,
        clutch: physics.clutch,
        steering: physics.steer,
        gear: physics.gear - 1,
        rpm: physics.engine_rpm,
        max_rpm: stat.map_or(0.0, |s| s.max_rpm as f32),
        acc_g: vec3(physics.acc_g),
        velocity: vec3(physics.velocity),
        angular_velocity: vec3(physics.angular_velocity),
        tyre_slip: wheels(physics.tyre_slip),
        tyre_load: wheels(physics.tyre_load),
        tyre_temp_c: wheels(physics.tyre_temp_c),
        suspension_travel: wheels(physics.suspension_travel),
        position: [0.0; 3],
        status: graphics.status,
        session_type: None,
        completed_laps: graphics.completed_laps,
        place: graphics.position,
        spline: graphics.normalized_car_pos,
        current_lap_s: lap_time(graphics.i_current_time_s),
        last_lap_s: lap_time(graphics.i_last_time_s),
        best_lap_s: lap_time(graphics.i_best_time_s),
        lap_time_s: lap_time(graphics.lap_time_s),
        delta_lap_s: graphics.delta_lap_s,
        in_pit: false,
    }
}

/// The record as a bridge frame, so any game can be recorded in the `.pb.gz` format the
/// original tools read. The static page is sent when anything in it is known.
pub fn to_frame(car: &CarTelemetry) -> proto::TelemetryFrame {
    let has_static = car.car_model.is_some()
        || car.track.is_some()
        || car.track_configuration.is_some()
        || car.max_rpm > 0.0;
    let text = |s: &Option<Arc<str>>| s.as_deref().unwrap_or_default().to_owned();
    proto::TelemetryFrame {
        monotonic_ns: car.monotonic_ns,
        game: car.game.to_string(),
        session_id: car.session.to_string(),
        physics: Some(proto::Physics {
            speed_kmh: car.speed_kmh,
            gas: car.throttle,
            brake: car.brake,
            clutch: car.clutch,
            gear: car.gear + 1,
            steer: car.steering,
            engine_rpm: car.rpm,
            tyre_slip: to_wheels(car.tyre_slip),
            tyre_load: to_wheels(car.tyre_load),
            tyre_temp_c: to_wheels(car.tyre_temp_c),
            suspension_travel: to_wheels(car.suspension_travel),
            acc_g: to_vec3(car.acc_g),
            velocity: to_vec3(car.velocity),
            angular_velocity: to_vec3(car.angular_velocity),
        }),
        graphics: Some(proto::Graphics {
            status: car.status,
            completed_laps: car.completed_laps,
            position: car.place,
            i_current_time_s: car.current_lap_s.unwrap_or(0.0),
            i_last_time_s: car.last_lap_s.unwrap_or(0.0),
            i_best_time_s: car.best_lap_s.unwrap_or(0.0),
            lap_time_s: car.lap_time_s.unwrap_or(0.0),
            delta_lap_s: car.delta_lap_s,
            normalized_car_pos: car.spline,
        }),
        stat: has_static.then(|| proto::Static {
            car_model: text(&car.car_model),
            track: text(&car.track),
            track_configuration: text(&car.track_configuration),
            max_rpm: car.max_rpm.round() as i32,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn sample_frame() -> proto::TelemetryFrame {
        proto::TelemetryFrame {
            monotonic_ns: 123_456_789,
            game: "assetto_corsa".into(),
            session_id: "rig-7".into(),
            physics: Some(proto::Physics {
                speed_kmh: 212.5,
                gas: 1.0,
                brake: 0.0,
                clutch: 0.0,
                gear: 6,
                steer: -0.1,
                engine_rpm: 7800.0,
                tyre_slip: to_wheels([0.1, 0.2, 0.3, 0.4]),
                tyre_load: to_wheels([3000.0, 3100.0, 3200.0, 3300.0]),
                tyre_temp_c: to_wheels([80.0, 81.0, 82.0, 83.0]),
                suspension_travel: to_wheels([0.01, 0.02, 0.03, 0.04]),
                acc_g: to_vec3([0.5, 1.0, -0.2]),
                velocity: to_vec3([10.0, 0.0, 58.0]),
                angular_velocity: to_vec3([0.0, 0.1, 0.0]),
            }),
            graphics: Some(proto::Graphics {
                status: 2,
                completed_laps: 3,
                position: 1,
                i_current_time_s: 41.2,
                i_last_time_s: 108.3,
                i_best_time_s: 107.9,
                lap_time_s: 41.2,
                delta_lap_s: -0.3,
                normalized_car_pos: 0.42,
            }),
            stat: Some(proto::Static {
                car_model: "ks_ferrari_sf15t".into(),
                track: "monza".into(),
                track_configuration: String::new(),
                max_rpm: 15000,
            }),
        }
    }

    #[test]
    fn a_frame_survives_the_round_trip_through_the_record() {
        let frame = sample_frame();
        let car = from_frame(&frame, &mut FrameStrings::default());
        assert_eq!(car.gear, 5, "AC gear 6 is fifth gear");
        assert_eq!(car.track.as_deref(), Some("monza"));
        assert_eq!(car.track_configuration, None);
        assert_eq!(car.last_lap_s, Some(108.3));
        let back = to_frame(&car);
        assert_eq!(back, frame);
        assert_eq!(back.encode_to_vec(), frame.encode_to_vec());
    }

    #[test]
    fn missing_pages_read_as_zeros_and_no_lap_times() {
        let frame = proto::TelemetryFrame {
            monotonic_ns: 5,
            ..Default::default()
        };
        let car = from_frame(&frame, &mut FrameStrings::default());
        assert_eq!(&*car.game, game::ASSETTO_CORSA);
        assert_eq!(car.gear, -1, "a zeroed AC gear is reverse");
        assert_eq!(car.best_lap_s, None);
        assert!(to_frame(&car).stat.is_none());
    }

    #[test]
    fn interned_strings_are_shared_until_they_change() {
        let mut interned = Interned::default();
        let a = interned.get("rig-1");
        let b = interned.get("rig-1");
        assert!(Arc::ptr_eq(&a, &b));
        let c = interned.get("rig-2");
        assert_eq!(&*c, "rig-2");
        assert_eq!(interned.non_empty(""), None);
    }
}
