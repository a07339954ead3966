//! `MuxClient`: the handful of Mux Video endpoints the recording saga uses,
//! on reqwest with Basic auth and the `{"data":…}` envelope.
//!
//! Retry policy, and why: Mux documents no idempotency key, so replaying a
//! POST after a timeout or 5xx can create a second live stream or clip (the
//! official SDK does exactly that). We therefore never retry POSTs; the error
//! goes back to the caller, which reconciles through `passthrough`
//! ([`MuxClient::find_live_stream_by_passthrough`]). GET, PUT and DELETE are
//! idempotent and are retried on 429, 5xx, timeouts and dropped connections,
//! with exponential backoff and jitter, honouring `retry-after`.

use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use reqwest::{Method, StatusCode, header};
use serde::{Serialize, de::DeserializeOwned};

use super::error::MuxError;
use super::types::{Asset, CreateClip, CreateLiveStream, LiveStream};

/// Where and how to reach Mux. Build with struct-update syntax over
/// [`MuxConfig::default`], which points at the real API.
#[derive(Debug, Clone)]
pub struct MuxConfig {
    /// `https://api.mux.com`, or a simulator URL (a path prefix is allowed).
    pub base_url: String,
    pub token_id: String,
    pub token_secret: String,
    /// Per attempt. Mux answers in well under a second; 30 s only guards
    /// against a stuck connection.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for MuxConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.mux.com".into(),
            token_id: String::new(),
            token_secret: String::new(),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

/// Backoff for idempotent calls. Defaults mirror the official SDK
/// (two retries, 0.5 s doubling to at most 8 s).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A `retry-after` longer than this is not waited out: the error is
    /// returned so the caller (a saga step) can reschedule itself instead of
    /// holding a task for minutes.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries at all; useful in tests that assert a single attempt.
    pub fn none() -> Self {
        Self { max_retries: 0, ..Self::default() }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.initial_backoff.saturating_mul(1u32 << attempt.min(16));
        let capped = exp.min(self.max_backoff);
        // "Equal jitter": at least half the backoff, so retries still spread
        // out, but never zero, so we never hammer a struggling server.
        let factor = rand::rng().random_range(0.5..=1.0);
        capped.mul_f64(factor)
    }
}

/// Mux lists at most 100 items per page.
const PAGE_LIMIT: usize = 100;
/// Bounds a reconciliation scan; 50 pages is 5,000 streams, far beyond ours.
const MAX_PAGES: usize = 50;

#[derive(Debug, Clone)]
pub struct MuxClient {
    http: reqwest::Client,
    config: MuxConfig,
}

#[derive(serde::Deserialize)]
struct Envelope<T> {
    data: T,
}

impl MuxClient {
    pub fn new(mut config: MuxConfig) -> Result<Self, MuxError> {
        while config.base_url.ends_with('/') {
            config.base_url.pop();
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .user_agent(concat!("eventuall-media/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| MuxError::Transport(e.to_string()))?;
        Ok(Self { http, config })
    }

    pub async fn create_live_stream(&self, req: &CreateLiveStream) -> Result<LiveStream, MuxError> {
        self.data(Method::POST, "/video/v1/live-streams", Some(json(req)?)).await
    }

    pub async fn get_live_stream(&self, id: &str) -> Result<LiveStream, MuxError> {
        self.data(Method::GET, &format!("/video/v1/live-streams/{}", seg(id)), None).await
    }

    /// Every live stream in the environment, newest first.
    pub async fn list_live_streams(&self) -> Result<Vec<LiveStream>, MuxError> {
        self.list_all("/video/v1/live-streams").await
    }

    /// The newest live stream created with this `passthrough`: how a create
    /// whose response was lost is reconciled.
    pub async fn find_live_stream_by_passthrough(&self, passthrough: &str) -> Result<Option<LiveStream>, MuxError> {
        Ok(self.find_live_streams_by_passthrough(passthrough).await?.into_iter().next())
    }

    /// All live streams with this `passthrough`, newest first. More than one
    /// means an earlier create was duplicated; the extras are orphans.
    pub async fn find_live_streams_by_passthrough(&self, passthrough: &str) -> Result<Vec<LiveStream>, MuxError> {
        let all = self.list_live_streams().await?;
        let mut found: Vec<_> = all.into_iter().filter(|s| s.passthrough.as_deref() == Some(passthrough)).collect();
        found.sort_by_key(|item| std::cmp::Reverse(item.created_at));
        Ok(found)
    }

    /// Ends the recording now (the asset finalises); Mux keeps the encoder
    /// connection for another 60 s.
    pub async fn complete_live_stream(&self, id: &str) -> Result<(), MuxError> {
        let path = format!("/video/v1/live-streams/{}/complete", seg(id));
        self.send(Method::PUT, &path, None).await.map(drop)
    }

    /// Ends the recording and drops the encoder at once; new connections are
    /// refused until the stream is enabled again.
    pub async fn disable_live_stream(&self, id: &str) -> Result<(), MuxError> {
        let path = format!("/video/v1/live-streams/{}/disable", seg(id));
        self.send(Method::PUT, &path, None).await.map(drop)
    }

    pub async fn enable_live_stream(&self, id: &str) -> Result<(), MuxError> {
        let path = format!("/video/v1/live-streams/{}/enable", seg(id));
        self.send(Method::PUT, &path, None).await.map(drop)
    }

    /// Deleting an already deleted stream reports [`MuxError::NotFound`]; a
    /// cleanup step can treat that as done.
    pub async fn delete_live_stream(&self, id: &str) -> Result<(), MuxError> {
        let path = format!("/video/v1/live-streams/{}", seg(id));
        self.send(Method::DELETE, &path, None).await.map(drop)
    }

    pub async fn get_asset(&self, id: &str) -> Result<Asset, MuxError> {
        self.data(Method::GET, &format!("/video/v1/assets/{}", seg(id)), None).await
    }

    /// Every asset in the environment, newest first.
    pub async fn list_assets(&self) -> Result<Vec<Asset>, MuxError> {
        self.list_all("/video/v1/assets").await
    }

    pub async fn delete_asset(&self, id: &str) -> Result<(), MuxError> {
        let path = format!("/video/v1/assets/{}", seg(id));
        self.send(Method::DELETE, &path, None).await.map(drop)
    }

    /// Creates a clip asset (`status: preparing`); poll [`Self::get_asset`]
    /// at most once per second until it is `ready` or `errored`.
    pub async fn create_clip(&self, clip: &CreateClip) -> Result<Asset, MuxError> {
        self.data(Method::POST, "/video/v1/assets", Some(json(&clip.body())?)).await
    }

    /// The newest asset with this `passthrough` (reconciles a lost clip create).
    pub async fn find_asset_by_passthrough(&self, passthrough: &str) -> Result<Option<Asset>, MuxError> {
        let mut found: Vec<_> =
            self.list_assets().await?.into_iter().filter(|a| a.passthrough.as_deref() == Some(passthrough)).collect();
        found.sort_by_key(|item| std::cmp::Reverse(item.created_at));
        Ok(found.into_iter().next())
    }

    async fn list_all<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, MuxError> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let items: Vec<T> = self.data(Method::GET, &format!("{path}?limit={PAGE_LIMIT}&page={page}"), None).await?;
            let last = items.len() < PAGE_LIMIT;
            out.extend(items);
            if last {
                break;
            }
        }
        Ok(out)
    }

    async fn data<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, MuxError> {
        let bytes = self.send(method, path, body).await?;
        serde_json::from_slice::<Envelope<T>>(&bytes).map(|e| e.data).map_err(|e| MuxError::Decode(e.to_string()))
    }

    async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Bytes, MuxError> {
        // See the module docs: a POST is attempted exactly once.
        let replayable = method != Method::POST;
        let policy = self.config.retry;
        let mut attempt = 0;
        loop {
            let (error, retry_after) = match self.attempt(&method, path, body.clone()).await {
                Ok(bytes) => return Ok(bytes),
                Err(failure) => failure,
            };
            if !replayable || !error.is_transient() || attempt >= policy.max_retries {
                return Err(error);
            }
            let wait = match retry_after {
                Some(wait) if wait > policy.max_retry_after => return Err(error),
                Some(wait) => wait,
                None => policy.backoff(attempt),
            };
            tracing::debug!(%method, path, attempt, ?wait, %error, "retrying mux request");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, (MuxError, Option<Duration>)> {
        let url = format!("{}{}", self.config.base_url, path);
        let mut req = self
            .http
            .request(method.clone(), url)
            .basic_auth(&self.config.token_id, Some(&self.config.token_secret))
            .header(header::ACCEPT, "application/json");
        if let Some(body) = body {
            req = req.header(header::CONTENT_TYPE, "application/json").body(body);
        }
        let resp = req.send().await.map_err(|e| (MuxError::from_reqwest(&e), None))?;
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| (MuxError::from_reqwest(&e), None))?;
        if status.is_success() {
            return Ok(bytes);
        }
        let error = MuxError::from_status(status.as_u16(), &bytes, retry_after);
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            tracing::warn!(%method, path, %status, "mux request failed");
        }
        Err((error, retry_after))
    }
}

fn json(value: &impl Serialize) -> Result<Vec<u8>, MuxError> {
    serde_json::to_vec(value).map_err(|e| MuxError::Decode(e.to_string()))
}

/// Ids come from Mux (alphanumeric), but a corrupted stored id must not be
/// able to address a different path.
fn seg(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).collect()
}

/// `retry-after-ms` (what Mux's own SDK honours first), then `retry-after`
/// in seconds. The HTTP-date form is not used by Mux and is ignored.
fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    let read = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    if let Some(ms) = read("retry-after-ms").filter(|v| v.is_finite() && *v >= 0.0) {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    read("retry-after").filter(|v| v.is_finite() && *v >= 0.0).map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_within_bounds() {
        let policy = RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            max_retry_after: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let first = policy.backoff(0);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let late = policy.backoff(4);
            assert!(late >= Duration::from_millis(150) && late <= Duration::from_millis(300));
        }
    }

    #[test]
    fn retry_after_prefers_milliseconds() {
        let mut h = header::HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        h.clear();
        h.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        assert_eq!(seg("abc/../assets?x=1"), "abcassetsx1");
    }
}
