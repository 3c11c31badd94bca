//! The OpenF1 HTTP client and the session downloader.
//!
//! OpenF1 is a free, shared service with few guarantees (FORMATS.md 1), so the client is
//! polite and patient, and trusts no answer:
//! - a token bucket of `max_requests_per_10s` shared by every request of the source;
//! - 429 and 5xx/gateway errors, timeouts and dropped connections are retried with
//!   exponential backoff and jitter (up to 7 attempts), waiting at least what `Retry-After`
//!   asks. Each retry is logged (warn; a 429 at info) with the request's URL and the wait;
//!   URLs never carry credentials (the token travels in a header);
//! - a request is abandoned after `request_timeout_s` (default 90 s), body included: a server
//!   that accepts and then says nothing, or trickles the body, costs that long and no more;
//! - a 200 whose body is not a JSON array of rows (an HTML error page from a proxy or CDN,
//!   JSON cut short, an object where the array belongs) is taken as a transient fault and
//!   retried like a 5xx, but only 4 attempts: one that persists fails with an error naming
//!   the URL (endpoint and query) and what was wrong with the body. Rows of the wrong shape
//!   *inside* a valid array are not the client's business: they are stored as served and the
//!   cache loader skips and counts them ([`super::rows`]);
//! - an empty result comes back as HTTP 404 `{"detail":"No results found."}`: that is `[]`;
//! - `location` and `car_data` are fetched per driver in windows (`date>=A&date<B`); a window
//!   the server refuses with a 5xx, or that times out, is split in two instead of being
//!   retried as it is (a too-wide query fails with either, FORMATS.md 1);
//! - with credentials, a bearer token from `POST {root}/token` (`expires_in` is a string) is
//!   sent and renewed a minute before it expires. Credentials never appear in logs or errors.
//!
//! The downloader writes each file of the cache atomically (a `.part` file, then a rename)
//! and only from an answer that passed the checks above, skipping files that are already
//! there, and writes `manifest.json` with `complete: true` last. A download that fails (a
//! fault that outlasts the retries) therefore leaves whole files and no manifest: the cache
//! is not replayed, and the next run (the engine restarts the source with backoff) fetches
//! only what is missing. Nothing is lost to a fault; at worst the replay starts later.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use pitwall_api::backoff::Backoff;
use pitwall_api::record::{format_iso8601_ns, parse_iso8601_ns};
use serde::Deserialize;
use tokio::time::Instant;

use super::cache;
use super::rows::{self, DateOnly};
use super::OpenF1Config;

/// Attempts per request before giving up (the first one included).
const MAX_ATTEMPTS: u32 = 7;
/// Attempts for a request answered 200 with a body that is not rows: a proxy or CDN fault
/// is usually gone on the next try; one that persists is not worth minutes of waiting.
const MAX_BAD_ANSWER_ATTEMPTS: u32 = 4;
/// Connecting may take this long at most (or `request_timeout_s` when shorter).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A refused window narrower than this is retried as it is rather than split.
const MIN_SPLIT_NS: i64 = 60_000_000_000;
/// Per-driver series downloaded at the same time (the token bucket sets the real pace).
const PARALLEL_SERIES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: HTTP {status}: {detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: no complete answer within {seconds} s (option request_timeout_s)")]
    Timeout { url: String, seconds: f64 },
    #[error("{url}: HTTP {status}, but the body is not a JSON array of rows: {problem}")]
    BadAnswer {
        url: String,
        status: u16,
        problem: String,
    },
    #[error("{url}: the access token was rejected")]
    TokenRejected { url: String },
    #[error("OpenF1 refused the credentials: {0}")]
    Auth(String),
    #[error("{what}: not a JSON array: {message}")]
    Json { what: String, message: String },
    #[error("session {0} not found on OpenF1")]
    NoSession(String),
    #[error("cannot write the cache at {path}: {source}")]
    Cache {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start the HTTP client: {0}")]
    Client(String),
}

impl FetchError {
    fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Worth trying again later (the server or the network, not the request, was at fault).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Status { status, .. } => is_retryable(*status),
            Self::Transport { .. }
            | Self::Timeout { .. }
            | Self::BadAnswer { .. }
            | Self::TokenRejected { .. } => true,
            _ => false,
        }
    }

    /// What a too-wide `location`/`car_data` window gets: a 5xx or no answer in time.
    fn suggests_splitting(&self) -> bool {
        self.status().is_some_and(|s| s >= 500) || matches!(self, Self::Timeout { .. })
    }
}

fn is_retryable(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// A token bucket: `capacity` requests at once, refilled at `capacity` per 10 s.
pub struct RateLimiter {
    state: StdMutex<(f64, Instant)>,
    capacity: f64,
    per_second: f64,
}

impl RateLimiter {
    pub fn new(per_10s: u32) -> Self {
        let capacity = f64::from(per_10s.max(1));
        Self {
            state: StdMutex::new((capacity, Instant::now())),
            capacity,
            per_second: capacity / 10.0,
        }
    }

    /// Wait for a token.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let refill = now.duration_since(state.1).as_secs_f64() * self.per_second;
                state.0 = (state.0 + refill).min(self.capacity);
                state.1 = now;
                if state.0 >= 1.0 {
                    state.0 -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - state.0) / self.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

struct Token {
    value: String,
    renew_at: Instant,
}

/// An OpenF1 client: base URL, rate limit, retries, optional bearer token.
pub struct Api {
    client: reqwest::Client,
    timeout: Duration,
    base: String,
    token_url: String,
    limiter: RateLimiter,
    credentials: Option<(String, String)>,
    token: tokio::sync::Mutex<Option<Token>>,
    progress: StdMutex<Option<ProgressBar>>,
}

/// One query filter: `field`, operator (`=`, `>=`, `<`, `>`), value.
pub type Filter<'a> = (&'a str, &'a str, String);

impl Api {
    pub fn new(config: &OpenF1Config) -> Result<Self, FetchError> {
        let timeout = Duration::try_from_secs_f64(config.request_timeout_s)
            .ok()
            .filter(|t| !t.is_zero())
            .unwrap_or(Duration::from_secs(90));
        let client = reqwest::Client::builder()
            .user_agent(concat!(
                "pitwall-flow/",
                env!("CARGO_PKG_VERSION"),
                " (openf1 source)"
            ))
            .timeout(timeout)
            .connect_timeout(timeout.min(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        let base = config.base_url.trim_end_matches('/').to_string();
        let root = base.strip_suffix("/v1").unwrap_or(&base);
        Ok(Self {
            client,
            timeout,
            token_url: format!("{root}/token"),
            base,
            limiter: RateLimiter::new(config.max_requests_per_10s),
            credentials: config.credentials(),
            token: tokio::sync::Mutex::new(None),
            progress: StdMutex::new(None),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `url` as errors and logs show it: the configured base URL with its user information
    /// and query values hidden (credentials may ride there), then the endpoint and filters
    /// this source added, which say what failed.
    fn shown(&self, url: &str) -> String {
        match url.strip_prefix(self.base.as_str()) {
            Some(rest) => format!(
                "{}{rest}",
                pitwall_api::redact::url(&self.base).trim_end_matches('/')
            ),
            None => pitwall_api::redact::url(url),
        }
    }

    /// `{base}/{endpoint}?{filters}`, with values percent-encoded (`+00:00` must not become
    /// a space) and the operators written inside the key as OpenF1 expects.
    pub fn url(&self, endpoint: &str, filters: &[Filter<'_>]) -> String {
        let mut url = format!("{}/{endpoint}", self.base);
        for (i, (field, op, value)) in filters.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(field);
            url.push_str(op);
            encode_into(&mut url, value);
        }
        url
    }

    /// The rows of `endpoint` matching `filters`, as the JSON text of an array.
    pub async fn get(&self, endpoint: &str, filters: &[Filter<'_>]) -> Result<String, FetchError> {
        self.get_with(endpoint, filters, false).await
    }

    /// One attempt, no retries: for a question whose answer the caller can do without.
    pub async fn get_once(
        &self,
        endpoint: &str,
        filters: &[Filter<'_>],
    ) -> Result<String, FetchError> {
        let url = self.url(endpoint, filters);
        let text = self.attempt(&url).await.map_err(|(error, _)| error)?;
        self.tick_progress();
        Ok(text)
    }

    /// Like [`Api::get`]; with `split_instead = true`, a 5xx or a timeout fails at once (the
    /// caller splits the query instead).
    async fn get_with(
        &self,
        endpoint: &str,
        filters: &[Filter<'_>],
        split_instead: bool,
    ) -> Result<String, FetchError> {
        let url = self.url(endpoint, filters);
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let delay = match self.attempt(&url).await {
                Ok(text) => {
                    self.tick_progress();
                    return Ok(text);
                }
                Err((error, retry_after)) => {
                    let attempts = match error {
                        FetchError::BadAnswer { .. } => MAX_BAD_ANSWER_ATTEMPTS,
                        _ => MAX_ATTEMPTS,
                    };
                    let retry = error.is_transient()
                        && attempt < attempts
                        && !(split_instead && error.suggests_splitting());
                    if !retry {
                        if attempt > 1 && error.is_transient() {
                            tracing::warn!(%error, attempt, "openf1: giving up on the request");
                        }
                        return Err(error);
                    }
                    let delay = retry_after
                        .unwrap_or_default()
                        .max(backoff.next_delay())
                        .min(Duration::from_secs(120));
                    let retry_in_ms = delay.as_millis() as u64;
                    if error.status() == Some(429) {
                        tracing::info!(%error, attempt, retry_in_ms, "openf1: rate limited; waiting");
                    } else {
                        tracing::warn!(%error, attempt, retry_in_ms, "openf1: request failed; retrying");
                    }
                    delay
                }
            };
            tokio::time::sleep(delay).await;
        }
    }

    /// One request. Errors carry the `Retry-After` delay when the server gave one.
    async fn attempt(&self, url: &str) -> Result<String, (FetchError, Option<Duration>)> {
        let token = self.bearer().await.map_err(|e| (e, None))?;
        self.limiter.acquire().await;
        let mut request = self.client.get(url);
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let transport = |e: reqwest::Error| {
            let error = if e.is_timeout() {
                FetchError::Timeout {
                    url: self.shown(url),
                    seconds: self.timeout.as_secs_f64(),
                }
            } else {
                FetchError::Transport {
                    url: self.shown(url),
                    message: pitwall_api::redact::urls_in(&describe_transport(e)),
                }
            };
            (error, None)
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.text().await.map_err(transport)?;
        match status {
            200..=299 => {
                if rows::is_no_results(&body) {
                    return Ok("[]".to_string());
                }
                match rows_problem(&body) {
                    None => Ok(body),
                    Some(problem) => Err((
                        FetchError::BadAnswer {
                            url: self.shown(url),
                            status,
                            problem,
                        },
                        None,
                    )),
                }
            }
            404 => {
                if !rows::is_no_results(&body) {
                    tracing::warn!(url = %self.shown(url), detail = %detail_of(&body), "openf1: 404, taken as no results");
                }
                Ok("[]".to_string())
            }
            401 if token.is_some() => {
                // The token may have been revoked early: renew it and try again.
                *self.token.lock().await = None;
                Err((
                    FetchError::TokenRejected {
                        url: self.shown(url),
                    },
                    None,
                ))
            }
            _ => Err((
                FetchError::Status {
                    url: self.shown(url),
                    status,
                    detail: detail_of(&body),
                },
                retry_after,
            )),
        }
    }

    /// The bearer token, obtained or renewed as needed; `None` without credentials.
    async fn bearer(&self) -> Result<Option<String>, FetchError> {
        Ok(self.access_token().await?.map(|(value, _)| value))
    }

    /// Forget the current token (it was refused): the next request obtains a new one.
    pub async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// The access token and when it should be renewed (a minute before it expires),
    /// obtained from `POST {root}/token` when there is none or it is due; `None` without
    /// credentials. The MQTT stream uses it as its password.
    pub async fn access_token(&self) -> Result<Option<(String, Instant)>, FetchError> {
        let Some((username, password)) = &self.credentials else {
            return Ok(None);
        };
        let mut token = self.token.lock().await;
        if let Some(current) = token.as_ref() {
            if Instant::now() < current.renew_at {
                return Ok(Some((current.value.clone(), current.renew_at)));
            }
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Seconds {
            Text(String),
            Number(f64),
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            access_token: String,
            #[serde(default)]
            expires_in: Option<Seconds>,
        }
        self.limiter.acquire().await;
        let response = self
            .client
            .post(&self.token_url)
            .form(&[
                ("username", username.as_str()),
                ("password", password.as_str()),
            ])
            .send()
            .await
            .map_err(|e| FetchError::Auth(format!("{}: {e}", self.token_url)))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(FetchError::Auth(format!(
                "{}: HTTP {}: {}",
                self.token_url,
                status.as_u16(),
                detail_of(&body)
            )));
        }
        let parsed: TokenResponse = serde_json::from_str(&body)
            .map_err(|e| FetchError::Auth(format!("{}: unexpected answer: {e}", self.token_url)))?;
        let lifetime = match parsed.expires_in {
            Some(Seconds::Text(text)) => text.trim().parse::<f64>().ok(),
            Some(Seconds::Number(n)) => Some(n),
            None => None,
        }
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(3600.0);
        let margin = (lifetime / 10.0).min(60.0);
        let value = parsed.access_token;
        let renew_at = Instant::now() + Duration::from_secs_f64(lifetime - margin);
        *token = Some(Token {
            value: value.clone(),
            renew_at,
        });
        tracing::info!(expires_in_s = lifetime, "openf1: obtained an access token");
        Ok(Some((value, renew_at)))
    }

    fn set_progress(&self, bar: Option<ProgressBar>) {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = bar;
    }

    fn tick_progress(&self) {
        if let Some(bar) = self
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            bar.inc(1);
        }
    }

    fn add_progress_work(&self, requests: u64) {
        if let Some(bar) = self
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            bar.inc_length(requests);
        }
    }
}

/// What is wrong with a body that should be a JSON array (of anything: rows are checked one
/// by one later), or `None` when it is one.
fn rows_problem(body: &str) -> Option<String> {
    let error = serde_json::from_str::<Vec<serde::de::IgnoredAny>>(body).err()?;
    let start: String = body
        .trim_start()
        .chars()
        .take(60)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.trim().is_empty() {
        return Some("an empty body".to_string());
    }
    Some(match error.classify() {
        serde_json::error::Category::Eof => {
            format!("JSON cut short after {} bytes", body.len())
        }
        serde_json::error::Category::Data => {
            let kind = match body.trim_start().as_bytes().first() {
                Some(b'{') => "an object",
                Some(b'"') => "a string",
                _ => "a value",
            };
            format!("JSON of the wrong shape ({kind}, not an array): `{start}`")
        }
        _ => format!("not JSON ({error}): `{start}`"),
    })
}

/// A transport error without its URL (the caller names it), with its causes: reqwest's own
/// text ("error decoding response body") says little without them.
fn describe_transport(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `detail` of an OpenF1 error body, or the start of the body.
fn detail_of(body: &str) -> String {
    #[derive(Deserialize)]
    struct Detail {
        detail: serde_json::Value,
    }
    match serde_json::from_str::<Detail>(body) {
        Ok(Detail {
            detail: serde_json::Value::String(text),
        }) => text,
        Ok(Detail { detail }) => detail.to_string(),
        Err(_) => body.chars().take(200).collect(),
    }
}

fn encode_into(out: &mut String, value: &str) {
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

/// `session_key=latest` (or a number) resolved to the numeric key.
pub async fn resolve_session_key(api: &Api, key: &str) -> Result<u64, FetchError> {
    let text = api
        .get("sessions", &[("session_key", "=", key.to_string())])
        .await?;
    first_session_key(&text, key)
}

/// Like [`resolve_session_key`], asking once: a caller with a fallback does not wait out
/// half a minute of retries when the network is down.
pub async fn resolve_session_key_once(api: &Api, key: &str) -> Result<u64, FetchError> {
    let text = api
        .get_once("sessions", &[("session_key", "=", key.to_string())])
        .await?;
    first_session_key(&text, key)
}

fn first_session_key(text: &str, key: &str) -> Result<u64, FetchError> {
    session_rows(text, "sessions")?
        .first()
        .and_then(|row| row.session_key)
        .ok_or_else(|| FetchError::NoSession(key.to_string()))
}

#[derive(Deserialize)]
pub(crate) struct SessionRow {
    #[serde(default)]
    pub session_key: Option<u64>,
    #[serde(default)]
    pub meeting_key: Option<u64>,
    #[serde(default)]
    pub date_start: Option<String>,
    #[serde(default)]
    pub date_end: Option<String>,
}

/// The rows of a `sessions` answer; a row of the wrong shape is skipped, not fatal.
pub(crate) fn session_rows(text: &str, what: &str) -> Result<Vec<SessionRow>, FetchError> {
    let raws = rows::raw_rows(text).map_err(|e| FetchError::Json {
        what: what.to_string(),
        message: e.to_string(),
    })?;
    Ok(raws
        .into_iter()
        .filter_map(|raw| serde_json::from_str(raw.get()).ok())
        .collect())
}

pub struct DownloadOptions {
    pub window_minutes: f64,
    /// Shown when set; [`download_session`] makes one itself when stderr is a terminal.
    pub progress: Option<ProgressBar>,
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), FetchError> {
    let path = dir.join(format!("{name}.json"));
    cache::write_atomic(&path, text.as_bytes()).map_err(|source| FetchError::Cache {
        path: path.display().to_string(),
        source,
    })
}

/// The cached text of document `name`, fetching and storing it first when absent.
async fn ensure_document(
    api: &Api,
    dir: &Path,
    name: &str,
    filters: &[Filter<'_>],
    optional: bool,
) -> Result<String, FetchError> {
    if let Some(path) = cache::find_file(dir, name) {
        // A file that is not an array (damaged on disk) is fetched again.
        if let Ok(text) = cache::read_text(&path) {
            if rows::raw_rows(&text).is_ok() {
                return Ok(text);
            }
        }
    }
    let text = match api.get(name, filters).await {
        Ok(text) => text,
        Err(error) if optional && !error.is_transient() => {
            tracing::warn!(%error, "openf1: optional endpoint `{name}` unavailable; stored as empty");
            "[]".to_string()
        }
        Err(error) => return Err(error),
    };
    if let Err(error) = rows::raw_rows(&text) {
        return Err(FetchError::Json {
            what: api.url(name, filters),
            message: error.to_string(),
        });
    }
    write(dir, name, &text)?;
    Ok(text)
}

/// Download session `session_key` into `dir` (resuming what is there) and mark it complete.
pub async fn download_session(
    api: &Api,
    dir: &Path,
    session_key: u64,
    options: &DownloadOptions,
) -> Result<(), FetchError> {
    let progress = options.progress.clone().or_else(|| {
        std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} requests, {elapsed} (eta {eta})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(format!("OpenF1 session {session_key}"));
            bar
        })
    });
    api.set_progress(progress.clone());
    let result = download(api, dir, session_key, options).await;
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    api.set_progress(None);
    result
}

async fn download(
    api: &Api,
    dir: &Path,
    session_key: u64,
    options: &DownloadOptions,
) -> Result<(), FetchError> {
    std::fs::create_dir_all(dir).map_err(|source| FetchError::Cache {
        path: dir.display().to_string(),
        source,
    })?;
    let key = session_key.to_string();
    let by_session = || vec![("session_key", "=", key.clone())];
    api.add_progress_work(12);

    let sessions = ensure_document(api, dir, "sessions", &by_session(), false).await?;
    let session = session_rows(&sessions, "sessions")?
        .into_iter()
        .next()
        .ok_or_else(|| FetchError::NoSession(key.clone()))?;
    match session.meeting_key {
        Some(meeting) => {
            ensure_document(
                api,
                dir,
                "meetings",
                &[("meeting_key", "=", meeting.to_string())],
                true,
            )
            .await?;
        }
        None => write(dir, "meetings", "[]")?,
    }
    for (name, optional) in [
        ("drivers", false),
        ("laps", false),
        ("position", false),
        ("intervals", true),
        ("stints", true),
        ("pit", true),
        ("race_control", true),
        ("session_result", true),
        ("weather", true),
    ] {
        ensure_document(api, dir, name, &by_session(), optional).await?;
    }
    if cache::find_file(dir, "starting_grid").is_none() {
        let grid = starting_grid(api, session_key, session.meeting_key).await?;
        write(dir, "starting_grid", &grid)?;
    }

    let (drivers, range) = drivers_and_range(dir, &session);
    if let Some((start, end)) = range {
        let window_ns = ((options.window_minutes.max(0.05) * 60e9) as i64).max(1_000_000_000);
        let mut windows = Vec::new();
        let mut from = start;
        while from <= end {
            windows.push((from, from + window_ns));
            from += window_ns;
        }
        let mut jobs: Vec<(&'static str, u32)> = Vec::new();
        for driver in &drivers {
            for endpoint in [cache::LOCATION, cache::CAR_DATA] {
                if cache::find_file(dir, &format!("{endpoint}/{driver}")).is_none() {
                    jobs.push((endpoint, *driver));
                }
            }
        }
        api.add_progress_work((jobs.len() * windows.len()) as u64);
        let mut jobs = jobs.into_iter();
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < PARALLEL_SERIES {
                let Some((endpoint, driver)) = jobs.next() else {
                    break;
                };
                running.push(download_series(api, dir, &key, endpoint, driver, &windows));
            }
            match running.next().await {
                Some(done) => done?,
                None => break,
            }
        }
    } else {
        tracing::warn!(
            session_key,
            "openf1: the session has no time range; no location or car data downloaded"
        );
    }
    cache::write_manifest(dir, session_key, api.base_url()).map_err(|source| FetchError::Cache {
        path: dir.join(cache::MANIFEST).display().to_string(),
        source,
    })
}

/// `starting_grid` is stored under the meeting's qualifying session; newer data may also be
/// under the race's own key.
async fn starting_grid(
    api: &Api,
    session_key: u64,
    meeting: Option<u64>,
) -> Result<String, FetchError> {
    let mut keys = Vec::new();
    if let Some(meeting) = meeting {
        let text = api
            .get(
                "sessions",
                &[
                    ("meeting_key", "=", meeting.to_string()),
                    ("session_name", "=", "Qualifying".to_string()),
                ],
            )
            .await?;
        keys.extend(
            session_rows(&text, "sessions")?
                .into_iter()
                .filter_map(|r| r.session_key),
        );
    }
    keys.push(session_key);
    for key in keys {
        match api
            .get("starting_grid", &[("session_key", "=", key.to_string())])
            .await
        {
            Ok(text) if rows::raw_rows(&text).is_ok_and(|rows| !rows.is_empty()) => {
                return Ok(text)
            }
            Ok(_) => {}
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => tracing::warn!(%error, "openf1: no starting grid"),
        }
    }
    Ok("[]".to_string())
}

/// Drivers to fetch series for, and the time range to cover: the session's scheduled
/// start and end, widened to the laps actually driven (races overrun after red flags).
fn drivers_and_range(dir: &Path, session: &SessionRow) -> (Vec<u32>, Option<(i64, i64)>) {
    #[derive(Deserialize)]
    struct Row<'a> {
        #[serde(default)]
        driver_number: Option<i64>,
        #[serde(borrow, default)]
        date_start: Option<std::borrow::Cow<'a, str>>,
        #[serde(default)]
        lap_duration: Option<f64>,
    }
    let mut drivers = std::collections::BTreeSet::new();
    let mut first = session.date_start.as_deref().and_then(parse_iso8601_ns);
    let mut last = session.date_end.as_deref().and_then(parse_iso8601_ns);
    for name in ["drivers", "laps", "position"] {
        let Some(text) = cache::find_file(dir, name).and_then(|p| cache::read_text(&p).ok()) else {
            continue;
        };
        let Ok(raws) = rows::raw_rows(&text) else {
            continue;
        };
        for raw in raws {
            let Ok(row) = serde_json::from_str::<Row<'_>>(raw.get()) else {
                continue;
            };
            if let Some(driver) = row.driver_number.and_then(|n| u32::try_from(n).ok()) {
                drivers.insert(driver);
            }
            if name == "laps" {
                if let Some(start) = row.date_start.as_deref().and_then(parse_iso8601_ns) {
                    let end =
                        start + (row.lap_duration.unwrap_or(0.0).clamp(0.0, 600.0) * 1e9) as i64;
                    first = Some(first.map_or(start, |f| f.min(start)));
                    let end = end + 120_000_000_000;
                    last = Some(last.map_or(end, |l| l.max(end)));
                }
            }
        }
    }
    let range = match (first, last) {
        (Some(first), Some(last)) if first <= last => Some((first, last)),
        _ => None,
    };
    (drivers.into_iter().collect(), range)
}

/// One driver's `endpoint` series over all windows, sorted by date, written as one file.
async fn download_series(
    api: &Api,
    dir: &Path,
    session_key: &str,
    endpoint: &str,
    driver: u32,
    windows: &[(i64, i64)],
) -> Result<(), FetchError> {
    let mut texts = Vec::with_capacity(windows.len());
    let mut pending: std::collections::VecDeque<(i64, i64)> = windows.iter().copied().collect();
    while let Some((from, to)) = pending.pop_front() {
        let filters = [
            ("session_key", "=", session_key.to_string()),
            ("driver_number", "=", driver.to_string()),
            ("date", ">=", format_iso8601_ns(from)),
            ("date", "<", format_iso8601_ns(to)),
        ];
        let splittable = to - from >= 2 * MIN_SPLIT_NS;
        match api.get_with(endpoint, &filters, splittable).await {
            Ok(text) => texts.push(text),
            Err(error) if splittable && error.suggests_splitting() => {
                if matches!(error, FetchError::Timeout { .. }) {
                    tracing::warn!(%error, "openf1: window too slow; splitting it in two");
                } else {
                    tracing::debug!(%error, "openf1: window refused; splitting it in two");
                }
                let middle = from + (to - from) / 2;
                api.add_progress_work(1);
                pending.push_front((middle, to));
                pending.push_front((from, middle));
            }
            Err(error) => return Err(error),
        }
    }
    let mut rows_by_time = Vec::new();
    for (text, window) in texts.iter().zip(0..) {
        let raws = rows::raw_rows(text).map_err(|e| FetchError::Json {
            what: format!("{endpoint} of driver {driver}, window {window}"),
            message: e.to_string(),
        })?;
        for raw in raws {
            let time = serde_json::from_str::<DateOnly<'_>>(raw.get())
                .ok()
                .and_then(|row| row.date.as_deref().and_then(parse_iso8601_ns))
                .unwrap_or(i64::MAX);
            rows_by_time.push((time, raw.get()));
        }
    }
    rows_by_time.sort_by_key(|(time, _)| *time);
    let mut out = String::with_capacity(texts.iter().map(String::len).sum::<usize>() + 2);
    out.push('[');
    for (i, (_, row)) in rows_by_time.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(row);
    }
    out.push(']');
    write(dir, &format!("{endpoint}/{driver}"), &out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::ComponentConfig;

    #[test]
    fn filters_are_written_the_openf1_way() {
        let config: OpenF1Config = pitwall_api::testing::parse_config(
            "session_key = 9158\nbase_url = \"http://127.0.0.1:1/v1/\"",
        );
        let api = Api::new(&config).unwrap();
        let url = api.url(
            "location",
            &[
                ("session_key", "=", "9158".into()),
                ("date", ">=", "2024-05-26T13:03:35.123000+00:00".into()),
            ],
        );
        assert_eq!(
            url,
            "http://127.0.0.1:1/v1/location?session_key=9158&date>=2024-05-26T13:03:35.123000%2B00:00"
        );
        assert_eq!(api.token_url, "http://127.0.0.1:1/token");
    }

    #[test]
    fn a_body_that_is_not_rows_says_what_it_is() {
        assert_eq!(rows_problem("[]"), None);
        assert_eq!(
            rows_problem(r#"[{"a": 1}, "not a row", 3]"#),
            None,
            "rows are checked later"
        );
        let cut = rows_problem(r#"[{"a": 1}, {"a""#).unwrap();
        assert_eq!(cut, "JSON cut short after 15 bytes");
        let object = rows_problem(r#"{"data": []}"#).unwrap();
        assert!(
            object.starts_with("JSON of the wrong shape (an object, not an array)"),
            "{object}"
        );
        let html = rows_problem("<html>\n<body>502</body></html>").unwrap();
        assert!(
            html.starts_with("not JSON") && html.contains("`<html> <body>502"),
            "{html}"
        );
        assert_eq!(rows_problem("  ").unwrap(), "an empty body");
        let error = FetchError::BadAnswer {
            url: "http://h/v1/laps?session_key=1".into(),
            status: 200,
            problem: cut,
        };
        assert!(error.is_transient());
        assert!(
            !error.suggests_splitting(),
            "garbage is not a sign of a too-wide window"
        );
        let timeout = FetchError::Timeout {
            url: "http://h/v1/location".into(),
            seconds: 1.5,
        };
        assert!(timeout.is_transient() && timeout.suggests_splitting());
        assert_eq!(
            timeout.to_string(),
            "http://h/v1/location: no complete answer within 1.5 s (option request_timeout_s)"
        );
    }

    #[test]
    fn request_timeout_s_is_checked() {
        let problems = |value: &str| {
            let config: OpenF1Config = pitwall_api::testing::parse_config(&format!(
                "session_key = 9158\nrequest_timeout_s = {value}"
            ));
            config
                .check()
                .into_iter()
                .filter(|p| p.key == "request_timeout_s")
                .count()
        };
        assert_eq!(problems("90.0"), 0);
        assert_eq!(problems("0.5"), 0);
        assert_eq!(problems("0.0"), 1);
        assert_eq!(problems("-3.0"), 1);
        assert_eq!(problems("nan"), 1);
        let config: OpenF1Config =
            pitwall_api::testing::parse_config("session_key = 9158\nrequest_timeout_s = 2.5");
        assert_eq!(
            Api::new(&config).unwrap().timeout,
            Duration::from_millis(2500)
        );
        let config: OpenF1Config = pitwall_api::testing::parse_config("session_key = 9158");
        assert_eq!(Api::new(&config).unwrap().timeout, Duration::from_secs(90));
    }

    #[tokio::test]
    async fn the_bucket_spaces_requests_after_a_burst() {
        let limiter = RateLimiter::new(20); // 2 per second after 20 at once
        let started = Instant::now();
        for _ in 0..21 {
            limiter.acquire().await;
        }
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(400), "{waited:?}");
        assert!(waited < Duration::from_millis(1000), "{waited:?}");
    }
}
