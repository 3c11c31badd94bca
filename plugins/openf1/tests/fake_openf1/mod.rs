//! A small OpenF1 look-alike on 127.0.0.1:0 for end-to-end tests of the `openf1` source.
//!
//! It behaves the way FORMATS.md 1 describes the real service: filters with operators written
//! in the key (`date>=`, `date<`, repeated `driver_number=` ORed), 404
//! `{"detail":"No results found."}` for an empty result, 429 with `Retry-After` (once per
//! endpoint listed in `throttle_once`), 500 for a `location`/`car_data` query that is too
//! wide (no date bound, a window over 10 minutes, or over 1 minute for all drivers), and
//! bearer tokens from `POST /token` whose `expires_in` is a string; `session_key=latest`.
//!
//! Faults of a struggling service or of a proxy in front of it are injected per request with
//! [`Db::fault`]: no answer at all, a trickled body, a 200 with an HTML page, with JSON cut
//! short or with an object instead of the array, and a connection closed mid-body.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pitwall_api::record::parse_iso8601_ns;
use serde_json::{json, Value};

#[derive(Default)]
pub struct Db {
    pub tables: HashMap<String, Vec<Value>>,
    /// Every data request, as `endpoint?query` (decoded).
    pub requests: Vec<String>,
    /// Status of each data request, in order.
    pub statuses: Vec<u16>,
    pub throttle_once: HashSet<String>,
    /// (username, password) when data requests need a bearer token.
    pub credentials: Option<(String, String)>,
    pub tokens: Vec<String>,
    /// `expires_in` of the tokens handed out ("3600" when not set).
    pub token_lifetime: Option<String>,
    /// Faults to inject, tried in order; see [`Db::fault`].
    pub faults: Vec<FaultRule>,
    /// Every fault injected, with the request (`endpoint?query`) it hit.
    pub faulted: Vec<(String, Fault)>,
}

/// What a faulty server (or a proxy in front of it) does instead of answering properly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Accept the request, then say nothing, ever (not even a status line).
    Stall,
    /// 200 and headers announcing the whole body, then the body one byte every 100 ms.
    Trickle,
    /// 200 with an HTML error page, as a CDN or proxy in trouble sends.
    Html,
    /// 200 with the first half of the real JSON body, as a complete HTTP message.
    Truncated,
    /// 200 with the rows wrapped in an object (`{"data": [...]}`) instead of the array.
    Object,
    /// Headers announcing the whole body, half of it, then the connection is closed.
    DropMidBody,
}

pub struct FaultRule {
    /// Requests (`endpoint?query`, decoded) starting with this are hit.
    pub prefix: String,
    pub fault: Fault,
    /// How many requests to hit; `None`: all of them.
    pub times: Option<u32>,
}

impl Db {
    pub fn push(&mut self, table: &str, row: Value) {
        self.tables.entry(table.to_string()).or_default().push(row);
    }

    /// Hit the next `times` requests starting with `prefix` (all of them with `None`).
    pub fn fault(&mut self, prefix: &str, fault: Fault, times: Option<u32>) {
        self.faults.push(FaultRule {
            prefix: prefix.to_string(),
            fault,
            times,
        });
    }

    fn take_fault(&mut self, request: &str) -> Option<Fault> {
        let rule = self
            .faults
            .iter_mut()
            .find(|rule| request.starts_with(&rule.prefix) && rule.times != Some(0))?;
        if let Some(times) = &mut rule.times {
            *times -= 1;
        }
        Some(rule.fault)
    }
}

pub type Shared = Arc<Mutex<Db>>;

pub struct Server {
    pub address: SocketAddr,
    pub db: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(db: Db) -> Server {
        let db: Shared = Arc::new(Mutex::new(db));
        let app = Router::new()
            .route("/v1/{endpoint}", get(data))
            .route("/token", post(token))
            .with_state(db.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Server {
            address,
            db,
            stop: Some(stop),
            task,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    pub fn requests(&self) -> Vec<String> {
        self.db.lock().unwrap().requests.clone()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
        let _ = self.task.await;
    }
}

fn detail(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "detail": text }))).into_response()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (field, operator, value) of each query part.
pub fn parse_query(query: &str) -> Vec<(String, String, String)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let part = percent_decode(part);
            let at = part.find(['<', '>', '=']).unwrap_or(part.len());
            let field = part[..at].to_string();
            let rest = &part[at..];
            let op_len = if rest.starts_with(">=") || rest.starts_with("<=") {
                2
            } else {
                1.min(rest.len())
            };
            (
                field,
                rest[..op_len].to_string(),
                rest[op_len..].to_string(),
            )
        })
        .collect()
}

fn compare(row_value: &Value, op: &str, wanted: &str) -> bool {
    use std::cmp::Ordering;
    let ordering = match row_value {
        Value::String(text) => match (parse_iso8601_ns(text), parse_iso8601_ns(wanted)) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => Some(text.as_str().cmp(wanted)),
        },
        Value::Number(n) => match (n.as_f64(), wanted.parse::<f64>()) {
            (Some(a), Ok(b)) => a.partial_cmp(&b),
            _ => None,
        },
        Value::Bool(b) => Some(b.to_string().as_str().cmp(wanted)),
        _ => None,
    };
    let Some(ordering) = ordering else {
        return false;
    };
    match op {
        "=" => ordering == Ordering::Equal,
        ">" => ordering == Ordering::Greater,
        ">=" => ordering != Ordering::Less,
        "<" => ordering == Ordering::Less,
        "<=" => ordering != Ordering::Greater,
        _ => false,
    }
}

fn matches(row: &Value, filters: &[(String, String, String)]) -> bool {
    // Equalities on one field OR together; everything else ANDs.
    let mut equal: HashMap<&str, bool> = HashMap::new();
    for (field, op, value) in filters {
        let row_value = row.get(field).unwrap_or(&Value::Null);
        if op == "=" {
            *equal.entry(field).or_default() |= compare(row_value, op, value);
        } else if !compare(row_value, op, value) {
            return false;
        }
    }
    equal.values().all(|ok| *ok)
}

async fn data(
    State(db): State<Shared>,
    Path(endpoint): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (response, fault) = {
        let mut db = db.lock().unwrap();
        let query = uri.query().unwrap_or("");
        let request = format!("{endpoint}?{}", percent_decode(query));
        db.requests.push(request.clone());
        let fault = db.take_fault(&request);
        let response = answer(&mut db, &endpoint, query, &headers);
        match fault {
            Some(fault) => {
                // 0: no status line was ever sent.
                db.statuses
                    .push(if fault == Fault::Stall { 0 } else { 200 });
                db.faulted.push((request, fault));
            }
            None => db.statuses.push(response.status().as_u16()),
        }
        (response, fault)
    };
    match fault {
        None => response,
        Some(fault) => inject(fault, response).await,
    }
}

/// The real answer, spoilt by `fault`.
async fn inject(fault: Fault, response: Response) -> Response {
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let half = body.slice(..body.len() / 2);
    let json = |bytes: Bytes| {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response()
    };
    match fault {
        Fault::Stall => std::future::pending().await,
        Fault::Html => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><head><title>502 Bad Gateway</title></head><body>upstream hiccup</body></html>",
        )
            .into_response(),
        Fault::Truncated => json(half),
        Fault::Object => {
            let rows: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            json(Bytes::from(json!({ "data": rows }).to_string()))
        }
        Fault::Trickle | Fault::DropMidBody => {
            let length = body.len();
            // (bytes still to send, sent so far)
            let stream =
                futures_util::stream::unfold((body, 0usize), move |(body, sent)| async move {
                    if fault == Fault::Trickle {
                        if sent >= body.len() {
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let chunk = body.slice(sent..sent + 1);
                        return Some((Ok::<Bytes, std::io::Error>(chunk), (body, sent + 1)));
                    }
                    if sent == 0 {
                        let chunk = body.slice(..body.len() / 2);
                        let sent = chunk.len();
                        return Some((Ok(chunk), (body, sent)));
                    }
                    if sent < body.len() {
                        // Let the half reach the client, then break the connection off.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return Some((
                            Err(std::io::Error::other("connection dropped mid-body")),
                            (body.clone(), body.len()),
                        ));
                    }
                    None
                });
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, length)
                .body(axum::body::Body::from_stream(stream))
                .unwrap()
        }
    }
}

fn answer(db: &mut Db, endpoint: &str, query: &str, headers: &HeaderMap) -> Response {
    if db.credentials.is_some() {
        let authorised = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|token| db.tokens.iter().any(|t| t == token));
        if !authorised {
            return detail(StatusCode::UNAUTHORIZED, "Live data needs an access token");
        }
    }
    if db.throttle_once.remove(endpoint) {
        let mut response = detail(StatusCode::TOO_MANY_REQUESTS, "Rate exceeded");
        response
            .headers_mut()
            .insert("retry-after", "1".parse().unwrap());
        return response;
    }
    let mut filters = parse_query(query);
    // `session_key=latest`: the newest session.
    let latest = db
        .tables
        .get("sessions")
        .into_iter()
        .flatten()
        .filter_map(|row| row.get("session_key").and_then(Value::as_u64))
        .max();
    for (field, op, value) in &mut filters {
        if field == "session_key" && op == "=" && value == "latest" {
            *value = latest.map_or_else(String::new, |key| key.to_string());
        }
    }
    let rows = db.tables.get(endpoint).cloned().unwrap_or_default();
    if endpoint == "location" || endpoint == "car_data" {
        let bound = |ops: &[&str]| {
            filters
                .iter()
                .filter(|(f, op, _)| f == "date" && ops.contains(&op.as_str()))
                .filter_map(|(_, _, v)| parse_iso8601_ns(v))
                .next()
        };
        let newest = rows
            .iter()
            .filter_map(|r| {
                r.get("date")
                    .and_then(Value::as_str)
                    .and_then(parse_iso8601_ns)
            })
            .max()
            .unwrap_or(0);
        let per_driver = filters.iter().any(|(f, _, _)| f == "driver_number");
        let too_wide = match bound(&[">", ">="]) {
            None => true,
            Some(from) => {
                let to = bound(&["<", "<="]).unwrap_or(newest);
                let width = to - from;
                width > 600_000_000_000 || (!per_driver && width > 60_000_000_000)
            }
        };
        if too_wide {
            return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
        }
    }
    let found: Vec<Value> = rows
        .into_iter()
        .filter(|row| matches(row, &filters))
        .collect();
    if found.is_empty() {
        return detail(StatusCode::NOT_FOUND, "No results found.");
    }
    Json(found).into_response()
}

async fn token(State(db): State<Shared>, body: String) -> Response {
    let form: HashMap<String, String> = body
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let mut db = db.lock().unwrap();
    let Some((user, password)) = db.credentials.clone() else {
        return detail(StatusCode::NOT_FOUND, "Not Found");
    };
    if form.get("username") != Some(&user) || form.get("password") != Some(&password) {
        return detail(StatusCode::UNAUTHORIZED, "Invalid username or password");
    }
    let token = format!("token-{}", db.tokens.len() + 1);
    db.tokens.push(token.clone());
    let lifetime = db
        .token_lifetime
        .clone()
        .unwrap_or_else(|| "3600".to_string());
    Json(json!({ "access_token": token, "token_type": "bearer", "expires_in": lifetime }))
        .into_response()
}
