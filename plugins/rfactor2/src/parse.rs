//! Pure parsers of the plugin's buffers: byte slices in, borrowed structs out.
//!
//! Nothing here trusts its input: every read is bounds-checked (a short slice is an error,
//! never a panic), vehicle counts outside `0..=128` are errors, and a copy whose version
//! block says a write was in progress (`Begin != End`) is rejected as torn. Floats are
//! returned as the game wrote them (possibly NaN); [`crate::join`] makes them presentable.
//! Strings stay borrowed byte slices until [`text`] decodes them, so a frame of 128 cars
//! allocates nothing for names that did not change.

use std::borrow::Cow;
use std::fmt;

use crate::layout::{self, scoring as sc, telemetry as tl, MAX_VEHICLES};

/// Why a buffer was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer bytes than the header and the vehicles it announces need.
    TooShort { needed: usize, got: usize },
    /// `mNumVehicles` outside `0..=128`.
    VehicleCount(i32),
    /// The copy's version block says a write was in progress.
    Torn { begin: u32, end: u32 },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { needed, got } => {
                write!(f, "buffer too short: {got} bytes, need {needed}")
            }
            Self::VehicleCount(n) => write!(f, "impossible vehicle count {n} (0..=128)"),
            Self::Torn { begin, end } => {
                write!(f, "torn copy: version begin {begin} != end {end}")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// `{mVersionUpdateBegin, mVersionUpdateEnd}` at the start of every buffer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VersionBlock {
    pub begin: u32,
    pub end: u32,
}

impl VersionBlock {
    /// The writer is not in the middle of an update.
    pub fn is_stable(&self) -> bool {
        self.begin == self.end
    }
}

/// The version block at the start of `buf`; `None` if it is shorter than 8 bytes.
pub fn version_block(buf: &[u8]) -> Option<VersionBlock> {
    Some(VersionBlock {
        begin: u32_at(buf, layout::VERSION_BEGIN)?,
        end: u32_at(buf, layout::VERSION_END)?,
    })
}

/// One wheel's share of `rF2Wheel`.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct Wheel {
    pub suspension_deflection_m: f64,
    pub tire_load_n: f64,
    /// Left, centre, right of the tread, Kelvin.
    pub temperature_k: [f64; 3],
}

/// The fields of `rF2VehicleTelemetry` this source uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VehicleTelemetry<'a> {
    pub id: i32,
    pub elapsed_time: f64,
    pub lap_number: i32,
    pub lap_start_et: f64,
    pub vehicle_name: &'a [u8],
    pub track_name: &'a [u8],
    pub pos: [f64; 3],
    pub local_vel: [f64; 3],
    pub local_accel: [f64; 3],
    pub local_rot: [f64; 3],
    /// -1 reverse, 0 neutral, 1 first.
    pub gear: i32,
    pub engine_rpm: f64,
    pub engine_max_rpm: f64,
    pub filtered_throttle: f64,
    pub filtered_brake: f64,
    pub filtered_steering: f64,
    pub filtered_clutch: f64,
    /// Front left, front right, rear left, rear right.
    pub wheels: [Wheel; 4],
}

/// A telemetry buffer: the valid vehicles, `[0, mNumVehicles)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Telemetry<'a> {
    pub version: u32,
    pub vehicles: Vec<VehicleTelemetry<'a>>,
}

/// The fields of `rF2ScoringInfo` this source uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScoringInfo<'a> {
    pub track_name: &'a [u8],
    /// 0 test day, 1-4 practice, 5-8 qualifying, 9 warm-up, 10-13 race.
    pub session: i32,
    pub current_et: f64,
    /// Length of the lap, metres.
    pub lap_dist: f64,
    pub num_vehicles: i32,
    pub game_phase: u8,
    pub in_realtime: bool,
    pub player_name: &'a [u8],
}

/// The fields of `rF2VehicleScoring` this source uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VehicleScoring<'a> {
    pub id: i32,
    pub driver_name: &'a [u8],
    pub vehicle_name: &'a [u8],
    pub total_laps: i16,
    pub sector: i8,
    /// Metres round the lap.
    pub lap_dist: f64,
    /// Seconds; -1 when there is none.
    pub best_lap_time: f64,
    pub last_lap_time: f64,
    pub is_player: bool,
    pub in_pits: bool,
    /// 1-based.
    pub place: u8,
    pub lap_start_et: f64,
}

/// A scoring buffer: session info and the valid vehicles, `[0, mNumVehicles)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scoring<'a> {
    pub version: u32,
    pub info: ScoringInfo<'a>,
    pub vehicles: Vec<VehicleScoring<'a>>,
}

/// Parse a copy of the telemetry buffer. It may be longer than needed (a bridge's file
/// rounded up to a page) but must hold the vehicles it announces.
pub fn parse_telemetry(buf: &[u8]) -> Result<Telemetry<'_>, ParseError> {
    let version = stable_version(buf, tl::VEHICLES)?;
    let count = vehicle_count(i32_at(buf, tl::NUM_VEHICLES).unwrap_or(0))?;
    let needed = tl::VEHICLES + count * tl::VEHICLE_SIZE;
    let body = buf.get(..needed).ok_or(ParseError::TooShort {
        needed,
        got: buf.len(),
    })?;
    let vehicles = body[tl::VEHICLES..]
        .chunks_exact(tl::VEHICLE_SIZE)
        .map(vehicle_telemetry)
        .collect();
    Ok(Telemetry { version, vehicles })
}

/// Parse a copy of the scoring buffer (same size rules as [`parse_telemetry`]).
pub fn parse_scoring(buf: &[u8]) -> Result<Scoring<'_>, ParseError> {
    let version = stable_version(buf, sc::VEHICLES)?;
    let info = scoring_info(buf.get(sc::INFO..sc::INFO + sc::INFO_SIZE).unwrap_or(&[]));
    let count = vehicle_count(info.num_vehicles)?;
    let needed = sc::VEHICLES + count * sc::VEHICLE_SIZE;
    let body = buf.get(..needed).ok_or(ParseError::TooShort {
        needed,
        got: buf.len(),
    })?;
    let vehicles = body[sc::VEHICLES..]
        .chunks_exact(sc::VEHICLE_SIZE)
        .map(vehicle_scoring)
        .collect();
    Ok(Scoring {
        version,
        info,
        vehicles,
    })
}

/// Decode a NUL-padded `char[]`: UTF-8 when it is valid UTF-8 (Le Mans Ultimate), else
/// Latin-1 (rF2 writes the Windows code page; Latin-1 agrees with it on letters).
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let bytes = &bytes[..end];
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text.trim()),
        Err(_) => {
            let latin1: String = bytes.iter().map(|&b| char::from(b)).collect();
            Cow::Owned(latin1.trim().to_string())
        }
    }
}

/// The trimmed string bytes of a `char[]` (up to its first NUL).
fn c_string(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

fn stable_version(buf: &[u8], header: usize) -> Result<u32, ParseError> {
    if buf.len() < header {
        return Err(ParseError::TooShort {
            needed: header,
            got: buf.len(),
        });
    }
    let block = version_block(buf).ok_or(ParseError::TooShort {
        needed: header,
        got: buf.len(),
    })?;
    if !block.is_stable() {
        return Err(ParseError::Torn {
            begin: block.begin,
            end: block.end,
        });
    }
    Ok(block.begin)
}

fn vehicle_count(n: i32) -> Result<usize, ParseError> {
    match usize::try_from(n) {
        Ok(count) if count <= MAX_VEHICLES => Ok(count),
        _ => Err(ParseError::VehicleCount(n)),
    }
}

fn vehicle_telemetry(b: &[u8]) -> VehicleTelemetry<'_> {
    use tl::vehicle as v;
    let wheel = |i: usize| {
        let base = v::WHEELS + i * v::WHEEL_SIZE;
        let t = base + tl::wheel::TEMPERATURE;
        Wheel {
            suspension_deflection_m: f64_at(b, base + tl::wheel::SUSPENSION_DEFLECTION),
            tire_load_n: f64_at(b, base + tl::wheel::TIRE_LOAD),
            temperature_k: [f64_at(b, t), f64_at(b, t + 8), f64_at(b, t + 16)],
        }
    };
    VehicleTelemetry {
        id: i32_at(b, v::ID).unwrap_or(0),
        elapsed_time: f64_at(b, v::ELAPSED_TIME),
        lap_number: i32_at(b, v::LAP_NUMBER).unwrap_or(0),
        lap_start_et: f64_at(b, v::LAP_START_ET),
        vehicle_name: str_at(b, v::VEHICLE_NAME, v::VEHICLE_NAME_LEN),
        track_name: str_at(b, v::TRACK_NAME, v::TRACK_NAME_LEN),
        pos: vec3_at(b, v::POS),
        local_vel: vec3_at(b, v::LOCAL_VEL),
        local_accel: vec3_at(b, v::LOCAL_ACCEL),
        local_rot: vec3_at(b, v::LOCAL_ROT),
        gear: i32_at(b, v::GEAR).unwrap_or(0),
        engine_rpm: f64_at(b, v::ENGINE_RPM),
        engine_max_rpm: f64_at(b, v::ENGINE_MAX_RPM),
        filtered_throttle: f64_at(b, v::FILTERED_THROTTLE),
        filtered_brake: f64_at(b, v::FILTERED_BRAKE),
        filtered_steering: f64_at(b, v::FILTERED_STEERING),
        filtered_clutch: f64_at(b, v::FILTERED_CLUTCH),
        wheels: [wheel(0), wheel(1), wheel(2), wheel(3)],
    }
}

fn scoring_info(b: &[u8]) -> ScoringInfo<'_> {
    use sc::info as i;
    ScoringInfo {
        track_name: str_at(b, i::TRACK_NAME, i::TRACK_NAME_LEN),
        session: i32_at(b, i::SESSION).unwrap_or(0),
        current_et: f64_at(b, i::CURRENT_ET),
        lap_dist: f64_at(b, i::LAP_DIST),
        num_vehicles: i32_at(b, i::NUM_VEHICLES).unwrap_or(0),
        game_phase: u8_at(b, i::GAME_PHASE),
        in_realtime: u8_at(b, i::IN_REALTIME) != 0,
        player_name: str_at(b, i::PLAYER_NAME, i::PLAYER_NAME_LEN),
    }
}

fn vehicle_scoring(b: &[u8]) -> VehicleScoring<'_> {
    use sc::vehicle as v;
    VehicleScoring {
        id: i32_at(b, v::ID).unwrap_or(0),
        driver_name: str_at(b, v::DRIVER_NAME, v::DRIVER_NAME_LEN),
        vehicle_name: str_at(b, v::VEHICLE_NAME, v::VEHICLE_NAME_LEN),
        total_laps: b
            .get(v::TOTAL_LAPS..v::TOTAL_LAPS + 2)
            .and_then(|s| s.try_into().ok())
            .map_or(0, i16::from_le_bytes),
        sector: u8_at(b, v::SECTOR) as i8,
        lap_dist: f64_at(b, v::LAP_DIST),
        best_lap_time: f64_at(b, v::BEST_LAP_TIME),
        last_lap_time: f64_at(b, v::LAST_LAP_TIME),
        is_player: u8_at(b, v::IS_PLAYER) != 0,
        in_pits: u8_at(b, v::IN_PITS) != 0,
        place: u8_at(b, v::PLACE),
        lap_start_et: f64_at(b, v::LAP_START_ET),
    }
}

// Bounds-checked little-endian readers. Callers have checked the record's length, so the
// fallbacks never show; they exist so that no byte of outside data can cause a panic.

fn u8_at(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)?
        .try_into()
        .ok()
        .map(u32::from_le_bytes)
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    u32_at(b, at).map(|v| v as i32)
}

fn f64_at(b: &[u8], at: usize) -> f64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0.0, f64::from_le_bytes)
}

fn vec3_at(b: &[u8], at: usize) -> [f64; 3] {
    [f64_at(b, at), f64_at(b, at + 8), f64_at(b, at + 16)]
}

fn str_at(b: &[u8], at: usize, len: usize) -> &[u8] {
    b.get(at..at + len).map_or(&[], c_string)
}
