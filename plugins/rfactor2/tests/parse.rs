//! The parsers and the join, over buffers built from FORMATS.md's offsets.

mod common;

use std::sync::Arc;

use common::*;
use pitwall_rfactor2::join::{join, Cars, Names, Stream};
use pitwall_rfactor2::parse::{parse_scoring, parse_telemetry, text, ParseError};

fn stream() -> Stream {
    Stream {
        game: Arc::from("le_mans_ultimate"),
        session: Arc::from("rig-1"),
    }
}

#[test]
fn telemetry_fields_are_read_at_their_offsets_and_only_valid_vehicles_count() {
    let mut car = Car::new(42);
    car.gear = -1;
    car.local_accel = [9.81, 0.0, -19.62];
    let mut buf = telemetry(17, &[car.clone(), Car::new(43)]);
    // A third vehicle slot holds data, but mNumVehicles says 2: it must not appear.
    put_car(&mut buf, 2, &Car::new(99));
    let frame = parse_telemetry(&buf).unwrap();
    assert_eq!(frame.version, 17);
    assert_eq!(
        frame.vehicles.iter().map(|v| v.id).collect::<Vec<_>>(),
        [42, 43]
    );
    let v = &frame.vehicles[0];
    assert_eq!(v.gear, -1);
    assert_eq!(v.engine_rpm, 9000.0);
    assert_eq!(v.engine_max_rpm, 12000.0);
    assert_eq!(v.filtered_throttle, 0.5);
    assert_eq!(v.local_vel, [0.0, 0.0, -50.0]);
    assert_eq!(v.local_accel, [9.81, 0.0, -19.62]);
    assert_eq!(v.pos, [1.0, 2.0, 3.0]);
    assert_eq!(text(v.vehicle_name), "Dallara IR18");
    assert_eq!(text(v.track_name), "Sebring");
}

#[test]
fn scoring_fields_are_read_at_their_offsets() {
    let mut me = Scored::new(7, b"Ana Lopes", 2);
    me.is_player = true;
    me.in_pits = true;
    me.best_lap = 121.5;
    me.last_lap = 123.25;
    let buf = scoring(
        4,
        &Info::default(),
        &[Scored::new(3, b"Other", 1), me.clone()],
    );
    let scoring = parse_scoring(&buf).unwrap();
    assert_eq!(scoring.version, 4);
    assert_eq!(
        text(scoring.info.track_name),
        "Sebring International Raceway"
    );
    assert_eq!(scoring.info.session, 10);
    assert_eq!(scoring.info.lap_dist, 6000.0);
    assert_eq!(scoring.info.game_phase, 5);
    let v = &scoring.vehicles[1];
    assert_eq!((v.id, v.place, v.total_laps), (7, 2, 3));
    assert_eq!(text(v.driver_name), "Ana Lopes");
    assert!(v.is_player && v.in_pits);
    assert_eq!((v.best_lap_time, v.last_lap_time), (121.5, 123.25));
    assert!(!scoring.vehicles[0].is_player);
}

#[test]
fn join_matches_by_id_never_by_index() {
    // Telemetry lists 7, 2, 5; scoring lists 5, 7, 2; the player is 2.
    let mut cars = [Car::new(7), Car::new(2), Car::new(5)];
    cars[0].rpm = 7000.0;
    cars[1].rpm = 2000.0;
    cars[2].rpm = 5000.0;
    let tel = telemetry(1, &cars);
    let mut player = Scored::new(2, b"Player Two", 3);
    player.is_player = true;
    let sc = scoring(
        1,
        &Info::default(),
        &[
            Scored::new(5, b"Driver Five", 1),
            Scored::new(7, b"Driver Seven", 2),
            player,
        ],
    );
    let tel = parse_telemetry(&tel).unwrap();
    let sc = parse_scoring(&sc).unwrap();
    let mut names = Names::default();

    let mine = join(&tel, Some(&sc), Cars::Player, &stream(), 5, &mut names);
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].car_id, 2);
    assert_eq!(mine[0].rpm, 2000.0);
    assert_eq!(mine[0].driver.as_deref(), Some("Player Two"));
    assert_eq!(mine[0].place, 3);
    assert!(mine[0].is_player);

    let all = join(&tel, Some(&sc), Cars::All, &stream(), 5, &mut names);
    let summary: Vec<(i32, f32, &str, i32)> = all
        .iter()
        .map(|c| (c.car_id, c.rpm, c.driver.as_deref().unwrap(), c.place))
        .collect();
    assert_eq!(
        summary,
        [
            (7, 7000.0, "Driver Seven", 2),
            (2, 2000.0, "Player Two", 3),
            (5, 5000.0, "Driver Five", 1),
        ]
    );
    assert_eq!(all.iter().filter(|c| c.is_player).count(), 1);
}

#[test]
fn join_without_a_player_or_without_scoring() {
    let tel = telemetry(1, &[Car::new(1)]);
    let tel = parse_telemetry(&tel).unwrap();
    let sc = scoring(1, &Info::default(), &[Scored::new(1, b"AI", 1)]);
    let sc = parse_scoring(&sc).unwrap();
    let mut names = Names::default();
    assert!(join(&tel, Some(&sc), Cars::Player, &stream(), 0, &mut names).is_empty());
    assert!(join(&tel, None, Cars::Player, &stream(), 0, &mut names).is_empty());
    let bare = join(&tel, None, Cars::All, &stream(), 0, &mut names);
    assert_eq!(bare.len(), 1);
    assert_eq!(bare[0].driver, None);
    assert_eq!(
        bare[0].track.as_deref(),
        Some("Sebring"),
        "telemetry's track name"
    );
    assert_eq!(bare[0].session_type, None);
}

#[test]
fn the_record_follows_the_common_conventions() {
    let mut car = Car::new(9);
    car.local_vel = [3.0, 0.0, -4.0]; // 5 m/s
    car.local_accel = [4.905, 9.81, -9.81];
    car.throttle = 0.75;
    car.brake = 0.25;
    car.steering = -0.5;
    car.clutch = 0.1;
    car.gear = 0;
    let mut me = Scored::new(9, b"Ren\xe9 Arnoux", 4); // Latin-1, as rF2 writes it
    me.is_player = true;
    me.last_lap = 98.5;
    me.best_lap = -1.0;
    me.lap_dist = 1500.0;
    me.in_pits = true;
    me.total_laps = 12;
    let tel = telemetry(3, &[car]);
    let sc = scoring(3, &Info::default(), &[me]);
    let tel = parse_telemetry(&tel).unwrap();
    let sc = parse_scoring(&sc).unwrap();
    let records = join(
        &tel,
        Some(&sc),
        Cars::Player,
        &stream(),
        77,
        &mut Names::default(),
    );
    let c = &records[0];
    assert_eq!(&*c.game, "le_mans_ultimate");
    assert_eq!(&*c.session, "rig-1");
    assert_eq!(c.monotonic_ns, 77);
    assert!((c.speed_kmh - 18.0).abs() < 1e-4);
    assert_eq!(
        (c.throttle, c.brake, c.steering, c.clutch),
        (0.75, 0.25, -0.5, 0.1)
    );
    assert_eq!(c.gear, 0);
    assert_eq!(c.acc_g, [0.5, 1.0, -1.0]);
    assert_eq!(c.velocity, [3.0, 0.0, -4.0]);
    assert_eq!(c.last_lap_s, Some(98.5));
    assert_eq!(c.best_lap_s, None, "-1 is no lap yet");
    assert_eq!(c.current_lap_s, Some(40.0));
    assert_eq!(c.session_type, Some(10));
    assert_eq!(c.status, 5);
    assert_eq!(c.spline, 0.25);
    assert!(c.in_pit);
    assert_eq!(c.completed_laps, 12);
    assert_eq!(c.max_rpm, 12000.0);
    assert_eq!(c.position, [1.0, 2.0, 3.0]);
    assert_eq!(c.driver.as_deref(), Some("René Arnoux"));
    assert_eq!(
        c.car_model.as_deref(),
        Some("Dallara IR18 #5"),
        "scoring's vehicle name"
    );
    assert_eq!(c.track.as_deref(), Some("Sebring International Raceway"));
}

#[test]
fn wrong_sizes_counts_and_torn_copies_are_rejected() {
    let good = telemetry(1, &[Car::new(1), Car::new(2)]);
    assert!(matches!(
        parse_telemetry(&good[..16 + 1888]),
        Err(ParseError::TooShort { needed, .. }) if needed == 16 + 2 * 1888
    ));
    assert!(matches!(
        parse_telemetry(&good[..10]),
        Err(ParseError::TooShort { .. })
    ));
    let mut bad = good.clone();
    put_i32(&mut bad, 12, 129);
    assert_eq!(parse_telemetry(&bad), Err(ParseError::VehicleCount(129)));
    put_i32(&mut bad, 12, -1);
    assert_eq!(parse_telemetry(&bad), Err(ParseError::VehicleCount(-1)));
    let mut torn = good.clone();
    put_u32(&mut torn, 0, 2);
    assert_eq!(
        parse_telemetry(&torn),
        Err(ParseError::Torn { begin: 2, end: 1 })
    );
    let mut sc = scoring(1, &Info::default(), &[Scored::new(1, b"a", 1)]);
    assert!(parse_scoring(&sc[..559]).is_err());
    put_i32(&mut sc, 12 + 104, 1000);
    assert_eq!(parse_scoring(&sc), Err(ParseError::VehicleCount(1000)));
    // A bridge's file rounded up to a page is fine.
    let mut padded = good;
    padded.resize(245_760, 0xAB);
    assert_eq!(parse_telemetry(&padded).unwrap().vehicles.len(), 2);
}

#[test]
fn garbage_never_panics() {
    // A small xorshift generator: deterministic garbage of every length around the
    // interesting boundaries.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let lengths = [
        0, 1, 7, 8, 12, 15, 16, 17, 559, 560, 561, 1904, 5000, 75_312, 241_680,
    ];
    for &len in &lengths {
        for _ in 0..20 {
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len >= 8 {
                // Half the time, a stable version so parsing goes past the header.
                if next() % 2 == 0 {
                    set_version(&mut buf, 1);
                }
                if len >= 16 && next() % 2 == 0 {
                    put_i32(&mut buf, 12, (next() % 130) as i32);
                }
            }
            let tel = parse_telemetry(&buf);
            let sc = parse_scoring(&buf);
            if let (Ok(tel), Ok(sc)) = (&tel, &sc) {
                let records = join(
                    tel,
                    Some(sc),
                    Cars::All,
                    &stream(),
                    0,
                    &mut Names::default(),
                );
                for r in records {
                    assert!(r.speed_kmh.is_finite() && r.acc_g.iter().all(|a| a.is_finite()));
                    assert!((0.0..=1.0).contains(&r.spline));
                }
            }
        }
    }
}
