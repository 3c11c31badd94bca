//! The admin endpoint: `/health` (JSON) and `/metrics` (Prometheus text), served on a
//! shared HTTP server when the pipeline has an `[admin]` table.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use pitwall_api::ComponentMetrics;
use serde_json::json;

/// Lifecycle of a component, as `/health` reports it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Running = 0,
    Restarting = 1,
    Finished = 2,
    Stopped = 3,
}

impl Status {
    pub fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Restarting,
            2 => Self::Finished,
            3 => Self::Stopped,
            _ => Self::Running,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Finished => "finished",
            Self::Stopped => "stopped",
        }
    }
}

/// One component as the admin endpoint sees it.
#[derive(Clone)]
pub struct ComponentInfo {
    pub id: String,
    pub kind: &'static str,
    pub type_name: String,
    pub metrics: Arc<ComponentMetrics>,
    pub status: Arc<AtomicU8>,
}

/// The result of the last reload.
#[derive(Clone, Debug)]
pub struct ReloadOutcome {
    pub ok: bool,
    pub at_unix_s: u64,
    pub message: String,
}

/// Shared between the runtime (which updates it) and the HTTP handlers (which read it).
pub struct AdminState {
    started: Instant,
    pipeline: String,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    last_reload: Mutex<Option<ReloadOutcome>>,
    components: RwLock<Vec<ComponentInfo>>,
}

impl AdminState {
    pub fn new(pipeline: String) -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            pipeline,
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            last_reload: Mutex::new(None),
            components: RwLock::new(Vec::new()),
        })
    }

    pub fn set_components(&self, components: Vec<ComponentInfo>) {
        *self.components.write().unwrap_or_else(|e| e.into_inner()) = components;
    }

    pub fn record_reload(&self, ok: bool, message: String) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
        let at_unix_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(ReloadOutcome {
            ok,
            at_unix_s,
            // A diagnostic may quote a URL of the file, credentials and all.
            message: pitwall_api::redact::urls_in(&message),
        });
    }

    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
        )
    }

    /// The `/health` document.
    pub fn health(&self) -> serde_json::Value {
        let components: Vec<serde_json::Value> = self
            .components
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| {
                let m = c.metrics.snapshot();
                json!({
                    "id": c.id,
                    "kind": c.kind,
                    "type": c.type_name,
                    "status": Status::from_u8(c.status.load(Ordering::Relaxed)).name(),
                    "received_events": m.received,
                    "sent_events": m.sent,
                    "discarded_events": m.discarded,
                    "lost_events": m.lost,
                    "errors": m.errors,
                    "restarts": m.restarts,
                })
            })
            .collect();
        let last = self
            .last_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (ok, failed) = self.reload_counts();
        // Degraded while any component is waiting to be restarted after a failure.
        let degraded = components
            .iter()
            .any(|c| c["status"] == Status::Restarting.name());
        json!({
            "status": if degraded { "degraded" } else { "ok" },
            "pipeline": self.pipeline,
            "uptime_s": self.started.elapsed().as_secs(),
            "reloads": {
                "total": ok + failed,
                "succeeded": ok,
                "failed": failed,
                "last": last.map(|r| json!({ "ok": r.ok, "at_unix_s": r.at_unix_s, "message": r.message })),
            },
            "components": components,
        })
    }

    /// The `/metrics` text, in the Prometheus exposition format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let (ok, failed) = self.reload_counts();
        let _ = writeln!(
            out,
            "# HELP pitwall_reloads_total Pipeline reloads by result."
        );
        let _ = writeln!(out, "# TYPE pitwall_reloads_total counter");
        let _ = writeln!(out, "pitwall_reloads_total{{result=\"ok\"}} {ok}");
        let _ = writeln!(out, "pitwall_reloads_total{{result=\"error\"}} {failed}");
        let last_ok = self
            .last_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(1, |r| u8::from(r.ok));
        let _ = writeln!(out, "# HELP pitwall_last_reload_success Whether the last reload applied (1) or was rejected (0).");
        let _ = writeln!(out, "# TYPE pitwall_last_reload_success gauge");
        let _ = writeln!(out, "pitwall_last_reload_success {last_ok}");
        let _ = writeln!(out, "# HELP pitwall_uptime_seconds Seconds since start.");
        let _ = writeln!(out, "# TYPE pitwall_uptime_seconds gauge");
        let _ = writeln!(
            out,
            "pitwall_uptime_seconds {}",
            self.started.elapsed().as_secs()
        );
        let components = self.components.read().unwrap_or_else(|e| e.into_inner());
        type Pick = fn(&pitwall_api::metrics::MetricsSnapshot) -> u64;
        let series: [(&str, &str, Pick); 6] = [
            (
                "component_received_events_total",
                "Events received from upstream.",
                |m| m.received,
            ),
            (
                "component_sent_events_total",
                "Events sent downstream.",
                |m| m.sent,
            ),
            (
                "component_discarded_events_total",
                "Events dropped by full queues, as invalid, or lost.",
                |m| m.discarded,
            ),
            (
                "component_lost_events_total",
                "Events a sink accepted and then lost to a failed write.",
                |m| m.lost,
            ),
            (
                "component_errors_total",
                "Errors: bad input skipped, failures.",
                |m| m.errors,
            ),
            (
                "component_restarts_total",
                "Restarts after a failure.",
                |m| m.restarts,
            ),
        ];
        for (name, help, pick) in series {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for c in components.iter() {
                let value = pick(&c.metrics.snapshot());
                let _ = writeln!(
                    out,
                    "{name}{{component_id=\"{}\",component_kind=\"{}\",component_type=\"{}\"}} {value}",
                    c.id, c.kind, c.type_name
                );
            }
        }
        out
    }
}

/// Routes of the admin endpoint.
pub fn router(state: Arc<AdminState>) -> Router {
    let health = state.clone();
    Router::new()
        .route(
            "/health",
            get(move || {
                let state = health.clone();
                async move { axum::Json(state.health()) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let state = state.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        state.prometheus(),
                    )
                        .into_response()
                }
            }),
        )
}
