//! The `parquet` sink, end to end: events in, files read back with the parquet crate's reader.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pitwall_api::record::{Lap, MqttMessage, RacePosition, Record};
use pitwall_api::testing::{build_context, parse_config, wire};
use pitwall_api::{ComponentConfig, Event, WhenFull};
use pitwall_files::parquet::ParquetConfig;

fn race_position(i: usize) -> Event {
    Event::new(
        1_000 + i as i64,
        Record::RacePosition(RacePosition {
            session_key: "9158".into(),
            car: (i % 20) as u32 + 1,
            position: (i % 20) as u32 + 1,
        }),
    )
}

fn lap(i: usize) -> Event {
    Event::new(
        5_000 + i as i64,
        Record::Lap(Arc::new(Lap {
            session_key: "9158".into(),
            driver_number: 44,
            lap_number: i as u32 + 1,
            // Lap 1 is untimed, as OpenF1 reports it.
            lap_duration: (i > 0).then_some(90.0 + i as f64 / 4.0),
            ..Lap::default()
        })),
    )
}

fn mqtt(i: usize) -> Event {
    Event::new(
        9_000 + i as i64,
        Record::MqttMessage(Arc::new(MqttMessage {
            topic: format!("carrera/gate/{}", i % 2),
            fields: [("lane".to_string(), (i % 2).to_string())].into(),
            payload: serde_json::json!({"lane": i % 2, "t": i * 10}),
        })),
    )
}

/// Run a sink built from `options` (with `path` set to `dir`) over `batches` to the end.
async fn run_sink(dir: &Path, options: &str, batches: Vec<Vec<Event>>) -> u64 {
    let config: ParquetConfig = parse_config(&format!("path = \"out\"\n{options}"));
    assert!(config.check().is_empty());
    let mut sink = config.build(&build_context("pq", dir)).unwrap();
    let mut wiring = wire("pq", true);
    let input = wiring.input.take().unwrap();
    for batch in batches {
        input.push(Arc::new(batch), WhenFull::Block).await;
    }
    input.close();
    sink.run(&mut wiring.io).await.unwrap();
    wiring.io.metrics.snapshot().errors
}

/// The files written, sorted by name.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn file_of(dir: &Path, kind: &str) -> PathBuf {
    let found: Vec<PathBuf> = files(dir)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with(&format!("{kind}-")) && name.ends_with("-0.parquet")
        })
        .collect();
    assert_eq!(found.len(), 1, "one {kind} file: {found:?}");
    found[0].clone()
}

/// Row groups and all rows of a file, read with the parquet crate's reader.
fn read(path: &Path) -> (usize, Vec<String>, RecordBatch) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let row_groups = builder.metadata().num_row_groups();
    let schema = builder.schema().clone();
    let names = schema.fields().iter().map(|f| f.name().clone()).collect();
    let batches: Vec<RecordBatch> = builder.build().unwrap().collect::<Result<_, _>>().unwrap();
    // The reader yields batches of up to 1024 rows: the tests write fewer, so one batch.
    assert_eq!(batches.len(), 1, "{}", path.display());
    (row_groups, names, batches[0].clone())
}

fn ints(batch: &RecordBatch, column: &str) -> Vec<Option<i64>> {
    batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<Int64Type>()
        .iter()
        .collect()
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    batch
        .column_by_name(column)
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect()
}

#[tokio::test]
async fn writes_one_readable_file_per_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut mixed = Vec::new();
    for i in 0..30 {
        mixed.push(race_position(i));
        if i % 3 == 0 {
            mixed.push(lap(i / 3));
        }
        if i % 5 == 0 {
            mixed.push(mqtt(i / 5));
        }
    }
    let (first, second) = mixed.split_at(17);
    let errors = run_sink(dir.path(), "", vec![first.to_vec(), second.to_vec()]).await;
    assert_eq!(errors, 0);
    assert_eq!(files(dir.path()).len(), 3);

    let (groups, names, batch) = read(&file_of(dir.path(), "race_position"));
    assert_eq!(groups, 1);
    assert_eq!(batch.num_rows(), 30);
    assert_eq!(names[..2], ["time_ns", "kind"]);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["car", "kind", "position", "session_key", "time_ns"]
    );
    assert_eq!(
        ints(&batch, "time_ns"),
        (1_000..1_030).map(Some).collect::<Vec<_>>()
    );
    assert_eq!(ints(&batch, "car")[..3], [Some(1), Some(2), Some(3)]);
    assert_eq!(ints(&batch, "position")[21], Some(2));
    assert!(strings(&batch, "kind")
        .iter()
        .all(|k| k.as_deref() == Some("race_position")));
    assert_eq!(strings(&batch, "session_key")[0].as_deref(), Some("9158"));

    let (_, names, batch) = read(&file_of(dir.path(), "lap"));
    assert_eq!(batch.num_rows(), 10);
    for column in [
        "driver_number",
        "lap_number",
        "lap_duration",
        "is_pit_out_lap",
    ] {
        assert!(names.iter().any(|n| n == column), "{column} in {names:?}");
    }
    assert_eq!(ints(&batch, "lap_number")[9], Some(10));
    let durations: Vec<Option<f64>> = batch
        .column_by_name("lap_duration")
        .unwrap()
        .as_primitive::<Float64Type>()
        .iter()
        .collect();
    assert_eq!(durations[0], None);
    assert_eq!(durations[1], Some(90.25));

    let (_, names, batch) = read(&file_of(dir.path(), "mqtt_message"));
    assert_eq!(batch.num_rows(), 6);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["fields", "kind", "payload", "time_ns", "topic"]);
    assert_eq!(
        strings(&batch, "topic")[1].as_deref(),
        Some("carrera/gate/1")
    );
    // Nested values are JSON text.
    let payload: serde_json::Value =
        serde_json::from_str(strings(&batch, "payload")[3].as_deref().unwrap()).unwrap();
    assert_eq!(payload, serde_json::json!({"lane": 1, "t": 30}));
    assert_eq!(
        strings(&batch, "fields")[1].as_deref(),
        Some("{\"lane\":\"1\"}")
    );
}

#[tokio::test]
async fn small_row_groups_and_misfit_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut events: Vec<Event> = (0..10).map(race_position).collect();
    // Raw JSON records: `v` is inferred as a number from the first group of 4, so a later
    // text `v` does not fit and is skipped; an unseen field is dropped from its row.
    let json = |t: i64, v: serde_json::Value| Event::new(t, Record::Json(Arc::new(v)));
    events.extend((0..4).map(|i| json(i, serde_json::json!({"v": i}))));
    events.push(json(10, serde_json::json!({"v": "text"})));
    events.push(json(11, serde_json::json!({"v": 5, "new": true})));
    events.push(json(12, serde_json::json!({"v": 6})));
    let errors = run_sink(dir.path(), "row_group_rows = 4", vec![events]).await;
    assert_eq!(errors, 2);

    let (groups, _, batch) = read(&file_of(dir.path(), "race_position"));
    assert_eq!(groups, 3, "10 rows in groups of 4, 4 and 2");
    assert_eq!(batch.num_rows(), 10);
    assert_eq!(ints(&batch, "time_ns")[9], Some(1_009));

    let (groups, names, batch) = read(&file_of(dir.path(), "json"));
    assert_eq!(groups, 2);
    assert!(!names.iter().any(|n| n == "new"));
    assert_eq!(ints(&batch, "time_ns"), [0, 1, 2, 3, 11, 12].map(Some));
    assert_eq!(ints(&batch, "v"), [0, 1, 2, 3, 5, 6].map(Some));
}

#[tokio::test]
async fn kinds_filter_and_no_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Event> = (0..5)
        .flat_map(|i| [race_position(i), lap(i), mqtt(i)])
        .collect();
    let options = "kinds = [\"lap\"]\ncompression = \"none\"";
    let config: ParquetConfig = parse_config(&format!("path = \"out\"\n{options}"));
    assert!(config.accepts().contains(pitwall_api::RecordKind::Lap));
    assert!(!config
        .accepts()
        .contains(pitwall_api::RecordKind::RacePosition));
    assert_eq!(run_sink(dir.path(), options, vec![events.clone()]).await, 0);
    let written = files(dir.path());
    assert_eq!(written.len(), 1, "{written:?}");
    let (_, _, batch) = read(&written[0]);
    assert_eq!(batch.num_rows(), 5);
    assert!(strings(&batch, "kind")
        .iter()
        .all(|k| k.as_deref() == Some("lap")));

    // A second run (likely in the same second) never overwrites the first file.
    assert_eq!(run_sink(dir.path(), options, vec![events]).await, 0);
    let written = files(dir.path());
    assert_eq!(written.len(), 2, "{written:?}");
    for path in &written {
        assert_eq!(read(path).2.num_rows(), 5);
    }
}

#[test]
fn options_are_checked() {
    let config: ParquetConfig = parse_config("path = \"x\"\nkinds = [\"lap\", \"laps\"]");
    assert_eq!(config.check()[0].key, "kinds[1]");
    let config: ParquetConfig = parse_config("path = \"x\"\nrow_group_rows = 0");
    assert_eq!(config.check()[0].key, "row_group_rows");
    let value: toml::Value = toml::from_str("path = \"x\"\ncompression = \"lz4\"").unwrap();
    assert!(value.try_into::<ParquetConfig>().is_err());
}
