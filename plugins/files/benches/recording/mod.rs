//! The recording both conversion benchmarks read (`plugins/files/benches/convert.rs`, the
//! components; `benches/convert.rs`, the `convert` command): every page filled, values
//! varying smoothly like a car lapping, gzip level 6 like the bridge's zlib default (about
//! 2:1 on such data). Generated once per size and kept in the target directory.

use std::path::PathBuf;
use std::time::Instant;

use pitwall_api::telemetry::proto;
use pitwall_files::pbgz::FrameWriter;

/// A frame like a car lapping: every page filled, values varying smoothly.
pub fn frame(i: u64) -> proto::TelemetryFrame {
    let t = i as f32 * 0.003;
    let lap = (i / 30_000) as i32;
    let along = (i % 30_000) as f32 / 30_000.0;
    let speed = 180.0 + 80.0 * (t * 0.7).sin();
    let wheels = |base: f32, swing: f32| {
        Some(proto::Wheel4f {
            fl: base + swing * (t * 1.1).sin(),
            fr: base + swing * (t * 1.3).sin(),
            rl: base + swing * (t * 0.9).cos(),
            rr: base + swing * (t * 0.8).cos(),
        })
    };
    proto::TelemetryFrame {
        monotonic_ns: 1_000_000_000 + i * 3_003_003,
        game: "assetto_corsa".into(),
        session_id: "rig-3".into(),
        physics: Some(proto::Physics {
            speed_kmh: speed,
            gas: (0.5 + 0.5 * (t * 0.7).cos()).clamp(0.0, 1.0),
            brake: (0.5 - 0.5 * (t * 0.7).cos()).clamp(0.0, 1.0) * 0.3,
            clutch: 0.0,
            gear: 2 + ((speed / 50.0) as i32).min(5),
            steer: (t * 0.4).sin() * 0.6,
            engine_rpm: 5000.0 + 2500.0 * (t * 2.1).sin(),
            tyre_slip: wheels(0.05, 0.04),
            tyre_load: wheels(3500.0, 800.0),
            tyre_temp_c: wheels(85.0, 6.0),
            suspension_travel: wheels(0.03, 0.01),
            acc_g: Some(proto::Vec3f {
                x: 1.8 * (t * 0.4).sin(),
                y: 0.02 * (t * 9.0).sin(),
                z: 1.2 * (t * 0.7).cos(),
            }),
            velocity: Some(proto::Vec3f {
                x: speed / 3.6 * (t * 0.05).cos(),
                y: 0.0,
                z: speed / 3.6 * (t * 0.05).sin(),
            }),
            angular_velocity: Some(proto::Vec3f {
                x: 0.01 * (t * 3.0).sin(),
                y: 0.3 * (t * 0.4).sin(),
                z: 0.01 * (t * 2.0).cos(),
            }),
        }),
        graphics: Some(proto::Graphics {
            status: 2,
            completed_laps: lap,
            position: 1 + (lap % 3),
            i_current_time_s: along * 90.0,
            i_last_time_s: if lap > 0 { 90.3 } else { 0.0 },
            i_best_time_s: if lap > 0 { 89.9 } else { 0.0 },
            lap_time_s: along * 90.0,
            delta_lap_s: 0.2 * (t * 0.1).sin(),
            normalized_car_pos: along,
        }),
        stat: Some(proto::Static {
            car_model: "ks_ferrari_488_gt3".into(),
            track: "ks_nordschleife".into(),
            track_configuration: "endurance".into(),
            max_rpm: 7500,
        }),
    }
}

/// The recording of `frames` frames, generated once and kept in the target directory.
pub fn recording(frames: u64) -> PathBuf {
    let dir = PathBuf::from(option_env!("CARGO_TARGET_TMPDIR").unwrap_or("/tmp"));
    let path = dir.join(format!("pitwall-convert-bench-v1-{frames}.pb.gz"));
    if path.exists() {
        return path;
    }
    std::fs::create_dir_all(&dir).expect("target tmp dir");
    let partial = path.with_extension("partial");
    let started = Instant::now();
    let file = std::io::BufWriter::new(std::fs::File::create(&partial).expect("create"));
    let mut writer = FrameWriter::new(file, 6);
    for i in 0..frames {
        writer.write_frame(&frame(i)).expect("write");
    }
    writer.finish().expect("finish");
    std::fs::rename(&partial, &path).expect("rename");
    eprintln!(
        "generated {} ({frames} frames) in {:.1} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    path
}
