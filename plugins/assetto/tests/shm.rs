//! `assetto_shm` reading pages a test writes byte by byte at the documented offsets
//! (FORMATS.md 5c), as a bridge would expose them: frames on each new `packetId`, nothing
//! while it stands still, short pages counted and skipped, missing files waited for. On
//! Windows (run here under Wine: `scripts/windows-tests.sh`), the same pages in named
//! mappings the test creates as the game does.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pitwall_api::channel::Queue;
use pitwall_api::testing::{build_context, drain, parse_config, wire};
use pitwall_api::{CarTelemetry, ComponentConfig, ComponentMetrics, Record, Shutdown};
use pitwall_assetto::assetto_shm::AssettoShmConfig;
use tokio::task::JoinHandle;

/// A page under construction: little-endian values at byte offsets.
struct Page(Vec<u8>);

impl Page {
    fn new(len: usize) -> Self {
        Self(vec![0; len])
    }
    fn i32(mut self, offset: usize, value: i32) -> Self {
        self.0[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        self
    }
    fn f32(mut self, offset: usize, value: f32) -> Self {
        self.0[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        self
    }
    fn f32s(mut self, offset: usize, values: &[f32]) -> Self {
        for (i, v) in values.iter().enumerate() {
            self = self.f32(offset + 4 * i, *v);
        }
        self
    }
    fn utf16(mut self, offset: usize, text: &str) -> Self {
        for (i, unit) in text.encode_utf16().enumerate() {
            self.0[offset + 2 * i..offset + 2 * i + 2].copy_from_slice(&unit.to_le_bytes());
        }
        self
    }
}

/// Physics as the game's full page (712 bytes in recent versions).
fn physics(packet_id: i32, speed: f32) -> Page {
    Page::new(712)
        .i32(0, packet_id)
        .f32(4, 0.8) // gas
        .f32(8, 0.1) // brake
        .f32(12, 42.0) // fuel
        .i32(16, 4) // gear: third
        .i32(20, 6500) // rpms
        .f32(24, -0.2) // steerAngle
        .f32(28, speed)
        .f32s(32, &[1.0, 2.0, 3.0]) // velocity
        .f32s(44, &[0.4, 1.1, -0.6]) // accG
        .f32s(56, &[0.01, 0.02, 0.03, 0.04]) // wheelSlip
        .f32s(72, &[2900.0, 3000.0, 3100.0, 3200.0]) // wheelLoad
        .f32s(152, &[85.0, 86.0, 87.0, 88.0]) // tyreCoreTemperature
        .f32s(184, &[0.05, 0.06, 0.07, 0.08]) // suspensionTravel
        .f32(216, 0.01) // roll
        .f32s(296, &[0.0, 0.3, 0.0]) // localAngularVel
        .f32(364, 0.25) // clutch
}

fn graphics(packet_id: i32) -> Page {
    Page::new(1500)
        .i32(0, packet_id)
        .i32(4, 2) // live
        .i32(8, 2) // race
        .utf16(12, "1:02.345")
        .i32(132, 5) // completedLaps
        .i32(136, 3) // position
        .i32(140, 62_345)
        .i32(144, 101_500)
        .i32(148, 100_250)
        .i32(160, 1) // isInPit
        .utf16(176, "Soft")
        .f32(248, 0.625)
        .f32s(252, &[-120.5, 4.0, 310.25])
}

fn statics() -> Page {
    Page::new(820)
        .utf16(0, "1.7")
        .utf16(30, "1.16")
        .i32(64, 1)
        .utf16(68, "ks_porsche_911_gt3_r")
        .utf16(134, "spa")
        .utf16(200, "Jacky")
        .utf16(266, "Ickx")
        .i32(400, 3)
        .i32(412, 9250)
}

/// Replace a page atomically, as a bridge should (a reader never sees it half written).
fn write(path: &Path, page: &Page) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &page.0).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Running {
    task: JoinHandle<()>,
    output: Arc<Queue>,
    shutdown: Shutdown,
    metrics: Arc<ComponentMetrics>,
}

fn start(dir: &Path) -> Running {
    start_with("dir = \"pages\"\npoll_interval_ms = 2", dir)
}

fn start_with(options: &str, dir: &Path) -> Running {
    let config: AssettoShmConfig = parse_config(options);
    let mut component = config.build(&build_context("ac", dir)).unwrap();
    let mut wiring = wire("ac", false);
    let output = wiring.output.clone();
    let shutdown = wiring.io.shutdown.clone();
    let metrics = wiring.io.metrics.clone();
    let task = tokio::spawn(async move {
        component.run(&mut wiring.io).await.unwrap();
    });
    Running {
        task,
        output,
        shutdown,
        metrics,
    }
}

impl Running {
    /// Stop the source; the cars it emitted.
    async fn stop(self) -> Vec<Arc<CarTelemetry>> {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("stops on shutdown")
            .unwrap();
        drain(&self.output)
            .iter()
            .map(|e| match &e.record {
                Record::CarTelemetry(car) => car.clone(),
                other => panic!("unexpected {:?}", other.kind()),
            })
            .collect()
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn frames_follow_the_physics_packet_id() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("pages");
    std::fs::create_dir(&dir).unwrap();
    let running = start(base.path());
    let (p, g, s) = (
        dir.join("acpmf_physics"),
        dir.join("acpmf_graphics"),
        dir.join("acpmf_static"),
    );

    // No files yet: nothing, and no error.
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(running.output.is_empty());

    write(&s, &statics());
    write(&g, &graphics(1));
    write(&p, &physics(0, 0.0)); // a zeroed game: nothing
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(running.output.is_empty());

    write(&p, &physics(10, 150.0));
    until("the first frame", || running.output.len() == 1).await;
    // The same packetId read again and again: still one frame.
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(running.output.len(), 1);

    // A short physics page (a bridge caught mid-write): counted once, skipped.
    write(&p, &Page::new(100).i32(0, 11));
    until("the short page counted", || {
        running.metrics.snapshot().errors == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        running.metrics.snapshot().errors,
        1,
        "a page that stays bad counts once"
    );
    // A short graphics page while physics advances: counted, frame skipped.
    write(&g, &Page::new(200));
    write(&p, &physics(12, 151.0));
    until("the short graphics counted", || {
        running.metrics.snapshot().errors == 2
    })
    .await;
    assert_eq!(running.output.len(), 1);

    write(&g, &graphics(2));
    until("the next frame", || running.output.len() == 2).await;
    write(&p, &physics(13, 152.0));
    until("the third frame", || running.output.len() == 3).await;
    // A physics page of only the documented fields: no clutch, no angular velocity.
    write(&p, &Page(physics(14, 153.0).0[..220].to_vec()));
    until("the fourth frame", || running.output.len() == 4).await;

    let cars = running.stop().await;
    assert_eq!(
        cars.iter().map(|c| c.speed_kmh).collect::<Vec<_>>(),
        vec![150.0, 151.0, 152.0, 153.0]
    );
    let car = &cars[0];
    assert_eq!(&*car.session, "acpmf");
    assert_eq!(&*car.game, "assetto_corsa");
    assert_eq!((car.throttle, car.brake, car.clutch), (0.8, 0.1, 0.25));
    assert_eq!(car.gear, 3, "the game's 4 is third gear");
    assert_eq!(car.rpm, 6500.0);
    assert_eq!(car.steering, -0.2);
    assert_eq!(car.velocity, [1.0, 2.0, 3.0]);
    assert_eq!(car.acc_g, [0.4, 1.1, -0.6]);
    assert_eq!(car.angular_velocity, [0.0, 0.3, 0.0]);
    assert_eq!(car.tyre_slip, [0.01, 0.02, 0.03, 0.04]);
    assert_eq!(car.tyre_load, [2900.0, 3000.0, 3100.0, 3200.0]);
    assert_eq!(car.tyre_temp_c, [85.0, 86.0, 87.0, 88.0]);
    assert_eq!(car.suspension_travel, [0.05, 0.06, 0.07, 0.08]);
    assert_eq!(car.status, 2);
    assert_eq!(car.session_type, Some(2));
    assert_eq!(car.completed_laps, 5);
    assert_eq!(car.place, 3);
    assert_eq!(car.current_lap_s, Some(62.345));
    assert_eq!(car.last_lap_s, Some(101.5));
    assert_eq!(car.best_lap_s, Some(100.25));
    assert!(car.in_pit);
    assert_eq!(car.spline, 0.625);
    assert_eq!(car.position, [-120.5, 4.0, 310.25]);
    assert_eq!(car.driver.as_deref(), Some("Jacky Ickx"));
    assert_eq!(car.car_model.as_deref(), Some("ks_porsche_911_gt3_r"));
    assert_eq!(car.track.as_deref(), Some("spa"));
    assert_eq!(car.max_rpm, 9250.0);
    let short = &cars[3];
    assert_eq!(short.clutch, 0.0);
    assert_eq!(short.angular_velocity, [0.0; 3]);
    assert!(cars
        .windows(2)
        .all(|w| w[0].monotonic_ns < w[1].monotonic_ns));
}

/// The game's side on Windows: `Local\acpmf_*` mappings backed by the paging file.
#[cfg(windows)]
mod game_mappings {
    use super::*;
    use pitwall_api::shared_memory::OwnedMapping;

    fn mapping(name: &str, len: usize, page: &Page) -> OwnedMapping {
        let mapping = OwnedMapping::create(name, len).unwrap();
        mapping.write(0, &page.0);
        mapping
    }

    #[tokio::test]
    async fn reads_the_games_own_mappings_when_no_files_are_named() {
        let base = tempfile::tempdir().unwrap();
        let running = start_with("poll_interval_ms = 2", base.path());
        // The game is not running: no mappings, nothing emitted, no error.
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(running.output.is_empty());
        assert_eq!(running.metrics.snapshot().errors, 0);

        let _statics = mapping("Local\\acpmf_static", 2048, &statics());
        let _graphics = mapping("Local\\acpmf_graphics", 2048, &graphics(1));
        let physics_page = mapping("Local\\acpmf_physics", 1024, &physics(10, 150.0));
        until("the first frame", || running.output.len() == 1).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(running.output.len(), 1, "one frame per packetId");
        physics_page.write(0, &physics(11, 151.0).0);
        until("the second frame", || running.output.len() == 2).await;

        let metrics = running.metrics.clone();
        let cars = running.stop().await;
        assert_eq!(
            cars.iter().map(|c| c.speed_kmh).collect::<Vec<_>>(),
            vec![150.0, 151.0]
        );
        assert_eq!(cars[0].gear, 3);
        assert_eq!(cars[0].clutch, 0.25);
        assert_eq!(cars[0].driver.as_deref(), Some("Jacky Ickx"));
        assert_eq!(cars[0].track.as_deref(), Some("spa"));
        assert_eq!(cars[0].max_rpm, 9250.0);
        assert_eq!(cars[0].position, [-120.5, 4.0, 310.25]);
        assert_eq!(metrics.snapshot().errors, 0);
    }
}
