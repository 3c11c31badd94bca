//! Supervision of one component: run it, and when it fails, log, count and run it again
//! with backoff, so one broken connection or bad file never takes the graph down.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use pitwall_api::backoff::Backoff;
use pitwall_api::{BuildContext, Component, ComponentConfig, Io};
use tokio::time::Instant;

use super::admin::Status;

/// A run that lasted this long was healthy: the next failure starts the backoff afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

pub(super) async fn supervise(
    mut component: Box<dyn Component>,
    mut io: Io,
    config: Arc<dyn ComponentConfig>,
    ctx: BuildContext,
    status: Arc<AtomicU8>,
) {
    let id = io.id.clone();
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    loop {
        status.store(Status::Running as u8, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = AssertUnwindSafe(component.run(&mut io))
            .catch_unwind()
            .await;
        match outcome {
            Ok(Ok(())) => {
                tracing::debug!(component = %id, "finished");
                status.store(Status::Finished as u8, Ordering::Relaxed);
                return;
            }
            Ok(Err(error)) => {
                io.metrics.add_error();
                tracing::error!(component = %id, %error, "component failed; it will be restarted");
            }
            Err(panic) => {
                io.metrics.add_error();
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown panic");
                tracing::error!(component = %id, message, "component panicked; rebuilding it");
                // Its state may be half-updated: start from a fresh instance.
                match config.build(&ctx) {
                    Ok(fresh) => component = fresh,
                    Err(error) => {
                        tracing::error!(component = %id, %error, "rebuild failed; retrying the old instance")
                    }
                }
            }
        }
        if io.shutdown.is_triggered() {
            status.store(Status::Stopped as u8, Ordering::Relaxed);
            return;
        }
        if started.elapsed() > HEALTHY_RUN {
            backoff.reset();
        }
        status.store(Status::Restarting as u8, Ordering::Relaxed);
        let delay = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = io.shutdown.triggered() => {
                status.store(Status::Stopped as u8, Ordering::Relaxed);
                return;
            }
        }
        io.metrics.add_restart();
        tracing::info!(component = %id, "restarting");
    }
}
