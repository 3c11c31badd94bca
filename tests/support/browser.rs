//! A real headless Chromium driven over the DevTools protocol (a WebSocket of JSON
//! commands), so browser tests need no WebDriver and no extra crates.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Where Debian's `chromium` package puts the browser (override with `CHROMIUM`).
pub fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// One browser with one page.
pub struct Browser {
    child: tokio::process::Child,
    socket: Socket,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Start Chromium headless on `url`, phone-sized (390 x 844), and attach to its page.
    pub async fn open(url: &str) -> Self {
        Self::open_sized(url, 390, 844).await
    }

    /// Start Chromium headless on `url` with a window of `width` x `height` CSS pixels.
    pub async fn open_sized(url: &str, width: u32, height: u32) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let child = tokio::process::Command::new(chromium_path())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                &format!("--window-size={width},{height}"),
                &format!("--remote-debugging-port={port}"),
                &format!("--user-data-dir={}", profile.path().display()),
                url,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium_path().display()));
        // The page's DevTools endpoint, once the browser is up.
        let started = Instant::now();
        let page_url = loop {
            if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/json")).await {
                if let Ok(targets) = response.json::<Vec<Value>>().await {
                    if let Some(url) = targets
                        .iter()
                        .find(|t| t["type"] == "page")
                        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                    {
                        break url.to_string();
                    }
                }
            }
            assert!(
                started.elapsed() < super::PATIENCE,
                "Chromium never offered its page"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (socket, _) = tokio_tungstenite::connect_async(&page_url).await.unwrap();
        Self {
            child,
            socket,
            next_id: 0,
            _profile: profile,
        }
    }

    /// Send one DevTools command and return its result.
    pub async fn command(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(Message::text(request.to_string()))
            .await
            .unwrap();
        while let Some(message) = self.socket.next().await {
            let Ok(Message::Text(text)) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method} failed: {reply}");
                return reply["result"].clone();
            }
        }
        panic!("the browser closed during {method}");
    }

    /// Evaluate JavaScript in the page and return its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .command(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression} threw: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Wait until `expression` is true in the page (errors count as "not yet": the page
    /// may still be loading).
    pub async fn wait_for(&mut self, what: &str, expression: &str) {
        let guarded =
            format!("(() => {{ try {{ return {expression}; }} catch (e) {{ return false; }} }})()");
        let started = Instant::now();
        loop {
            if self.eval(&guarded).await == json!(true) {
                return;
            }
            assert!(
                started.elapsed() < super::PATIENCE,
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A PNG of the page as it is now.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        use base64_decode::decode;
        let result = self
            .command("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        decode(result["data"].as_str().expect("screenshot data"))
    }

    pub async fn close(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The DevTools protocol sends screenshots as base64; decoding it is ten lines.
mod base64_decode {
    pub fn decode(text: &str) -> Vec<u8> {
        let value = |c: u8| -> Option<u32> {
            Some(match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            } as u32)
        };
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        let (mut buffer, mut bits) = (0u32, 0);
        for sextet in text.bytes().filter_map(value) {
            buffer = (buffer << 6) | sextet;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((buffer >> bits) as u8);
            }
        }
        out
    }
}
