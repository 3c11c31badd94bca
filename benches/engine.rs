//! Engine benchmarks: events per second through a chain of components, and reload time.
//!
//! `cargo bench --bench engine`. The chain runs on a single-threaded tokio runtime, so the
//! figure is what one core does. Components are the real ones (`filter`, `decimate`) wired by
//! the real loader and runtime; only the source and sink are bench-local, to produce and
//! count events without I/O.

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pitwall_api::http::HttpServers;
use pitwall_api::record::RacePosition;
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io, Kinds,
    Record, RecordKind, Role,
};
use pitwall_flow::config::load_text;
use pitwall_flow::registry::Registry;
use pitwall_flow::runtime::Topology;
use serde::Deserialize;

const EVENTS: u64 = 4_000_000;
const BATCH: usize = 1024;

static COUNTED: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct GenerateConfig {
    count: u64,
}

struct Generate(u64);

impl ComponentConfig for GenerateConfig {
    fn emits(&self) -> Kinds {
        Kinds::of(&[RecordKind::RacePosition])
    }
    fn build(&self, _: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        Ok(Box::new(Generate(self.count)))
    }
}

#[async_trait]
impl Component for Generate {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let session: Arc<str> = "1".into();
        let mut sent = 0u64;
        while sent < self.0 {
            let n = (self.0 - sent).min(BATCH as u64);
            let batch = (0..n)
                .map(|i| {
                    Event::new(
                        (sent + i) as i64,
                        Record::RacePosition(RacePosition {
                            session_key: session.clone(),
                            car: ((sent + i) % 20) as u32,
                            position: 1,
                        }),
                    )
                })
                .collect();
            io.output.send(batch).await;
            sent += n;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct CountConfig {}

struct Count;

impl ComponentConfig for CountConfig {
    fn accepts(&self) -> Kinds {
        Kinds::any()
    }
    fn build(&self, _: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        Ok(Box::new(Count))
    }
}

#[async_trait]
impl Component for Count {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let input = io.input.as_mut().expect("a sink has an input");
        while let Some(batch) = input.recv().await {
            COUNTED.fetch_add(black_box(batch.len()) as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

fn registry() -> Registry {
    let mut specs = pitwall_motion::components();
    specs.push(ComponentSpec::new::<GenerateConfig>(
        "generate",
        Role::Source,
        "bench source",
    ));
    specs.push(ComponentSpec::new::<CountConfig>(
        "count",
        Role::Sink,
        "bench sink",
    ));
    Registry::new(specs)
}

/// Run `pipeline` to completion on one thread; returns the wall time.
fn run_chain(pipeline: &str, expected: u64) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let registry = registry();
        let pipeline = load_text(
            Path::new("bench.toml"),
            pipeline.to_string(),
            &registry,
            &|_| None,
        )
        .unwrap_or_else(|d| panic!("{}", pitwall_flow::diagnostics::render_all(&d, false)));
        COUNTED.store(0, Ordering::Relaxed);
        let started = Instant::now();
        let topology = Topology::start(pipeline, HttpServers::default())
            .await
            .unwrap();
        while COUNTED.load(Ordering::Relaxed) < expected || !topology.sources_finished() {
            tokio::task::yield_now().await;
        }
        let elapsed = started.elapsed();
        topology.shutdown().await;
        elapsed
    })
}

fn chain(c: &mut Criterion) {
    let mut group = c.benchmark_group("chain");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));

    // Both transforms let every event through, so they forward each batch as is.
    let pass_through = format!(
        r#"
[sources.gen]
type = "generate"
count = {EVENTS}
[transforms.a]
type = "filter"
inputs = ["gen"]
include_kinds = ["race_position"]
[transforms.b]
type = "filter"
inputs = ["a"]
exclude_kinds = ["frame"]
[sinks.out]
type = "count"
inputs = ["b"]
"#
    );
    group.bench_function("source_2_transforms_sink/pass_through", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| run_chain(&pass_through, EVENTS))
                .sum()
        })
    });

    // Transforms that look at and copy every event: a car filter dropping one car in
    // twenty, then `decimate` keeping every event per car.
    let per_event = format!(
        r#"
[sources.gen]
type = "generate"
count = {EVENTS}
[transforms.a]
type = "filter"
inputs = ["gen"]
cars = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]
[transforms.b]
type = "decimate"
inputs = ["a"]
every_n = 1
pass_kinds = []
[sinks.out]
type = "count"
inputs = ["b"]
"#
    );
    group.bench_function("source_2_transforms_sink/per_event", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| run_chain(&per_event, EVENTS / 20 * 19))
                .sum()
        })
    });
    group.finish();
}

fn reload(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let registry = registry();
    let base = "[sources.gen]\ntype = \"generate\"\ncount = 1\n[sinks.out]\ntype = \"count\"\ninputs = [\"gen\"]\n";
    let with_filter = format!("{base}[transforms.f]\ntype = \"filter\"\ninputs = [\"gen\"]\n[sinks.out2]\ntype = \"count\"\ninputs = [\"f\"]\n");
    let load = |text: &str| {
        load_text(
            Path::new("bench.toml"),
            text.to_string(),
            &registry,
            &|_| None,
        )
        .ok()
        .unwrap()
    };
    let mut topology = runtime
        .block_on(Topology::start(load(base), HttpServers::default()))
        .unwrap();
    let mut flip = false;
    // From a parsed file to the new graph running: add two components, or remove them.
    c.bench_function("reload/add_or_remove_two_components", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                flip = !flip;
                let text = if flip { with_filter.as_str() } else { base };
                let started = Instant::now();
                let pipeline = load(text);
                runtime.block_on(topology.reload(pipeline)).unwrap();
                total += started.elapsed();
            }
            total
        })
    });
    runtime.block_on(async move {
        topology.shutdown().await;
    });
}

criterion_group!(benches, chain, reload);
criterion_main!(benches);
