//! The one fan-out of the web sinks: "send the newest to many clients, never let a slow one
//! hold the rest back".
//!
//! A sink publishes each message once, formatted into shared bytes ([`Utf8Bytes`], a
//! reference-counted buffer), together with the *snapshot* a client needs to catch up
//! after it (for the Cardputer the frame itself; for the race view the full state). Every
//! publication is numbered and kept on a [`broadcast`] ring of the last `backlog` ones; a
//! [`watch`] beside it holds the newest.
//!
//! A client ([`Subscriber`]) starts from the newest snapshot, then takes the ring's
//! messages in order, so a client whose task runs late (a busy machine, a thousand clients)
//! still gets every message, with no gap. A client that falls more than `backlog` messages
//! behind skips straight to the newest snapshot, so it never holds up the sink or the other
//! clients, and the sink never waits on a client. [`serve`] is the client loop every
//! WebSocket sink runs.

use std::sync::Arc;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pitwall_api::ComponentMetrics;
use tokio::sync::{broadcast, watch};

use crate::clients::{close, configure, send_text, ClientLimit, Sent};

/// What a client should do with one publication.
#[derive(Clone, Debug, Default)]
pub(crate) enum Latest {
    /// Nothing to show yet: wait.
    #[default]
    Nothing,
    /// A text, formatted once for every client.
    Text(Utf8Bytes),
    /// The sink is done with these clients: close the socket.
    Closed,
}

/// One numbered publication: the message, and the snapshot that stands for everything up
/// to and including it.
#[derive(Clone, Debug, Default)]
struct Published {
    seq: u64,
    message: Latest,
    snapshot: Latest,
}

/// One stream of messages to many clients.
pub(crate) struct Hub {
    current: watch::Sender<Published>,
    stream: broadcast::Sender<Published>,
    backlog: usize,
}

impl Hub {
    /// A hub that keeps the last `backlog` messages for clients that run late.
    pub(crate) fn new(backlog: usize) -> Self {
        Self {
            current: watch::channel(Published::default()).0,
            stream: broadcast::channel(backlog.max(1)).0,
            backlog: backlog.max(1),
        }
    }

    /// Publish `message` to every client after everything published before; a client that
    /// connects (or skips ahead) from now on starts from `snapshot`. True when the ring was
    /// full, so a message some client had not read yet was overwritten for it.
    pub(crate) fn publish(&self, message: Latest, snapshot: Latest) -> bool {
        let mut published = Published::default();
        self.current.send_modify(|current| {
            current.seq += 1;
            current.message = message;
            current.snapshot = snapshot;
            published = current.clone();
        });
        let overwrites = self.stream.len() >= self.backlog;
        // No client connected is not an error.
        let _ = self.stream.send(published);
        overwrites
    }

    /// Publish a message that is its own snapshot (a frame: the newest is all a client needs).
    pub(crate) fn publish_text(&self, text: Utf8Bytes) {
        self.publish(Latest::Text(text.clone()), Latest::Text(text));
    }

    /// Tell every client to close.
    pub(crate) fn close(&self) {
        self.publish(Latest::Closed, Latest::Closed);
    }

    /// Whether the newest publication tells clients to close.
    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.current.borrow().snapshot, Latest::Closed)
    }

    /// The newest snapshot (for a plain HTTP request of the state).
    pub(crate) fn snapshot(&self) -> Latest {
        self.current.borrow().snapshot.clone()
    }

    /// A new client's view of the hub.
    pub(crate) fn subscribe(&self) -> Subscriber {
        // Subscribe to the ring before reading the snapshot: whatever is published after it
        // is in the ring, and what is in both is recognised by its number.
        let stream = self.stream.subscribe();
        let current = self.current.subscribe();
        Subscriber {
            stream,
            current,
            sent: None,
        }
    }
}

/// One client's place in a [`Hub`]'s stream.
pub(crate) struct Subscriber {
    stream: broadcast::Receiver<Published>,
    current: watch::Receiver<Published>,
    /// The number of the last publication handed out; `None` before the first.
    sent: Option<u64>,
}

impl Subscriber {
    /// The next thing to send: first the newest snapshot, then each message in order, or
    /// the newest snapshot again after falling too far behind. `Closed` when the hub is
    /// gone.
    pub(crate) async fn next(&mut self) -> Latest {
        let Some(sent) = self.sent else {
            return self.catch_up();
        };
        loop {
            match self.stream.recv().await {
                Ok(next) if next.seq <= sent => continue,
                Ok(next) => {
                    self.sent = Some(next.seq);
                    return next.message;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.stream = self.stream.resubscribe();
                    return self.catch_up();
                }
                Err(broadcast::error::RecvError::Closed) => return Latest::Closed,
            }
        }
    }

    fn catch_up(&mut self) -> Latest {
        let now = self.current.borrow().clone();
        self.sent = Some(now.seq);
        now.snapshot
    }
}

/// Answer a WebSocket request of a client that only listens: 503 when `clients` is full,
/// else upgrade and [`serve`] it from `hub` (a hub that is closed closes it at once). The
/// client's task holds only its subscriber: the hub must not outlive its sink for a client.
pub(crate) fn listen(
    upgrade: WebSocketUpgrade,
    hub: &Hub,
    clients: &Arc<ClientLimit>,
    metrics: Arc<ComponentMetrics>,
) -> Response {
    let Some(slot) = clients.take() else {
        tracing::debug!("WebSocket client refused: max_clients reached");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many clients (max_clients)",
        )
            .into_response();
    };
    let closed = hub.is_closed();
    let subscriber = hub.subscribe();
    configure(upgrade).on_upgrade(move |mut socket| async move {
        if closed {
            close(&mut socket, 1001, "going away").await;
        } else {
            serve(socket, subscriber, metrics).await;
        }
        drop(slot);
    })
}

/// Send everything `subscriber` yields to `socket` until either side closes. The clients
/// of the hub's sinks only listen: what they send is ignored; pings are answered by the
/// protocol layer.
pub(crate) async fn serve(
    mut socket: WebSocket,
    mut subscriber: Subscriber,
    metrics: Arc<ComponentMetrics>,
) {
    loop {
        tokio::select! {
            next = subscriber.next() => match next {
                Latest::Nothing => {}
                Latest::Text(text) => {
                    if send_text(&mut socket, text, &metrics).await != Sent::Ok {
                        return;
                    }
                    metrics.add_sent(1);
                }
                Latest::Closed => {
                    close(&mut socket, 1000, "stream ended").await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(latest: Latest) -> String {
        match latest {
            Latest::Text(text) => text.as_str().to_string(),
            other => format!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_client_starts_from_the_snapshot_then_gets_every_message() {
        let hub = Hub::new(8);
        hub.publish(Latest::Text("m1".into()), Latest::Text("s1".into()));
        let mut client = hub.subscribe();
        hub.publish(Latest::Text("m2".into()), Latest::Text("s2".into()));
        hub.publish(Latest::Text("m3".into()), Latest::Text("s3".into()));
        // The snapshot is the newest (s3), so m2 and m3 are in it and not sent again.
        assert_eq!(text(client.next().await), "s3");
        hub.publish(Latest::Text("m4".into()), Latest::Text("s4".into()));
        assert_eq!(text(client.next().await), "m4");
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_skips_to_the_newest_snapshot() {
        let hub = Hub::new(2);
        let mut client = hub.subscribe();
        assert_eq!(text(client.next().await), "Nothing");
        for i in 0..10 {
            hub.publish(
                Latest::Text(format!("m{i}").into()),
                Latest::Text(format!("s{i}").into()),
            );
        }
        assert_eq!(text(client.next().await), "s9");
        hub.publish(Latest::Text("m10".into()), Latest::Text("s10".into()));
        assert_eq!(text(client.next().await), "m10");
    }

    #[tokio::test]
    async fn closing_reaches_every_client() {
        let hub = Hub::new(4);
        let mut a = hub.subscribe();
        let _ = a.next().await;
        hub.close();
        assert!(hub.is_closed());
        assert!(matches!(a.next().await, Latest::Closed));
        assert!(matches!(hub.subscribe().next().await, Latest::Closed));
    }
}
