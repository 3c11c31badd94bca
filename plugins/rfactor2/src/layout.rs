//! Byte offsets of the rF2 Shared Memory Map Plugin's buffers (FORMATS.md section 6).
//!
//! The plugin writes C structs with `#pragma pack(4)`, little-endian, Windows `long` = 32 bit,
//! `bool` = 1 byte and strings as NUL-padded `char[]`. Only the fields this source reads are
//! named here; offsets are relative to the start of the struct they belong to.

/// Name of the telemetry buffer (a dedicated server appends its process id).
pub const TELEMETRY_BUFFER: &str = "$rFactor2SMMP_Telemetry$";
/// Name of the scoring buffer (a dedicated server appends its process id).
pub const SCORING_BUFFER: &str = "$rFactor2SMMP_Scoring$";

/// Most vehicles either buffer holds.
pub const MAX_VEHICLES: usize = 128;

/// Every buffer starts with `{u32 mVersionUpdateBegin; u32 mVersionUpdateEnd}`.
pub const VERSION_BEGIN: usize = 0;
pub const VERSION_END: usize = 4;
/// The size of the version block.
pub const VERSION_BLOCK: usize = 8;
/// `i32 mBytesUpdatedHint`, after the version block of telemetry and scoring.
pub const BYTES_UPDATED_HINT: usize = 8;

/// Telemetry buffer: `i32 mNumVehicles` then `rF2VehicleTelemetry[128]`.
pub mod telemetry {
    pub const NUM_VEHICLES: usize = 12;
    pub const VEHICLES: usize = 16;
    pub const VEHICLE_SIZE: usize = 1888;
    /// The whole buffer: 241,680 bytes.
    pub const SIZE: usize = VEHICLES + super::MAX_VEHICLES * VEHICLE_SIZE;

    /// `rF2VehicleTelemetry`.
    pub mod vehicle {
        pub const ID: usize = 0;
        pub const DELTA_TIME: usize = 4;
        pub const ELAPSED_TIME: usize = 12;
        pub const LAP_NUMBER: usize = 20;
        pub const LAP_START_ET: usize = 24;
        pub const VEHICLE_NAME: usize = 32;
        pub const VEHICLE_NAME_LEN: usize = 64;
        pub const TRACK_NAME: usize = 96;
        pub const TRACK_NAME_LEN: usize = 64;
        /// World position, `f64` x, y (up), z.
        pub const POS: usize = 160;
        /// Velocity in the car's frame, m/s: +x left, +y up, +z back.
        pub const LOCAL_VEL: usize = 184;
        /// Acceleration in the car's frame, m/s².
        pub const LOCAL_ACCEL: usize = 208;
        /// Rotation rate in the car's frame, rad/s.
        pub const LOCAL_ROT: usize = 304;
        pub const GEAR: usize = 352;
        pub const ENGINE_RPM: usize = 356;
        pub const FILTERED_THROTTLE: usize = 420;
        pub const FILTERED_BRAKE: usize = 428;
        pub const FILTERED_STEERING: usize = 436;
        pub const FILTERED_CLUTCH: usize = 444;
        pub const ENGINE_MAX_RPM: usize = 532;
        /// `rF2Wheel[4]`: front left, front right, rear left, rear right.
        pub const WHEELS: usize = 848;
        pub const WHEEL_SIZE: usize = 260;
    }

    /// `rF2Wheel`.
    pub mod wheel {
        /// Metres.
        pub const SUSPENSION_DEFLECTION: usize = 0;
        /// Newtons.
        pub const TIRE_LOAD: usize = 104;
        /// `f64[3]`, Kelvin: left, centre, right of the tread.
        pub const TEMPERATURE: usize = 128;
    }
}

/// Scoring buffer: `rF2ScoringInfo` then `rF2VehicleScoring[128]`.
pub mod scoring {
    pub const INFO: usize = 12;
    pub const INFO_SIZE: usize = 548;
    pub const VEHICLES: usize = 560;
    pub const VEHICLE_SIZE: usize = 584;
    /// The whole buffer: 75,312 bytes.
    pub const SIZE: usize = VEHICLES + super::MAX_VEHICLES * VEHICLE_SIZE;

    /// `rF2ScoringInfo`, relative to [`INFO`].
    pub mod info {
        pub const TRACK_NAME: usize = 0;
        pub const TRACK_NAME_LEN: usize = 64;
        pub const SESSION: usize = 64;
        pub const CURRENT_ET: usize = 68;
        /// Length of the lap, metres.
        pub const LAP_DIST: usize = 88;
        pub const NUM_VEHICLES: usize = 104;
        pub const GAME_PHASE: usize = 108;
        pub const IN_REALTIME: usize = 115;
        pub const PLAYER_NAME: usize = 116;
        pub const PLAYER_NAME_LEN: usize = 32;
    }

    /// `rF2VehicleScoring`.
    pub mod vehicle {
        pub const ID: usize = 0;
        pub const DRIVER_NAME: usize = 4;
        pub const DRIVER_NAME_LEN: usize = 32;
        pub const VEHICLE_NAME: usize = 36;
        pub const VEHICLE_NAME_LEN: usize = 64;
        /// `i16`.
        pub const TOTAL_LAPS: usize = 100;
        /// `i8`.
        pub const SECTOR: usize = 102;
        /// Metres round the lap.
        pub const LAP_DIST: usize = 104;
        pub const BEST_LAP_TIME: usize = 144;
        pub const LAST_LAP_TIME: usize = 168;
        /// `u8`.
        pub const IS_PLAYER: usize = 196;
        /// `u8`.
        pub const IN_PITS: usize = 198;
        /// `u8`, 1-based.
        pub const PLACE: usize = 199;
        pub const LAP_START_ET: usize = 256;
    }
}
