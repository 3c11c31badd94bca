//! Per-component counters, named after Vector's (`component_received_events_total`, ...).
//!
//! Counters live as long as the component id does: a component rebuilt by a reload keeps
//! counting where its predecessor stopped, which is what a dashboard graphing them expects.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct ComponentMetrics {
    received: AtomicU64,
    sent: AtomicU64,
    discarded: AtomicU64,
    lost: AtomicU64,
    errors: AtomicU64,
    restarts: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetricsSnapshot {
    pub received: u64,
    pub sent: u64,
    pub discarded: u64,
    pub lost: u64,
    pub errors: u64,
    pub restarts: u64,
}

impl ComponentMetrics {
    pub fn add_received(&self, events: usize) {
        self.received.fetch_add(events as u64, Ordering::Relaxed);
    }

    pub fn add_sent(&self, events: usize) {
        self.sent.fetch_add(events as u64, Ordering::Relaxed);
    }

    /// Events lost: dropped by a full queue (`when_full = "drop_*"`) or thrown away as
    /// invalid. Records of kinds a component does not use are not "discarded".
    pub fn add_discarded(&self, events: usize) {
        self.discarded.fetch_add(events as u64, Ordering::Relaxed);
    }

    /// Events a sink had accepted and then could not keep: a failed write lost them (a full
    /// disk under a Parquet file). Also counted as discarded. Unlike a drop by design
    /// (`when_full`, invalid input), this makes `pitwall-flow run` exit with code 3.
    pub fn add_lost(&self, events: u64) {
        self.lost.fetch_add(events, Ordering::Relaxed);
        self.discarded.fetch_add(events, Ordering::Relaxed);
    }

    /// A failure: a malformed input skipped, a peer that misbehaved, a component that errored.
    pub fn add_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            received: self.received.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
        }
    }
}
