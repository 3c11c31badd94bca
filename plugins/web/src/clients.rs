//! What every WebSocket sink does with its clients: size their sockets, count them against
//! `max_clients`, send them text without letting one that stopped reading hold a task
//! forever, close cleanly.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{header, HeaderMap};
use pitwall_api::ComponentMetrics;

/// A client that takes longer than this to accept one message has stopped reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a clean close waits for the client's answer.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a client may send us in one message: our clients only listen, or press a button.
const MAX_INCOMING_MESSAGE: usize = 4 * 1024;
/// Bytes read from a client socket at a time. Tungstenite's default (128 KiB, allocated
/// when the socket opens) would cost 128 KiB per connected client for nothing: clients send
/// a few bytes, and a bigger message still arrives, over several reads.
const READ_BUFFER: usize = 4 * 1024;

/// Limits and buffer sizes for a sink's client socket. Writes are not buffered: every
/// message goes out at once (live frames, laps) and nothing is kept per idle client.
pub(crate) fn configure(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .max_message_size(MAX_INCOMING_MESSAGE)
        .max_frame_size(MAX_INCOMING_MESSAGE)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
}

/// What became of one send.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    Ok,
    /// The client went away: nothing to report.
    Gone,
    /// The client stopped reading: counted as an error of the sink.
    Stalled,
}

/// Send `text`, giving up on a client that does not take it within [`SEND_TIMEOUT`].
pub(crate) async fn send_text(
    socket: &mut WebSocket,
    text: Utf8Bytes,
    metrics: &ComponentMetrics,
) -> Sent {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text))).await {
        Ok(Ok(())) => Sent::Ok,
        Ok(Err(_)) => Sent::Gone,
        Err(_) => {
            metrics.add_error();
            tracing::debug!("dropping a WebSocket client that stopped reading");
            Sent::Stalled
        }
    }
}

/// Send a close frame and wait (briefly) for the client's answer, so the close is clean.
pub(crate) async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        if socket.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = socket.recv().await {}
    })
    .await;
}

/// Whether a WebSocket that can command the pipeline may be opened by this request: a
/// browser always sends `Origin`, and a page from another site (any page a phone on the
/// same Wi-Fi visits) must not press START. Same origin (`Origin`'s host and port are the
/// request's `Host`) is allowed, as is every origin in `allowed` (`"*"` allows any); a
/// client without `Origin` is not a browser page and is allowed.
pub(crate) fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .is_some_and(|host| host.eq_ignore_ascii_case(origin_host))
}

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
    fn only_the_same_origin_or_an_allowed_one_may_command() {
        let request = |origin: Option<&str>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, "192.168.1.20:8000".parse().unwrap());
            if let Some(origin) = origin {
                headers.insert(header::ORIGIN, origin.parse().unwrap());
            }
            headers
        };
        let none: &[String] = &[];
        assert!(origin_allowed(
            &request(Some("http://192.168.1.20:8000")),
            none
        ));
        assert!(origin_allowed(&request(None), none), "not a browser");
        assert!(!origin_allowed(
            &request(Some("https://evil.example")),
            none
        ));
        assert!(!origin_allowed(
            &request(Some("http://192.168.1.20:9000")),
            none
        ));
        assert!(!origin_allowed(&request(Some("null")), none));
        let allowed = ["http://pit.local:8000".to_string()];
        assert!(origin_allowed(
            &request(Some("http://pit.local:8000")),
            &allowed
        ));
        assert!(origin_allowed(
            &request(Some("https://evil.example")),
            &["*".to_string()]
        ));
    }

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
