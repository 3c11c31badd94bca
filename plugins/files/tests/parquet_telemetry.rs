//! The `parquet` sink's typed path for `car_telemetry`: files read back with the parquet
//! crate and with pyarrow (what analysis notebooks use), row groups bounded by rows and by
//! bytes, rows sorted by `t_ns` within a row group.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pitwall_api::record::Lap;
use pitwall_api::testing::{build_context, parse_config, wire};
use pitwall_api::{CarTelemetry, ComponentConfig, Event, Record, WhenFull};
use pitwall_files::car_columns::CONVERTER_COLUMNS;
use pitwall_files::parquet::ParquetConfig;

fn car(i: u64) -> Event {
    Event::new(
        1_700_000_000_000_000_000 + i as i64,
        Record::CarTelemetry(Arc::new(CarTelemetry {
            game: "assetto_corsa".into(),
            session: if i % 2 == 0 { "rig-1" } else { "rig-2" }.into(),
            car_id: 0,
            is_player: true,
            monotonic_ns: 9_000_000 + i * 3_000_000,
            driver: (i % 3 == 0).then(|| "Ann".into()),
            car_model: Some("ks_ferrari_488_gt3".into()),
            track: Some("monza".into()),
            track_configuration: None,
            speed_kmh: i as f32 / 4.0,
            throttle: 0.5,
            brake: 0.25,
            clutch: 0.0,
            steering: -0.125,
            gear: (i % 7) as i32 - 1,
            rpm: 6000.0 + i as f32,
            max_rpm: 8000.0,
            acc_g: [0.5, 1.0, -0.25],
            velocity: [1.0, 2.0, 3.0],
            angular_velocity: [0.1, 0.2, 0.3],
            tyre_slip: [0.0; 4],
            tyre_load: [3000.0; 4],
            tyre_temp_c: [80.0 + i as f32, 81.0, 82.0, 83.0],
            suspension_travel: [0.01; 4],
            position: [10.0, 0.0, -10.0],
            status: 2,
            session_type: Some(10),
            completed_laps: (i / 100) as i32,
            place: 3,
            spline: 0.5,
            current_lap_s: Some(12.5),
            last_lap_s: (i >= 100).then_some(101.5),
            best_lap_s: (i >= 100).then_some(100.25),
            lap_time_s: None,
            delta_lap_s: -0.5,
            in_pit: i % 10 == 0,
        })),
    )
}

/// Records 0..n, each run of `chunk` in reverse order (as if they arrived out of order).
fn reversed_chunks(n: u64, chunk: u64) -> Vec<Event> {
    let mut events = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        events.extend((start..end).rev().map(car));
        start = end;
    }
    events
}

async fn run_sink(dir: &Path, options: &str, events: Vec<Event>) -> u64 {
    let config: ParquetConfig = parse_config(&format!("path = \"out\"\n{options}"));
    assert!(config.check().is_empty());
    let mut sink = config.build(&build_context("pq", dir)).unwrap();
    let mut wiring = wire("pq", true);
    let input = wiring.input.take().unwrap();
    for batch in events.chunks(700) {
        input.push(Arc::new(batch.to_vec()), WhenFull::Block).await;
    }
    input.close();
    sink.run(&mut wiring.io).await.unwrap();
    wiring.io.metrics.snapshot().errors
}

fn car_file(dir: &Path) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with("car_telemetry-") && name.ends_with("-0.parquet")
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

/// Rows per row group, and every row in one batch.
fn read(path: &Path) -> (Vec<i64>, RecordBatch) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let groups = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder
        .with_batch_size(1 << 20)
        .build()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    (groups, arrow_select_concat(&schema, &batches))
}

fn arrow_select_concat(schema: &arrow_schema::SchemaRef, batches: &[RecordBatch]) -> RecordBatch {
    arrow_select::concat::concat_batches(schema, batches).unwrap()
}

fn i64s(batch: &RecordBatch, name: &str) -> Vec<i64> {
    batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

#[tokio::test]
async fn car_telemetry_gets_typed_columns_converter_first_sorted_per_row_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut events = reversed_chunks(2500, 1000);
    // Other kinds still go the generic way, to their own files.
    events.insert(
        10,
        Event::new(
            5,
            Record::Lap(Arc::new(Lap {
                session_key: "s".into(),
                driver_number: 1,
                lap_number: 2,
                ..Lap::default()
            })),
        ),
    );
    let errors = run_sink(dir.path(), "row_group_rows = 1000", events).await;
    assert_eq!(errors, 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join("out")).unwrap().count(),
        2
    );

    let (groups, batch) = read(&car_file(dir.path()));
    assert_eq!(groups, vec![1000, 1000, 500]);
    let schema = batch.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names[..14], CONVERTER_COLUMNS);
    assert_eq!(
        CONVERTER_COLUMNS,
        [
            "t_ns",
            "game",
            "session",
            "speed_kmh",
            "gas",
            "brake",
            "gear",
            "steer",
            "rpm",
            "ax_g",
            "ay_g",
            "az_g",
            "lap",
            "pos"
        ]
    );
    // Each row group arrived reversed: sorted by t_ns within it (and so throughout here).
    let t_ns = i64s(&batch, "t_ns");
    let want: Vec<i64> = (0..2500).map(|i| 9_000_000 + i * 3_000_000).collect();
    assert_eq!(t_ns, want);
    // Whole rows moved together.
    let time_ns = i64s(&batch, "time_ns");
    assert_eq!(time_ns[1234], 1_700_000_000_000_000_000 + 1234);
    let f32s = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Float32Type>()
            .clone()
    };
    assert_eq!(f32s("speed_kmh").value(1234), 1234.0 / 4.0);
    assert_eq!(f32s("tyre_temp_c_fl").value(7), 87.0);
    assert_eq!(f32s("tyre_temp_c_rr").value(7), 83.0);
    assert_eq!(f32s("az_g").value(0), -0.25);
    assert_eq!(f32s("steer").value(0), -0.125);
    assert_eq!(f32s("gas").value(0), 0.5);
    let best = f32s("best_lap_s");
    assert!(best.is_null(99) && best.value(100) == 100.25);
    assert_eq!(f32s("lap_time_s").null_count(), 2500);
    let i32s = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Int32Type>()
            .clone()
    };
    assert_eq!(i32s("gear").value(8), 0);
    assert_eq!(i32s("lap").value(2499), 24);
    assert_eq!(i32s("pos").value(0), 3);
    assert_eq!(i32s("session_type").value(0), 10);
    let strings = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_string::<i32>()
            .clone()
    };
    assert_eq!(strings("game").value(0), "assetto_corsa");
    assert_eq!(strings("session").value(3), "rig-2");
    assert_eq!(strings("driver").value(3), "Ann");
    assert!(strings("driver").is_null(4));
    assert_eq!(strings("track_configuration").null_count(), 2500);
    assert_eq!(
        batch
            .column_by_name("in_pit")
            .unwrap()
            .as_boolean()
            .true_count(),
        250
    );
    assert_eq!(
        schema.field_with_name("rpm").unwrap().data_type(),
        &DataType::Float32
    );
}

#[tokio::test]
async fn row_groups_also_end_at_row_group_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let errors = run_sink(
        dir.path(),
        "row_group_rows = 100000\nrow_group_bytes = 50000",
        (0..3000).map(car).collect(),
    )
    .await;
    assert_eq!(errors, 0);
    let (groups, batch) = read(&car_file(dir.path()));
    assert_eq!(batch.num_rows(), 3000);
    // A row takes a bit over 230 bytes in the builders: about 200 rows per group.
    assert!(groups.len() >= 10, "{groups:?}");
    assert!(
        groups.iter().all(|&rows| rows <= 50_000 / 230),
        "{groups:?}"
    );
    assert_eq!(groups.iter().sum::<i64>(), 3000);
}

/// pyarrow's view of a file: column names, types of a few, rows, row groups, sortedness.
const PYARROW_READER: &str = r#"
import json, sys
try:
    import pyarrow.parquet as pq
except ImportError:
    print("NO_PYARROW")
    sys.exit(0)
f = pq.ParquetFile(sys.argv[1])
table = f.read()
t_ns = table.column("t_ns").to_pylist()
print(json.dumps({
    "columns": table.column_names,
    "rows": table.num_rows,
    "row_groups": f.num_row_groups,
    "sorted": all(a <= b for a, b in zip(t_ns, t_ns[1:])),
    "types": {name: str(table.schema.field(name).type) for name in ["t_ns", "game", "speed_kmh", "gear", "best_lap_s", "in_pit"]},
    "speed_sum": sum(table.column("speed_kmh").to_pylist()),
    "best_nulls": table.column("best_lap_s").null_count,
    "session_last": table.column("session").to_pylist()[-1],
}))
"#;

#[tokio::test]
async fn pyarrow_reads_the_car_telemetry_file() {
    let dir = tempfile::tempdir().unwrap();
    run_sink(
        dir.path(),
        "row_group_rows = 512",
        reversed_chunks(2000, 512),
    )
    .await;
    let output = Command::new("python3")
        .arg("-c")
        .arg(PYARROW_READER)
        .arg(car_file(dir.path()))
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.trim() != "NO_PYARROW",
        "pyarrow is missing: run scripts/install-test-deps.sh (it runs `python3 -m pip install pyarrow`)"
    );
    let view: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    let columns: Vec<&str> = view["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(columns[..14], CONVERTER_COLUMNS);
    assert!(columns.contains(&"tyre_temp_c_fl") && columns.contains(&"suspension_travel_rr"));
    assert_eq!(view["rows"], 2000);
    assert_eq!(view["row_groups"], 4);
    assert_eq!(view["sorted"], true);
    assert_eq!(view["types"]["t_ns"], "int64");
    assert_eq!(view["types"]["game"], "string");
    assert_eq!(view["types"]["speed_kmh"], "float");
    assert_eq!(view["types"]["gear"], "int32");
    assert_eq!(view["types"]["in_pit"], "bool");
    // speed = i / 4 for i in 0..2000, exact in float32.
    assert_eq!(
        view["speed_sum"].as_f64().unwrap(),
        1999.0 * 2000.0 / 2.0 / 4.0
    );
    assert_eq!(view["best_nulls"], 100);
    assert_eq!(view["session_last"], "rig-2");
}
