//! Buffers built byte by byte from the offsets FORMATS.md section 6 documents (written out
//! here as numbers, not taken from the crate's `layout`, so a wrong constant there fails).

#![allow(dead_code)]

pub const TELEMETRY_SIZE: usize = 241_680;
pub const SCORING_SIZE: usize = 75_312;
pub const TELEMETRY_VEHICLE: usize = 1888;
pub const SCORING_VEHICLE: usize = 584;

pub fn put_u32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

pub fn put_i32(buf: &mut [u8], at: usize, value: i32) {
    buf[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

pub fn put_i16(buf: &mut [u8], at: usize, value: i16) {
    buf[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

pub fn put_f64(buf: &mut [u8], at: usize, value: f64) {
    buf[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

pub fn put_vec3(buf: &mut [u8], at: usize, v: [f64; 3]) {
    for (i, x) in v.iter().enumerate() {
        put_f64(buf, at + 8 * i, *x);
    }
}

pub fn put_str(buf: &mut [u8], at: usize, len: usize, text: &[u8]) {
    buf[at..at + len].fill(0);
    buf[at..at + text.len().min(len - 1)].copy_from_slice(&text[..text.len().min(len - 1)]);
}

pub fn set_version(buf: &mut [u8], version: u32) {
    put_u32(buf, 0, version);
    put_u32(buf, 4, version);
}

/// One car's telemetry, as the test sets it.
#[derive(Clone, Debug)]
pub struct Car {
    pub id: i32,
    pub vehicle_name: &'static str,
    pub track_name: &'static str,
    pub gear: i32,
    pub rpm: f64,
    pub max_rpm: f64,
    pub local_vel: [f64; 3],
    pub local_accel: [f64; 3],
    pub pos: [f64; 3],
    pub throttle: f64,
    pub brake: f64,
    pub steering: f64,
    pub clutch: f64,
    pub elapsed_time: f64,
    pub lap_start_et: f64,
}

impl Car {
    pub fn new(id: i32) -> Self {
        Self {
            id,
            vehicle_name: "Dallara IR18",
            track_name: "Sebring",
            gear: 3,
            rpm: 9000.0,
            max_rpm: 12000.0,
            local_vel: [0.0, 0.0, -50.0],
            local_accel: [0.0; 3],
            pos: [1.0, 2.0, 3.0],
            throttle: 0.5,
            brake: 0.0,
            steering: 0.0,
            clutch: 0.0,
            elapsed_time: 100.0,
            lap_start_et: 60.0,
        }
    }
}

/// Write a car into slot `index` of a telemetry buffer.
pub fn put_car(buf: &mut [u8], index: usize, car: &Car) {
    let b = 16 + index * TELEMETRY_VEHICLE;
    put_i32(buf, b, car.id);
    put_f64(buf, b + 12, car.elapsed_time);
    put_i32(buf, b + 20, 4);
    put_f64(buf, b + 24, car.lap_start_et);
    put_str(buf, b + 32, 64, car.vehicle_name.as_bytes());
    put_str(buf, b + 96, 64, car.track_name.as_bytes());
    put_vec3(buf, b + 160, car.pos);
    put_vec3(buf, b + 184, car.local_vel);
    put_vec3(buf, b + 208, car.local_accel);
    put_i32(buf, b + 352, car.gear);
    put_f64(buf, b + 356, car.rpm);
    // Unfiltered inputs differ from the filtered ones: the source must use the filtered.
    put_f64(buf, b + 388, 0.99);
    put_f64(buf, b + 396, 0.99);
    put_f64(buf, b + 404, 0.99);
    put_f64(buf, b + 412, 0.99);
    put_f64(buf, b + 420, car.throttle);
    put_f64(buf, b + 428, car.brake);
    put_f64(buf, b + 436, car.steering);
    put_f64(buf, b + 444, car.clutch);
    put_f64(buf, b + 532, car.max_rpm);
}

/// A telemetry buffer of `version` holding `cars` (mNumVehicles = their count).
pub fn telemetry(version: u32, cars: &[Car]) -> Vec<u8> {
    let mut buf = vec![0u8; TELEMETRY_SIZE];
    set_version(&mut buf, version);
    put_i32(&mut buf, 12, cars.len() as i32);
    for (i, car) in cars.iter().enumerate() {
        put_car(&mut buf, i, car);
    }
    buf
}

/// One car's scoring, as the test sets it.
#[derive(Clone, Debug)]
pub struct Scored {
    pub id: i32,
    pub driver: &'static [u8],
    pub vehicle_name: &'static str,
    pub total_laps: i16,
    pub lap_dist: f64,
    pub best_lap: f64,
    pub last_lap: f64,
    pub is_player: bool,
    pub in_pits: bool,
    pub place: u8,
}

impl Scored {
    pub fn new(id: i32, driver: &'static [u8], place: u8) -> Self {
        Self {
            id,
            driver,
            vehicle_name: "Dallara IR18 #5",
            total_laps: 3,
            lap_dist: 1500.0,
            best_lap: -1.0,
            last_lap: -1.0,
            is_player: false,
            in_pits: false,
            place,
        }
    }
}

/// Session-wide scoring facts.
#[derive(Clone, Debug)]
pub struct Info {
    pub track_name: &'static str,
    pub session: i32,
    pub lap_dist: f64,
    pub game_phase: u8,
}

impl Default for Info {
    fn default() -> Self {
        Self {
            track_name: "Sebring International Raceway",
            session: 10,
            lap_dist: 6000.0,
            game_phase: 5,
        }
    }
}

pub fn put_scored(buf: &mut [u8], index: usize, car: &Scored) {
    let b = 560 + index * SCORING_VEHICLE;
    put_i32(buf, b, car.id);
    put_str(buf, b + 4, 32, car.driver);
    put_str(buf, b + 36, 64, car.vehicle_name.as_bytes());
    put_i16(buf, b + 100, car.total_laps);
    put_f64(buf, b + 104, car.lap_dist);
    put_f64(buf, b + 144, car.best_lap);
    put_f64(buf, b + 168, car.last_lap);
    buf[b + 196] = u8::from(car.is_player);
    buf[b + 198] = u8::from(car.in_pits);
    buf[b + 199] = car.place;
}

/// A scoring buffer of `version`.
pub fn scoring(version: u32, info: &Info, cars: &[Scored]) -> Vec<u8> {
    let mut buf = vec![0u8; SCORING_SIZE];
    set_version(&mut buf, version);
    let i = 12;
    put_str(&mut buf, i, 64, info.track_name.as_bytes());
    put_i32(&mut buf, i + 64, info.session);
    put_f64(&mut buf, i + 88, info.lap_dist);
    put_i32(&mut buf, i + 104, cars.len() as i32);
    buf[i + 108] = info.game_phase;
    for (n, car) in cars.iter().enumerate() {
        put_scored(&mut buf, n, car);
    }
    buf
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pitwall-rf2-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
