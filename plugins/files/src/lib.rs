//! File components: source `file` (NDJSON replay), sinks `file` (NDJSON, rotating) and
//! `console` (JSON lines to stdout), sink `parquet` (columnar recordings, one file per record
//! kind, typed columns for car telemetry), and the `.pb.gz` car-telemetry recordings of the
//! Assetto Corsa bridge: sink `proto_record` and source `proto_replay` (codec in [`pbgz`]).
//!
//! The three NDJSON components speak one format (the `parquet` sink starts from it too): one [`Event`](pitwall_api::Event) per line in its serde form,
//! `{"time_ns":..,"kind":..,<fields of the record>}`. A recording made by the `file` sink
//! replays through the `file` source as the same events.

use pitwall_api::component::OptionProblem;
use pitwall_api::{ComponentSpec, RecordKind};

/// Runs `f` on the recorder in `slot` on tokio's blocking pool (file writes must not stall
/// the runtime's threads) and puts it back; a missing recorder (the first write, or one lost
/// to a panic on the pool) is made by `make`. One hop per batch, not per record.
pub(crate) async fn on_blocking_pool<R, T, F>(
    slot: &mut Option<R>,
    make: impl FnOnce() -> R,
    f: F,
) -> Result<T, pitwall_api::ComponentError>
where
    R: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&mut R) -> T + Send + 'static,
{
    let mut recorder = slot.take().unwrap_or_else(make);
    let (recorder, result) = tokio::task::spawn_blocking(move || {
        let result = f(&mut recorder);
        (recorder, result)
    })
    .await?;
    *slot = Some(recorder);
    Ok(result)
}

pub mod car_columns;
pub mod console;
pub mod file_sink;
pub mod file_source;
pub mod frame_decoder;
pub mod parquet;
pub mod parquet_file;
pub mod pbgz;
pub mod proto_record;
pub mod proto_replay;

/// Every component type of this family.
pub fn components() -> Vec<ComponentSpec> {
    vec![
        console::spec(),
        file_sink::spec(),
        file_source::spec(),
        parquet::spec(),
        proto_record::spec(),
        proto_replay::spec(),
    ]
}

/// Parse a list of kind names from an option, reporting the first unknown name under `key`.
fn parse_kind_names(key: &str, names: &[String]) -> Result<Vec<RecordKind>, OptionProblem> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            RecordKind::from_name(name).ok_or_else(|| {
                let valid: Vec<&str> = RecordKind::ALL.iter().map(|k| k.name()).collect();
                OptionProblem::new(
                    format!("{key}[{i}]"),
                    format!(
                        "unknown record kind `{name}`; valid kinds are: {}",
                        valid.join(", ")
                    ),
                )
            })
        })
        .collect()
}

/// Log the first few occurrences of a recurring problem, then every 1000th.
fn should_log(count: u64) -> bool {
    count <= 5 || count % 1000 == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_component_type_is_listed_once() {
        let specs = super::components();
        let names: Vec<(&str, pitwall_api::Role)> =
            specs.iter().map(|s| (s.type_name, s.role)).collect();
        assert_eq!(
            names,
            vec![
                ("console", pitwall_api::Role::Sink),
                ("file", pitwall_api::Role::Sink),
                ("file", pitwall_api::Role::Source),
                ("parquet", pitwall_api::Role::Sink),
                ("proto_record", pitwall_api::Role::Sink),
                ("proto_replay", pitwall_api::Role::Source),
            ]
        );
    }

    #[test]
    fn kind_names() {
        assert_eq!(
            super::parse_kind_names("k", &["lap".into()]).unwrap(),
            vec![pitwall_api::RecordKind::Lap]
        );
        let problem = super::parse_kind_names("k", &["lap".into(), "x".into()]).unwrap_err();
        assert_eq!(problem.key, "k[1]");
        assert!(problem.message.contains("`x`") && problem.message.contains("session_end"));
    }

    #[test]
    fn schemas_and_options_parse() {
        let mut generator = schemars::SchemaGenerator::default();
        for spec in super::components() {
            let schema = (spec.schema)(&mut generator);
            assert!(!schema.as_value().is_null(), "{}", spec.type_name);
        }
        let specs = super::components();
        let console = (specs[0].parse)(toml::from_str("format = \"pretty\"").unwrap()).unwrap();
        assert!(console.check().is_empty());
        let sink = (specs[1].parse)(
            toml::from_str("path = \"r-{n}.ndjson\"\nrotate_max_bytes = 5").unwrap(),
        )
        .unwrap();
        assert!(sink.check().is_empty());
        let source =
            (specs[2].parse)(toml::from_str("path = \"r.ndjson\"\nloop = true").unwrap()).unwrap();
        assert!(source.check().is_empty());
        assert!((specs[2].parse)(toml::from_str("path = \"r\"\nlooping = true").unwrap()).is_err());
    }
}
