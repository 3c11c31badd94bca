//! Helpers for testing one component without the engine: wire it to plain queues, feed it
//! events and collect what it emits.

use std::future::Future;
use std::sync::Arc;

use crate::channel::{Input, Output, Queue, Target, WhenFull};
use crate::component::{BuildContext, Component, ComponentConfig, Io};
use crate::http::HttpServers;
use crate::metrics::ComponentMetrics;
use crate::record::Event;
use crate::shutdown::Shutdown;

/// A component's `Io` plus the test's ends of its edges.
pub struct Wiring {
    pub io: Io,
    /// Push here to feed the component (None for sources).
    pub input: Option<Arc<Queue>>,
    /// What the component emitted.
    pub output: Arc<Queue>,
}

/// Wire a component with an input queue (if `with_input`) and a collecting output.
pub fn wire(id: &str, with_input: bool) -> Wiring {
    let metrics = Arc::new(ComponentMetrics::default());
    let input = with_input.then(|| Queue::new(1024, metrics.clone()));
    let output_queue = Queue::new(usize::MAX / 2, Arc::new(ComponentMetrics::default()));
    let output = Output::new(metrics.clone());
    output.set_targets(vec![Target {
        consumer: "test".into(),
        queue: output_queue.clone(),
        when_full: WhenFull::Block,
    }]);
    Wiring {
        io: Io {
            id: id.into(),
            input: input.clone().map(Input::new),
            output,
            shutdown: Shutdown::new(),
            metrics,
        },
        input,
        output: output_queue,
    }
}

/// A build context for tests: relative paths resolve against `base_dir`.
pub fn build_context(id: &str, base_dir: impl Into<std::path::PathBuf>) -> BuildContext {
    BuildContext {
        id: id.into(),
        base_dir: base_dir.into(),
        http: HttpServers::default(),
    }
}

/// Parse a config from TOML options text, as the engine would (panics on error: tests only).
pub fn parse_config<C: serde::de::DeserializeOwned>(options: &str) -> C {
    let value: toml::Value = toml::from_str(options).expect("options are valid TOML");
    serde_path_to_error::deserialize(value).expect("options match the config")
}

/// Drain everything queued in `queue` (after the producer finished).
pub fn drain(queue: &Queue) -> Vec<Event> {
    queue.close();
    let mut events = Vec::new();
    while let Some(batch) = futures_lite_pop(queue) {
        events.extend(batch.iter().cloned());
    }
    events
}

fn futures_lite_pop(queue: &Queue) -> Option<crate::channel::Batch> {
    // The queue is closed, so pop never waits: poll it once without a runtime.
    let waker = std::task::Waker::noop();
    let mut context = std::task::Context::from_waker(waker);
    let mut future = std::pin::pin!(queue.pop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(batch) => batch,
        std::task::Poll::Pending => None,
    }
}

/// Run a transform or sink over `events` (one batch), to the end of its input, and return
/// what it emitted.
pub async fn run_over(component: &mut dyn Component, events: Vec<Event>) -> Vec<Event> {
    let mut wiring = wire("under_test", true);
    let input = wiring.input.take().expect("wired with an input");
    input.push(Arc::new(events), WhenFull::Block).await;
    input.close();
    component
        .run(&mut wiring.io)
        .await
        .expect("component ran without error");
    drain(&wiring.output)
}

/// Build a component from options text and run it over `events`.
pub async fn run_config<C>(options: &str, events: Vec<Event>) -> Vec<Event>
where
    C: serde::de::DeserializeOwned + ComponentConfig,
{
    let config: C = parse_config(options);
    let mut component = config
        .build(&build_context("under_test", "."))
        .expect("component builds");
    run_over(component.as_mut(), events).await
}
