//! A writer thread that tears reads on purpose, against the reader's version-block protocol.
//!
//! The writer rewrites a real file the way the plugin rewrites its mapping: it bumps
//! `mVersionUpdateBegin`, rewrites every vehicle slowly (one half-vehicle at a time, with
//! pauses), then sets `mVersionUpdateEnd`, and idles a little before the next version. Every
//! field it writes is a function of the version, so a copy mixing two versions shows. The
//! reader polls as the source does; every copy it accepts must be of one single version.
//!
//! The reader's copy is slowed down too (its vehicles read in 2 KiB pieces with pauses, as a reader
//! preempted mid-copy would be), so versions often start while it copies: the case only the
//! second header check catches.

// The writer uses positioned writes (`FileExt::write_all_at`), which are Unix's.
#![cfg(unix)]

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use pitwall_rfactor2::parse::{parse_telemetry, text};
use pitwall_rfactor2::snapshot::{Attempt, FileBuffer, SharedBuffer, VersionedCopy};

const CARS: usize = 24;

/// A file whose vehicles are read in small pieces with pauses between them.
struct SlowReads(FileBuffer);

impl SharedBuffer for SlowReads {
    fn read_at(&mut self, offset: usize, out: &mut [u8]) -> std::io::Result<usize> {
        let vehicles_end = 16 + CARS * TELEMETRY_VEHICLE;
        let piece = if out.len() > 8 && offset < vehicles_end {
            std::thread::sleep(Duration::from_micros(15));
            out.len().min(2048)
        } else {
            out.len()
        };
        self.0.read_at(offset, &mut out[..piece])
    }

    fn describe(&self) -> String {
        self.0.describe()
    }
}

fn car_for(version: u32, index: usize) -> Car {
    let mut car = Car::new(index as i32);
    car.rpm = f64::from(version) * 1000.0 + index as f64;
    car.throttle = f64::from(version % 100) / 100.0;
    car.pos = [f64::from(version); 3];
    car.vehicle_name = if version % 2 == 0 { "even" } else { "odd" };
    car
}

#[test]
fn the_reader_never_returns_a_torn_frame() {
    let dir = temp_dir("torn");
    let path = dir.join("$rFactor2SMMP_Telemetry$");
    let initial: Vec<Car> = (0..CARS).map(|i| car_for(0, i)).collect();
    std::fs::write(&path, telemetry(0, &initial)).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let path = path.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            let mut version = 0u32;
            while !stop.load(Ordering::Relaxed) {
                version += 1;
                file.write_all_at(&version.to_le_bytes(), 0).unwrap();
                let cars: Vec<Car> = (0..CARS).map(|i| car_for(version, i)).collect();
                let image = telemetry(version, &cars);
                // Rewrite the vehicles in half-vehicle pieces, last first (so a write that
                // starts behind a reader's back lands where it has not copied yet),
                // pausing between pieces.
                let half = TELEMETRY_VEHICLE / 2;
                for piece in (0..2 * CARS).rev() {
                    let at = 16 + piece * half;
                    file.write_all_at(&image[at..at + half], at as u64).unwrap();
                    std::thread::sleep(Duration::from_micros(20));
                }
                file.write_all_at(&version.to_le_bytes(), 4).unwrap();
                // Idle between versions, long enough for readers to get a clean copy, but
                // versions also start while a reader is mid-copy.
                std::thread::sleep(Duration::from_micros(800 + u64::from(version % 7) * 300));
            }
            version
        })
    };

    let mut source = SlowReads(FileBuffer::new(&path));
    let mut copy = VersionedCopy::new(TELEMETRY_SIZE);
    let (mut fresh, mut torn) = (0u32, 0u32);
    let mut last_version: Option<u32> = None;
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        match copy.try_once(&mut source).unwrap() {
            Attempt::Fresh { version } => {
                fresh += 1;
                assert!(
                    last_version.is_none_or(|last| version > last),
                    "versions only move forward"
                );
                last_version = Some(version);
                let frame = parse_telemetry(copy.data()).expect("a consistent copy parses");
                assert_eq!(frame.version, version);
                assert_eq!(frame.vehicles.len(), CARS);
                for (i, car) in frame.vehicles.iter().enumerate() {
                    let want = car_for(version, i);
                    assert_eq!(
                        (car.id, car.engine_rpm, car.filtered_throttle, car.pos),
                        (want.id, want.rpm, want.throttle, want.pos),
                        "vehicle {i} of version {version} mixes versions"
                    );
                    assert_eq!(text(car.vehicle_name), want.vehicle_name);
                }
            }
            Attempt::Torn => {
                torn += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            Attempt::Unchanged => std::thread::sleep(Duration::from_micros(100)),
        }
    }
    stop.store(true, Ordering::Relaxed);
    eprintln!("{fresh} clean copies, {torn} torn attempts");
    let written = writer.join().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        fresh >= 10,
        "only {fresh} clean copies of {written} versions"
    );
    assert!(
        torn >= 10,
        "the writer tore only {torn} reads: the test proves nothing"
    );
}
