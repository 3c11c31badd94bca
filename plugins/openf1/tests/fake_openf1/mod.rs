//! A small OpenF1 look-alike on 127.0.0.1:0 for end-to-end tests of the `openf1` source.
//!
//! It behaves the way FORMATS.md 1 describes the real service: filters with operators written
//! in the key (`date>=`, `date<`, repeated `driver_number=` ORed), 404
//! `{"detail":"No results found."}` for an empty result, 429 with `Retry-After` (once per
//! endpoint listed in `throttle_once`), 500 for a `location`/`car_data` query that is too
//! wide (no date bound, a window over 10 minutes, or over 1 minute for all drivers), and
//! bearer tokens from `POST /token` whose `expires_in` is a string; `session_key=latest`.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

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
}

impl Db {
    pub fn push(&mut self, table: &str, row: Value) {
        self.tables.entry(table.to_string()).or_default().push(row);
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
    let mut db = db.lock().unwrap();
    let query = uri.query().unwrap_or("");
    db.requests
        .push(format!("{endpoint}?{}", percent_decode(query)));
    let response = answer(&mut db, &endpoint, query, &headers);
    db.statuses.push(response.status().as_u16());
    response
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
