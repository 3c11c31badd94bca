//! The `rfactor2` source end to end: bridge files in a directory, the component polling
//! them, records on its output.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use pitwall_api::testing::{build_context, parse_config, wire};
use pitwall_api::{ComponentConfig, Event, Record};
use pitwall_rfactor2::rfactor2::Rfactor2Config;

const WAIT: Duration = Duration::from_secs(5);

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    // Windows (or Wine, at least) refuses to rename over a file the source holds open: a
    // bridge there writes in place, and the version block tells a half-written buffer.
    if cfg!(windows) {
        std::fs::write(dir.join(name), bytes).unwrap();
        return;
    }
    // Write then rename, as a bridge replacing a file would: the reader never sees half.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn player_scoring(version: u32) -> Vec<u8> {
    let mut me = Scored::new(12, b"Player One", 1);
    me.is_player = true;
    scoring(
        version,
        &Info::default(),
        &[Scored::new(30, b"AI Driver", 2), me],
    )
}

async fn next_batch(queue: &pitwall_api::channel::Queue) -> Vec<Event> {
    let batch = tokio::time::timeout(WAIT, queue.pop())
        .await
        .expect("a batch arrives")
        .expect("output open");
    batch.to_vec()
}

/// The source running `config` in the background: its output, counters and shutdown.
struct Running {
    output: std::sync::Arc<pitwall_api::channel::Queue>,
    metrics: std::sync::Arc<pitwall_api::ComponentMetrics>,
    shutdown: pitwall_api::Shutdown,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

fn start(config: &Rfactor2Config, base: &Path) -> Running {
    let mut source = config.build(&build_context("rf2", base)).unwrap();
    let mut wiring = wire("rf2", false);
    Running {
        output: wiring.output.clone(),
        metrics: wiring.io.metrics.clone(),
        shutdown: wiring.io.shutdown.clone(),
        task: tokio::spawn(
            async move { source.run(&mut wiring.io).await.map_err(|e| e.to_string()) },
        ),
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("stops on shutdown")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn reads_the_bridge_files_and_emits_each_new_version_once() {
    let dir = temp_dir("source");
    let options = format!(
        "dir = {:?}\nserver_pid = 4242\ncars = \"player\"\npoll_interval_ms = 5\ngame = \"le_mans_ultimate\"",
        dir.display().to_string()
    );
    let config: Rfactor2Config = parse_config(&options);
    assert!(config.check().is_empty());
    assert_eq!(
        config.emits().to_string(),
        "car_telemetry",
        "declares what it emits"
    );
    let running = start(&config, &dir);
    let (output, metrics) = (&running.output, &running.metrics);

    // The game is not running yet: nothing, and no error.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(output.is_empty());
    assert_eq!(
        metrics.snapshot().errors,
        0,
        "a missing buffer is not an error"
    );

    // A dedicated server's names carry its process id.
    write(&dir, "$rFactor2SMMP_Scoring$4242", &player_scoring(1));
    let cars = [Car::new(30), Car::new(12)];
    write(&dir, "$rFactor2SMMP_Telemetry$4242", &telemetry(1, &cars));
    let batch = next_batch(output).await;
    assert_eq!(batch.len(), 1, "only the player's car");
    let Record::CarTelemetry(car) = &batch[0].record else {
        panic!("expected car_telemetry, got {:?}", batch[0].record);
    };
    assert_eq!(car.car_id, 12);
    assert_eq!(car.driver.as_deref(), Some("Player One"));
    assert_eq!(&*car.game, "le_mans_ultimate");
    assert_eq!(&*car.session, "le_mans_ultimate-4242");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!(
        (now - batch[0].time_ns).abs() < 5_000_000_000,
        "event time is the wall clock"
    );

    // The same version again: nothing new, however often it is polled.
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(
        output.is_empty(),
        "an unchanged version is not emitted again"
    );

    // Garbage under a new version: counted and skipped.
    let mut garbage = telemetry(2, &cars);
    put_i32(&mut garbage, 12, 500);
    write(&dir, "$rFactor2SMMP_Telemetry$4242", &garbage);
    let deadline = tokio::time::Instant::now() + WAIT;
    while metrics.snapshot().errors == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "garbage never counted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(output.is_empty(), "nothing emitted for garbage");

    // Both files too short for their version blocks: each counted once, not once per poll
    // (they are reopened and polled every few milliseconds meanwhile).
    write(&dir, "$rFactor2SMMP_Telemetry$4242", &[1, 2, 3]);
    write(&dir, "$rFactor2SMMP_Scoring$4242", &[4, 5]);
    let deadline = tokio::time::Instant::now() + WAIT;
    while metrics.snapshot().errors < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "short files never counted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(metrics.snapshot().errors, 3, "one error per broken buffer");

    // The next good version flows again, joined to the newest scoring.
    let mut moved = cars.clone();
    moved[1].gear = 5;
    let mut me = Scored::new(12, b"Player One", 2);
    me.is_player = true;
    write(
        &dir,
        "$rFactor2SMMP_Scoring$4242",
        &scoring(2, &Info::default(), &[me]),
    );
    write(&dir, "$rFactor2SMMP_Telemetry$4242", &telemetry(3, &moved));
    let batch = next_batch(output).await;
    let Record::CarTelemetry(car) = &batch[0].record else {
        panic!("expected car_telemetry");
    };
    assert_eq!((car.gear, car.place), (5, 2));

    running.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn all_cars_mode_emits_every_valid_vehicle_in_one_batch() {
    let dir = temp_dir("all");
    let config: Rfactor2Config = parse_config(&format!(
        "dir = {:?}\ncars = \"all\"\npoll_interval_ms = 2",
        dir.display().to_string()
    ));
    let running = start(&config, &dir);
    let output = &running.output;
    write(&dir, "$rFactor2SMMP_Scoring$", &player_scoring(1));
    let cars: Vec<Car> = (0..40).map(|i| Car::new(i + 100)).collect();
    write(&dir, "$rFactor2SMMP_Telemetry$", &telemetry(1, &cars));
    let batch = next_batch(output).await;
    assert_eq!(batch.len(), 40);
    let ids: Vec<i32> = batch
        .iter()
        .map(|e| match &e.record {
            Record::CarTelemetry(car) => {
                assert_eq!(&*car.game, "rfactor2");
                assert_eq!(&*car.session, "rfactor2");
                car.car_id
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(ids, (100..140).collect::<Vec<_>>());
    running.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn options_are_checked() {
    let config: Rfactor2Config = parse_config("poll_interval_ms = 0\ngame = \"\"");
    let keys: Vec<String> = config.check().into_iter().map(|p| p.key).collect();
    assert_eq!(keys, ["poll_interval_ms", "game"]);
    let defaults: Rfactor2Config = parse_config("");
    assert_eq!(defaults.poll_interval_ms, 10);
    assert_eq!(defaults.game, "rfactor2");
    assert_eq!(
        defaults.buffer_name("$rFactor2SMMP_Scoring$"),
        "$rFactor2SMMP_Scoring$"
    );
}

/// On Windows (run here under Wine: `scripts/windows-tests.sh`): no `dir`, so the plugin's
/// own named mappings are read, written here as the game's plugin would.
#[cfg(windows)]
#[tokio::test]
async fn reads_the_plugins_own_mappings_when_no_dir_is_given() {
    use pitwall_api::shared_memory::OwnedMapping;

    let config: Rfactor2Config = parse_config("cars = \"player\"\npoll_interval_ms = 5");
    let running = start(&config, Path::new("."));
    let (output, metrics) = (&running.output, &running.metrics);

    // The game is not running: no mappings, nothing emitted, no error.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(output.is_empty());
    assert_eq!(metrics.snapshot().errors, 0);

    let cars = [Car::new(30), Car::new(12)];
    let first = telemetry(1, &cars);
    let scoring_bytes = player_scoring(1);
    let scoring_map = OwnedMapping::create("$rFactor2SMMP_Scoring$", scoring_bytes.len()).unwrap();
    scoring_map.write(0, &scoring_bytes);
    let telemetry_map = OwnedMapping::create("$rFactor2SMMP_Telemetry$", first.len()).unwrap();
    telemetry_map.write(0, &first);
    let batch = next_batch(output).await;
    let Record::CarTelemetry(car) = &batch[0].record else {
        panic!("expected car_telemetry, got {:?}", batch[0].record);
    };
    assert_eq!(
        (car.car_id, car.driver.as_deref()),
        (12, Some("Player One"))
    );

    // The plugin writes the next version in place.
    let mut moved = cars.clone();
    moved[1].gear = 5;
    telemetry_map.write(0, &telemetry(2, &moved));
    let batch = next_batch(output).await;
    let Record::CarTelemetry(car) = &batch[0].record else {
        panic!("expected car_telemetry");
    };
    assert_eq!(car.gear, 5);
    assert_eq!(metrics.snapshot().errors, 0);

    running.stop().await;
}
