//! Supervision: a component that fails or panics is restarted with backoff while the rest of
//! the graph keeps running; shutdown drains what is queued.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pitwall_api::http::HttpServers;
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io, Kinds,
    Record, RecordKind, Role,
};
use pitwall_flow::config::load_text;
use pitwall_flow::registry::Registry;
use pitwall_flow::runtime::{Stopped, Topology};
use serde::Deserialize;

/// Counters by name, shared between a test and its components.
static COUNTS: std::sync::Mutex<Vec<(String, Arc<AtomicU64>)>> = std::sync::Mutex::new(Vec::new());

fn counter(name: &str) -> Arc<AtomicU64> {
    let mut counts = COUNTS.lock().unwrap();
    if let Some((_, c)) = counts.iter().find(|(n, _)| n == name) {
        return c.clone();
    }
    let c = Arc::new(AtomicU64::new(0));
    counts.push((name.to_string(), c.clone()));
    c
}

/// Emits `count` ticks, one batch every `every_ms`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct TicksConfig {
    count: u64,
    every_ms: u64,
}

struct Ticks {
    next: u64,
    count: u64,
    every: Duration,
}

impl ComponentConfig for TicksConfig {
    fn emits(&self) -> Kinds {
        Kinds::of(&[RecordKind::Tick])
    }
    fn build(&self, _: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        Ok(Box::new(Ticks {
            next: 0,
            count: self.count,
            every: Duration::from_millis(self.every_ms),
        }))
    }
}

#[async_trait]
impl Component for Ticks {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        while self.next < self.count {
            tokio::select! {
                _ = io.shutdown.triggered() => return Ok(()),
                _ = tokio::time::sleep(self.every) => {}
            }
            io.output
                .send(vec![Event::new(self.next as i64, Record::Tick)])
                .await;
            self.next += 1;
        }
        Ok(())
    }
}

/// Counts events into the counter `name`; fails (or panics) on the batches listed.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct CountConfig {
    name: String,
    #[serde(default)]
    fail_on_batch: Option<u64>,
    #[serde(default)]
    panic_on_batch: Option<u64>,
}

struct Count {
    counted: Arc<AtomicU64>,
    batches: Arc<AtomicU64>,
    fail_on: Option<u64>,
    panic_on: Option<u64>,
}

impl ComponentConfig for CountConfig {
    fn accepts(&self) -> Kinds {
        Kinds::any()
    }
    fn build(&self, _: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        Ok(Box::new(Count {
            counted: counter(&self.name),
            batches: counter(&format!("{}.batches", self.name)),
            fail_on: self.fail_on_batch,
            panic_on: self.panic_on_batch,
        }))
    }
}

#[async_trait]
impl Component for Count {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let input = io.input.as_mut().unwrap();
        while let Some(batch) = input.recv().await {
            let n = self.batches.fetch_add(1, Ordering::SeqCst) + 1;
            if self.fail_on == Some(n) {
                return Err("the disk is on fire (on purpose)".into());
            }
            if self.panic_on == Some(n) {
                panic!("a bug (on purpose)");
            }
            self.counted.fetch_add(batch.len() as u64, Ordering::SeqCst);
        }
        Ok(())
    }
}

fn registry() -> Registry {
    Registry::new(vec![
        ComponentSpec::new::<TicksConfig>("ticks", Role::Source, "test source"),
        ComponentSpec::new::<CountConfig>("count", Role::Sink, "test sink"),
    ])
}

async fn start(text: &str) -> Topology {
    let pipeline = load_text(
        Path::new("test.toml"),
        text.to_string(),
        &registry(),
        &|_| None,
    )
    .unwrap_or_else(|d| panic!("{}", pitwall_flow::diagnostics::render_all(&d, false)));
    Topology::start(pipeline, HttpServers::default())
        .await
        .unwrap()
}

async fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_failing_sink_is_restarted_and_its_neighbours_never_notice() {
    let topology = start(
        r#"
[sources.clock]
type = "ticks"
count = 40
every_ms = 5
[sinks.flaky]
type = "count"
inputs = ["clock"]
name = "fail.flaky"
fail_on_batch = 3
[sinks.steady]
type = "count"
inputs = ["clock"]
name = "fail.steady"
"#,
    )
    .await;
    let (flaky, steady) = (counter("fail.flaky"), counter("fail.steady"));
    wait_for("the steady sink sees every tick", || {
        steady.load(Ordering::SeqCst) == 40
    })
    .await;
    // The flaky sink lost exactly the batch it failed on and counted everything after.
    wait_for("the flaky sink catches up", || {
        flaky.load(Ordering::SeqCst) == 39
    })
    .await;
    let health = topology.admin().health();
    let flaky_health = health["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "flaky")
        .unwrap()
        .clone();
    assert_eq!(flaky_health["errors"], 1);
    assert_eq!(flaky_health["restarts"], 1);
    let metrics = topology.admin().prometheus();
    assert!(metrics.contains(
        "component_restarts_total{component_id=\"flaky\",component_kind=\"sink\",component_type=\"count\"} 1"
    ));
    assert_eq!(topology.shutdown().await, Stopped::Clean);
}

#[tokio::test]
async fn a_panicking_sink_is_rebuilt() {
    let topology = start(
        r#"
[sources.clock]
type = "ticks"
count = 30
every_ms = 5
[sinks.buggy]
type = "count"
inputs = ["clock"]
name = "panic.buggy"
panic_on_batch = 2
"#,
    )
    .await;
    let buggy = counter("panic.buggy");
    wait_for("the rebuilt sink counts the rest", || {
        buggy.load(Ordering::SeqCst) == 29
    })
    .await;
    assert_eq!(topology.shutdown().await, Stopped::Clean);
}

#[tokio::test]
async fn shutdown_drains_queued_events_into_sinks() {
    let topology = start(
        r#"
[sources.clock]
type = "ticks"
count = 1000000
every_ms = 1
[sinks.all]
type = "count"
inputs = ["clock"]
name = "drain.all"
"#,
    )
    .await;
    let all = counter("drain.all");
    wait_for("events flow", || all.load(Ordering::SeqCst) > 20).await;
    let admin = topology.admin().clone();
    assert_eq!(topology.shutdown().await, Stopped::Clean);
    // Every event the source sent reached the sink: nothing was left in the queue.
    let health = admin.health();
    let sent = health["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "clock")
        .unwrap()["sent_events"]
        .as_u64()
        .unwrap();
    assert!(sent > 20);
    assert_eq!(all.load(Ordering::SeqCst), sent);
}
