//! Edges: bounded queues of event batches, with a `when_full` policy per edge.
//!
//! Every component that has inputs owns one [`Queue`]. Each upstream edge pushes into it
//! with its own [`WhenFull`] policy, so a recording can `block` its producer while a live
//! display on the same producer drops old frames. The queue is a mutex-guarded `VecDeque`
//! plus two [`Notify`]s rather than a tokio mpsc channel because mpsc cannot drop its
//! *oldest* item, which is what live displays want.
//!
//! The runtime, not the component, owns queues and the fan-out lists of outputs, so hot
//! reload can rewire edges while components keep running.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::metrics::ComponentMetrics;
use crate::record::Event;

/// A batch of events. Shared so that fan-out to several consumers is a pointer copy.
pub type Batch = Arc<Vec<Event>>;

/// What an edge does when its consumer's queue is full.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: nothing is lost, the producer slows down (recordings).
    Block,
    /// Make room by discarding the oldest queued batch (live displays: newest wins).
    DropOldest,
    /// Discard the batch being pushed (keep what is queued).
    DropNewest,
}

impl WhenFull {
    pub fn name(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::DropOldest => "drop_oldest",
            Self::DropNewest => "drop_newest",
        }
    }
}

/// The input queue of one component instance.
pub struct Queue {
    state: Mutex<QueueState>,
    capacity: usize,
    /// Signalled when a batch is pushed or the queue is closed.
    readable: Notify,
    /// Signalled when a batch is popped or the queue is closed.
    writable: Notify,
    closed: AtomicBool,
    metrics: Arc<ComponentMetrics>,
}

struct QueueState {
    batches: VecDeque<Batch>,
}

impl Queue {
    /// `capacity` is in batches; it is at least 1.
    pub fn new(capacity: usize, metrics: Arc<ComponentMetrics>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(QueueState {
                batches: VecDeque::with_capacity(capacity.clamp(1, 1024)),
            }),
            capacity: capacity.max(1),
            readable: Notify::new(),
            writable: Notify::new(),
            closed: AtomicBool::new(false),
            metrics,
        })
    }

    /// Push a batch under `policy`. Returns once the batch is queued or discarded; with
    /// `Block` that may wait. Pushing into a closed queue discards (its consumer is gone).
    pub async fn push(&self, batch: Batch, policy: WhenFull) {
        loop {
            // Register interest before checking, so a pop between the check and the
            // await cannot be missed.
            let writable = self.writable.notified();
            {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if self.closed.load(Ordering::Acquire) {
                    self.metrics.add_discarded(batch.len());
                    return;
                }
                if state.batches.len() < self.capacity {
                    state.batches.push_back(batch);
                    drop(state);
                    self.readable.notify_one();
                    return;
                }
                match policy {
                    WhenFull::Block => {}
                    WhenFull::DropOldest => {
                        if let Some(old) = state.batches.pop_front() {
                            self.metrics.add_discarded(old.len());
                        }
                        state.batches.push_back(batch);
                        drop(state);
                        self.readable.notify_one();
                        return;
                    }
                    WhenFull::DropNewest => {
                        self.metrics.add_discarded(batch.len());
                        return;
                    }
                }
            }
            writable.await;
        }
    }

    /// The next batch, or `None` once the queue is closed and empty.
    pub async fn pop(&self) -> Option<Batch> {
        loop {
            let readable = self.readable.notified();
            {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(batch) = state.batches.pop_front() {
                    drop(state);
                    self.writable.notify_one();
                    self.metrics.add_received(batch.len());
                    return Some(batch);
                }
                if self.closed.load(Ordering::Acquire) {
                    return None;
                }
            }
            readable.await;
        }
    }

    /// No more pushes will be accepted; the consumer drains what is queued and then sees
    /// the end of its input.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.readable.notify_waiters();
        self.readable.notify_one();
        self.writable.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .batches
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A component's view of its input: batches from all of its upstream edges, merged.
pub struct Input {
    queue: Arc<Queue>,
}

impl Input {
    pub fn new(queue: Arc<Queue>) -> Self {
        Self { queue }
    }

    /// The next batch, or `None` when every upstream has finished and the queue is drained
    /// (shutdown, or this component is being replaced): time to flush and return.
    pub async fn recv(&mut self) -> Option<Batch> {
        self.queue.pop().await
    }
}

/// One downstream edge: the consumer's queue and this edge's policy.
#[derive(Clone)]
pub struct Target {
    pub consumer: Arc<str>,
    pub queue: Arc<Queue>,
    pub when_full: WhenFull,
}

/// A component's output: fans each batch out to every current downstream edge.
///
/// The target list is swapped by the runtime on reload, while the component keeps running.
#[derive(Clone)]
pub struct Output {
    targets: Arc<RwLock<Arc<Vec<Target>>>>,
    metrics: Arc<ComponentMetrics>,
}

impl Output {
    pub fn new(metrics: Arc<ComponentMetrics>) -> Self {
        Self {
            targets: Arc::new(RwLock::new(Arc::new(Vec::new()))),
            metrics,
        }
    }

    /// Send a batch to every consumer. Empty batches are not sent.
    pub async fn send(&self, batch: Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        self.send_shared(Arc::new(batch)).await;
    }

    /// Send an already shared batch (a transform forwarding its input unchanged).
    pub async fn send_shared(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let targets = self
            .targets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.metrics.add_sent(batch.len());
        for target in targets.iter() {
            target.queue.push(batch.clone(), target.when_full).await;
        }
    }

    /// Replace the downstream edges (runtime only).
    pub fn set_targets(&self, targets: Vec<Target>) {
        *self.targets.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(targets);
    }

    pub fn targets(&self) -> Arc<Vec<Target>> {
        self.targets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn metrics(&self) -> &Arc<ComponentMetrics> {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn batch(n: i64) -> Batch {
        Arc::new(vec![Event::new(n, Record::Tick)])
    }

    #[tokio::test]
    async fn drop_oldest_keeps_the_newest() {
        let metrics = Arc::new(ComponentMetrics::default());
        let queue = Queue::new(2, metrics.clone());
        for n in 0..5 {
            queue.push(batch(n), WhenFull::DropOldest).await;
        }
        queue.close();
        let mut seen = Vec::new();
        while let Some(b) = queue.pop().await {
            seen.push(b[0].time_ns);
        }
        assert_eq!(seen, vec![3, 4]);
        assert_eq!(metrics.snapshot().discarded, 3);
    }

    #[tokio::test]
    async fn drop_newest_keeps_the_oldest() {
        let metrics = Arc::new(ComponentMetrics::default());
        let queue = Queue::new(2, metrics.clone());
        for n in 0..5 {
            queue.push(batch(n), WhenFull::DropNewest).await;
        }
        queue.close();
        let mut seen = Vec::new();
        while let Some(b) = queue.pop().await {
            seen.push(b[0].time_ns);
        }
        assert_eq!(seen, vec![0, 1]);
    }

    #[tokio::test]
    async fn block_waits_for_room_and_loses_nothing() {
        let metrics = Arc::new(ComponentMetrics::default());
        let queue = Queue::new(1, metrics.clone());
        let producer = {
            let queue = queue.clone();
            tokio::spawn(async move {
                for n in 0..100 {
                    queue.push(batch(n), WhenFull::Block).await;
                }
                queue.close();
            })
        };
        let mut seen = Vec::new();
        while let Some(b) = queue.pop().await {
            seen.push(b[0].time_ns);
        }
        producer.await.unwrap();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        assert_eq!(metrics.snapshot().discarded, 0);
    }
}
