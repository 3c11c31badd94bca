//! How many WebSocket clients a sink has, against its `max_clients`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The connected clients of one sink and their limit.
#[derive(Debug)]
pub(crate) struct ClientLimit {
    connected: AtomicUsize,
    max: usize,
}

impl ClientLimit {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            connected: AtomicUsize::new(0),
            max: max.max(1),
        })
    }

    /// A place for one more client, or `None` when the sink is full.
    pub(crate) fn take(self: &Arc<Self>) -> Option<ClientSlot> {
        let before = self.connected.fetch_add(1, Ordering::AcqRel);
        if before >= self.max {
            self.connected.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ClientSlot(self.clone()))
    }

    pub(crate) fn connected(&self) -> usize {
        self.connected.load(Ordering::Acquire)
    }
}

/// A connected client's place, given back when dropped.
pub(crate) struct ClientSlot(Arc<ClientLimit>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_and_given_back() {
        let limit = ClientLimit::new(2);
        let a = limit.take().unwrap();
        let _b = limit.take().unwrap();
        assert!(limit.take().is_none(), "full");
        assert_eq!(limit.connected(), 2);
        drop(a);
        assert!(limit.take().is_some(), "a place was given back");
    }
}
