//! Race-control messages parsed and applied per second on one core, through
//! `protocol` + `state` (no network): a realistic mix for a 24-car server, mostly 53 car
//! updates (one per car every 100 ms), a 200 snapshot every 2 s, a few connection and chat
//! events. Target: at least 100,000 messages/s.
//!
//!     cargo bench -p pitwall-emperor --bench parse

use std::time::Instant;

use pitwall_emperor::state::{RaceControl, StateOptions};
use serde_json::json;

const CARS: u32 = 24;

fn snapshot(laps: u32) -> String {
    let mut drivers = serde_json::Map::new();
    let mut order = Vec::new();
    let mut ids = serde_json::Map::new();
    for car in 0..CARS {
        let guid = format!("7656119800000{car:04}");
        ids.insert(car.to_string(), json!(guid));
        order.push(guid.clone());
        drivers.insert(
            guid.clone(),
            json!({
                "CarInfo": {"CarID": car, "DriverName": format!("Driver {car}"), "DriverGUID": guid,
                    "CarModel": "ks_porsche_911_gt3_r_2016", "CarName": "Porsche 911 GT3 R",
                    "DriverInitials": "DRV", "CarSkin": "skin", "Tyres": "M"},
                "Position": car + 1, "Split": format!("+{}.{:03}", car, car * 7),
                "TotalNumLaps": laps + car % 2, "LastSeen": "2024-05-26T13:20:00Z",
                "LastPos": {"X": 100.5, "Y": 2.0, "Z": -300.25}, "Collisions": [],
                "IsInPits": false, "NumPits": 1, "DRSActive": false,
                "Cars": {"ks_porsche_911_gt3_r_2016": {"BestLap": 95_123_000_000i64,
                    "LastLap": 96_456_000_000i64, "TotalLapTime": 960_000_000_000i64,
                    "NumLaps": laps + car % 2, "TopSpeedBestLap": 251.2, "TopSpeedThisLap": 249.9,
                    "LastLapCompletedTime": "2024-05-26T13:19:58.123456789Z"}}
            }),
        );
    }
    json!({"EventType": 200, "Message": {
        "SessionInfo": {"ServerName": "Bench Server", "Track": "spa", "TrackConfig": "", "Name": "Race",
            "Type": 3, "Time": 0, "Laps": 30, "ElapsedMilliseconds": 1_200_000, "AmbientTemp": 20, "RoadTemp": 28},
        "TrackMapData": {"width": 2000, "height": 1500, "margin": 20, "scale_factor": 2.5,
            "offset_x": 900.0, "offset_y": 700.0},
        "TrackInfo": {"name": "Spa", "city": "Stavelot", "country": "Belgium", "length": "7004m"},
        "SessionStartTime": "2024-05-26T13:00:00Z", "CurrentRealtimePosInterval": 100,
        "ConnectedDrivers": {"Drivers": drivers, "GUIDsInPositionalOrder": order},
        "DisconnectedDrivers": {"Drivers": {}, "GUIDsInPositionalOrder": []},
        "CarIDToGUID": ids, "ChatMessages": []
    }})
    .to_string()
}

fn car_update(car: u32, step: u32) -> String {
    let s = f64::from(step % 1000) / 1000.0;
    format!(
        r#"{{"EventType":53,"Message":{{"CarID":{car},"Pos":{{"X":{:.4},"Y":12.3456,"Z":{:.4}}},"Velocity":{{"X":45.1234,"Y":0.0123,"Z":-12.5678}},"Gear":5,"EngineRPM":7345,"NormalisedSplinePos":{s:.6}}}}}"#,
        1000.0 * s - 500.0,
        -400.0 + 800.0 * s
    )
}

fn main() {
    // Two seconds of a 24-car server: 20 ticks of 24 updates, then a snapshot; some events.
    let mut mix = Vec::new();
    for round in 0..10u32 {
        for tick in 0..20u32 {
            for car in 0..CARS {
                mix.push(car_update(car, round * 20 + tick + car * 37));
            }
        }
        mix.push(snapshot(round));
        if round % 3 == 0 {
            mix.push(r#"{"EventType":57,"Message":{"CarID":3,"Message":"gg","DriverGUID":"76561198000000003","DriverName":"Driver 3","Time":"2024-05-26T13:05:00Z"}}"#.to_string());
            mix.push(r#"{"EventType":10,"Message":{"CarID":1,"OtherCarID":2,"ImpactSpeed":22.5,"WorldPos":{"X":10,"Y":1,"Z":20},"RelPos":{"X":0,"Y":0,"Z":1}}}"#.to_string());
        }
    }
    let snapshots = mix
        .iter()
        .filter(|m| m.contains("\"EventType\":200"))
        .count();
    let bytes: usize = mix.iter().map(String::len).sum();

    let mut state = RaceControl::new(StateOptions::default());
    let mut out = Vec::with_capacity(4096);
    let mut records = 0usize;
    // Warm up, then measure for about two seconds.
    for m in &mix {
        state.apply(m, 0, &mut out);
    }
    out.clear();
    let started = Instant::now();
    let mut messages = 0usize;
    let mut now = 0i64;
    while started.elapsed().as_secs_f64() < 2.0 {
        for m in &mix {
            now += 1;
            state.apply(m, now, &mut out);
            messages += 1;
            if out.len() > 1000 {
                records += out.len();
                out.clear();
            }
        }
    }
    records += out.len();
    let seconds = started.elapsed().as_secs_f64();
    let rate = messages as f64 / seconds;
    println!(
        "emperor parse+apply: {messages} messages in {seconds:.2} s = {rate:.0} messages/s \
         ({:.1} MB/s; mix of {} messages, {snapshots} snapshots of {CARS} drivers, {} bytes; {records} records)",
        bytes as f64 * (messages as f64 / mix.len() as f64) / seconds / 1e6,
        mix.len(),
        bytes
    );
    if rate < 100_000.0 {
        println!("BELOW the 100,000 messages/s target");
    }
}
