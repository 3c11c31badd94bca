//! How fast a full race replays from the cache at speed 0, and how much memory it takes.
//!
//! Ignored by default (it writes ~150 MB); run it in release:
//!
//! ```text
//! cargo test --release -p pitwall-openf1 --test replay_benchmark -- --ignored --nocapture
//! ```
//!
//! It writes a synthetic cache shaped like a real OpenF1 race (20 drivers, ~2 h at 3.7 Hz:
//! ~1 million `location` + `car_data` rows), then times loading it and replaying it at speed 0
//! into a consumer that drops every batch, on a 2-worker runtime, and reports peak RSS of that
//! phase (the generation's peak is reset first through /proc/self/clear_refs).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use pitwall_api::channel::{Output, Queue, Target};
use pitwall_api::metrics::ComponentMetrics;
use pitwall_api::record::format_iso8601_ns;
use pitwall_api::{ComponentConfig, Io, RecordKind, Shutdown, WhenFull};
use pitwall_openf1::source::cache;
use pitwall_openf1::source::OpenF1Config;

const DRIVERS: u32 = 20;
const ROWS_PER_DRIVER: usize = 26_000; // x2 series x20 drivers = 1.04 M rows
const START_NS: i64 = 1_716_728_400_000_000_000; // 2024-05-26T13:00:00Z
const STEP_NS: i64 = 270_000_000; // 3.7 Hz

fn write_file(path: &Path, gzip: bool, body: impl FnOnce(&mut dyn Write)) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    if gzip {
        let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        body(&mut encoder);
        encoder.finish().unwrap();
    } else {
        let mut file = file;
        body(&mut file);
        file.flush().unwrap();
    }
}

fn generate_one(dir: &Path) {
    generate_drivers(dir, false, 1);
}

fn generate(dir: &Path, gzip: bool) {
    let ext = if gzip { "json.gz" } else { "json" };
    let docs = [
        (
            "sessions",
            format!(
                r#"[{{"session_key":9999,"meeting_key":1,"session_name":"Race","session_type":"Race","date_start":"{}","date_end":"{}","year":2024,"circuit_short_name":"Synthetic"}}]"#,
                format_iso8601_ns(START_NS),
                format_iso8601_ns(START_NS + 7_200_000_000_000)
            ),
        ),
        (
            "meetings",
            r#"[{"meeting_key":1,"meeting_name":"Synthetic Grand Prix"}]"#.to_string(),
        ),
    ];
    for (name, text) in docs {
        write_file(&dir.join(format!("{name}.{ext}")), gzip, |w| {
            w.write_all(text.as_bytes()).unwrap()
        });
    }
    write_file(&dir.join(format!("drivers.{ext}")), gzip, |w| {
        let rows: Vec<String> = (1..=DRIVERS)
            .map(|d| format!(r#"{{"session_key":9999,"meeting_key":1,"driver_number":{d},"name_acronym":"D{d:02}","team_colour":"3671C6"}}"#))
            .collect();
        write!(w, "[{}]", rows.join(",")).unwrap();
    });
    write_file(&dir.join(format!("laps.{ext}")), gzip, |w| {
        let mut rows = Vec::new();
        for d in 1..=DRIVERS {
            for lap in 1..=70u32 {
                let start = START_NS
                    + 60_000_000_000
                    + i64::from(lap - 1) * 90_000_000_000
                    + i64::from(d) * 200_000_000;
                let duration = if lap == 1 {
                    "null".to_string()
                } else {
                    format!("{:.3}", 90.0 + f64::from(d) * 0.01)
                };
                rows.push(format!(r#"{{"session_key":9999,"meeting_key":1,"driver_number":{d},"lap_number":{lap},"date_start":"{}","lap_duration":{duration},"duration_sector_1":30.0,"duration_sector_2":30.0,"duration_sector_3":30.0,"is_pit_out_lap":false}}"#, format_iso8601_ns(start)));
            }
        }
        write!(w, "[{}]", rows.join(",")).unwrap();
    });
    write_file(&dir.join(format!("position.{ext}")), gzip, |w| {
        let rows: Vec<String> = (1..=DRIVERS)
            .map(|d| format!(r#"{{"session_key":9999,"meeting_key":1,"driver_number":{d},"date":"{}","position":{d}}}"#, format_iso8601_ns(START_NS)))
            .collect();
        write!(w, "[{}]", rows.join(",")).unwrap();
    });
    write_file(&dir.join(format!("intervals.{ext}")), gzip, |w| {
        let mut rows = Vec::new();
        for i in 0..1800i64 {
            for d in 1..=DRIVERS {
                rows.push(format!(r#"{{"session_key":9999,"meeting_key":1,"driver_number":{d},"date":"{}","gap_to_leader":{:.3},"interval":0.5}}"#, format_iso8601_ns(START_NS + i * 4_000_000_000), f64::from(d) * 0.5));
            }
        }
        write!(w, "[{}]", rows.join(",")).unwrap();
    });
    generate_drivers(dir, gzip, DRIVERS);
    write_file(&dir.join("manifest.json"), false, |w| {
        w.write_all(br#"{"session_key":9999,"complete":true,"source":"synthetic benchmark","created":"2024-05-26T12:00:00+00:00"}"#).unwrap();
    });
}

fn generate_drivers(dir: &Path, gzip: bool, drivers: u32) {
    let ext = if gzip { "json.gz" } else { "json" };
    for d in 1..=drivers {
        write_file(&dir.join(format!("location/{d}.{ext}")), gzip, |w| {
            w.write_all(b"[").unwrap();
            for i in 0..ROWS_PER_DRIVER {
                let angle = i as f64 * 0.02 + f64::from(d);
                let (x, y) = ((angle.cos() * 5000.0) as i64, (angle.sin() * 3000.0) as i64);
                if i > 0 {
                    w.write_all(b",").unwrap();
                }
                write!(w, r#"{{"date":"{}","driver_number":{d},"meeting_key":1,"session_key":9999,"x":{x},"y":{y},"z":{}}}"#, format_iso8601_ns(START_NS + i as i64 * STEP_NS), 100 + i % 7).unwrap();
            }
            w.write_all(b"]").unwrap();
        });
        write_file(&dir.join(format!("car_data/{d}.{ext}")), gzip, |w| {
            w.write_all(b"[").unwrap();
            for i in 0..ROWS_PER_DRIVER {
                if i > 0 {
                    w.write_all(b",").unwrap();
                }
                write!(w, r#"{{"brake":0,"date":"{}","driver_number":{d},"drs":{},"meeting_key":1,"n_gear":{},"rpm":{},"session_key":9999,"speed":{},"throttle":{}}}"#, format_iso8601_ns(START_NS + i as i64 * STEP_NS + 50_000_000), if i % 3 == 0 { 12 } else { 0 }, 1 + i % 8, 10_000 + i % 2000, 100 + i % 220, i % 101).unwrap();
            }
            w.write_all(b"]").unwrap();
        });
    }
}

fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time of this process so far, in ms (10 ms resolution).
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) * 10
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn measure(root: &Path, label: &str) {
    reset_peak_rss();
    let cpu_started = cpu_ms();
    let started = Instant::now();
    let loaded = cache::load_cache(&root.join("race_data_9999")).unwrap();
    let load_time = started.elapsed();
    let load_cpu = cpu_ms() - cpu_started;
    let samples = loaded.sample_count();
    drop(loaded);

    let config: OpenF1Config = pitwall_api::testing::parse_config(&format!(
        "session_key = 9999\nspeed = 0\nstart = \"data_start\"\ncache_dir = {:?}\nbase_url = \"http://127.0.0.1:9/v1\"",
        root.display().to_string()
    ));
    let cpu_started = cpu_ms();
    let started = Instant::now();
    let metrics = Arc::new(ComponentMetrics::default());
    let queue = Queue::new(64, Arc::new(ComponentMetrics::default()));
    let output = Output::new(metrics.clone());
    output.set_targets(vec![Target {
        consumer: "drop".into(),
        queue: queue.clone(),
        when_full: WhenFull::Block,
    }]);
    let consumer = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let (mut events, mut positions, mut ends) = (0usize, 0usize, 0usize);
            while let Some(batch) = queue.pop().await {
                events += batch.len();
                positions += batch
                    .iter()
                    .filter(|e| e.kind() == RecordKind::Position)
                    .count();
                ends += batch
                    .iter()
                    .filter(|e| e.kind() == RecordKind::SessionEnd)
                    .count();
            }
            (events, positions, ends)
        })
    };
    let mut io = Io {
        id: "bench".into(),
        input: None,
        output,
        shutdown: Shutdown::new(),
        metrics,
    };
    let mut source = config
        .build(&pitwall_api::testing::build_context("bench", "."))
        .unwrap();
    source.run(&mut io).await.unwrap();
    queue.close();
    let (events, positions, ends) = consumer.await.unwrap();
    let total = started.elapsed();
    let total_cpu = cpu_ms() - cpu_started;
    println!(
        "{label}: load_cache alone {load_time:?} (cpu {load_cpu} ms, {samples} samples); source run (load + replay at speed 0 + consumer) {total:?} (cpu {total_cpu} ms); {events} events ({positions} positions); peak RSS {} MB",
        peak_rss_kb().unwrap_or(0) / 1024
    );
    assert_eq!(ends, 1);
    assert_eq!(positions, DRIVERS as usize * ROWS_PER_DRIVER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: writes ~150 MB; run in release with --ignored --nocapture"]
async fn full_race_replays_fast_from_the_cache() {
    // PITWALL_BENCH_DIR=/some/dir keeps the generated caches there, so that a second run
    // measures in a fresh process whose peak RSS owes nothing to the generation.
    let kept = std::env::var_os("PITWALL_BENCH_DIR").map(std::path::PathBuf::from);
    for gzip in [false, true] {
        let temporary = tempfile::tempdir().unwrap();
        let root = match &kept {
            Some(dir) => dir.join(if gzip { "gzip" } else { "plain" }),
            None => temporary.path().to_path_buf(),
        };
        if !root.join("race_data_9999/manifest.json").exists() {
            let started = Instant::now();
            generate(&root.join("race_data_9999"), gzip);
            println!(
                "generated ({}) in {:?}",
                if gzip { "gzip" } else { "plain" },
                started.elapsed()
            );
        }
        // The machine may be busy: the best of three runs is the figure.
        for _ in 0..3 {
            measure(&root, if gzip { "gzip cache" } else { "plain cache" }).await;
        }
    }
}

/// Parse speed of one per-driver file on one core.
#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn one_location_file_parses_fast() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("race_data_9999");
    generate_one(&dir);
    for name in ["location/1.json", "car_data/1.json"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let mut best = std::time::Duration::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            let mut skipped = pitwall_openf1::source::rows::Skipped::default();
            let n = if name.starts_with("location") {
                pitwall_openf1::source::rows::location_samples(&text, &mut skipped)
                    .unwrap()
                    .len()
            } else {
                pitwall_openf1::source::rows::car_samples(&text, &mut skipped)
                    .unwrap()
                    .len()
            };
            assert_eq!(n, ROWS_PER_DRIVER);
            best = best.min(started.elapsed());
        }
        println!(
            "{name}: {} bytes in {best:?} = {:.0} MB/s",
            text.len(),
            text.len() as f64 / best.as_secs_f64() / 1e6
        );
    }
}

/// Peak memory of loading alone (needs PITWALL_BENCH_DIR with a generated cache).
#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn load_only_memory() {
    let Some(dir) = std::env::var_os("PITWALL_BENCH_DIR") else {
        return;
    };
    let before = peak_rss_kb().unwrap_or(0);
    let data = cache::load_cache(&Path::new(&dir).join("plain/race_data_9999")).unwrap();
    println!(
        "event size {} B; before {} MB, after load peak {} MB, {} samples, {} series events",
        std::mem::size_of::<pitwall_api::Event>(),
        before / 1024,
        peak_rss_kb().unwrap_or(0) / 1024,
        data.sample_count(),
        data.series.len()
    );
}
