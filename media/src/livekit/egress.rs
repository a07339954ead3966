//! [`Egress`]: the web-egress calls of the recording saga, over the
//! `livekit-api` crate's `EgressClient` with our policy applied:
//!
//! - region failover off: on a 5xx the crate would replay `StartWebEgress`
//!   to another region, which can start a second egress;
//! - a 45 s timeout: a start can legitimately take ~22 s before the server
//!   answers 503 when no worker has capacity (livekit/egress#739), longer
//!   than the crate's 10 s default;
//! - Twirp error codes kept apart in [`EgressError`], so the saga can tell
//!   "retry later" (`unavailable`, `resource_exhausted`) from "already over"
//!   (`failed_precondition`) from "outcome unknown" (timeout, transport).

use std::time::Duration;

use livekit_api::services::egress::{EgressClient, EgressListFilter, EgressListOptions, EgressOutput, WebOptions};
use livekit_api::services::{ServerError, ServiceError};
use livekit_protocol as proto;

/// Where the LiveKit server is and how to authenticate. Use struct-update
/// syntax over [`EgressConfig::default`].
#[derive(Debug, Clone)]
pub struct EgressConfig {
    /// `https://…` or `wss://…` (rewritten to https by the crate). Must be
    /// the server root: the crate replaces the URL path with `/twirp/…`.
    pub url: String,
    pub api_key: String,
    pub api_secret: String,
    pub request_timeout: Duration,
}

/// See the module docs for why 45 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(45);

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:7880".into(),
            api_key: String::new(),
            api_secret: String::new(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Whether the egress waits for the page to `console.log("START_RECORDING")`
/// before it starts streaming. A page that never logs it ends the egress
/// ABORTED "Start signal not received".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartSignal {
    AwaitPage,
    Immediate,
}

/// What `StopEgress` achieved.
#[derive(Debug, Clone, PartialEq)]
pub enum StopOutcome {
    /// The egress was running; it is now ENDING (or ABORTED if it had not
    /// started yet). `egress_ended` follows.
    Stopping(Box<proto::EgressInfo>),
    /// The server answered 412: the egress had already reached a terminal
    /// state (or is already ENDING). Nothing left to stop.
    AlreadyStopped { message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("livekit not_found: {0}")]
    NotFound(String),
    #[error("livekit failed_precondition: {0}")]
    FailedPrecondition(String),
    /// 503, typically "no response from servers": no egress worker took the job.
    #[error("livekit unavailable: {0}")]
    Unavailable(String),
    /// 429: quota or concurrency cap.
    #[error("livekit resource_exhausted: {0}")]
    ResourceExhausted(String),
    #[error("livekit unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("livekit permission_denied: {0}")]
    PermissionDenied(String),
    #[error("livekit invalid_argument: {0}")]
    InvalidArgument(String),
    #[error("livekit internal: {0}")]
    Internal(String),
    /// Any other Twirp code, verbatim.
    #[error("livekit {code}: {msg}")]
    Twirp { code: String, msg: String },
    #[error("livekit request timed out")]
    Timeout,
    #[error("livekit transport error: {0}")]
    Transport(String),
    /// The body could not be decoded. A non-JSON error page (an HTML 502
    /// from a proxy) lands here: the crate loses its status code.
    #[error("livekit response undecodable: {0}")]
    Decode(String),
    #[error("livekit token: {0}")]
    Token(String),
}

impl EgressError {
    /// The Twirp code (`not_found`, `unavailable`, …) if the server sent one.
    pub fn twirp_code(&self) -> Option<&str> {
        Some(match self {
            Self::NotFound(_) => "not_found",
            Self::FailedPrecondition(_) => "failed_precondition",
            Self::Unavailable(_) => "unavailable",
            Self::ResourceExhausted(_) => "resource_exhausted",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::PermissionDenied(_) => "permission_denied",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::Internal(_) => "internal",
            Self::Twirp { code, .. } => code,
            Self::Timeout | Self::Transport(_) | Self::Decode(_) | Self::Token(_) => return None,
        })
    }

    /// True when a start may have created an egress although we saw an
    /// error: reconcile with [`Egress::find_active_egress_by_url`] before
    /// starting again.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Timeout | Self::Transport(_) | Self::Decode(_) | Self::Internal(_) | Self::Unavailable(_))
    }
}

impl From<ServiceError> for EgressError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Twirp(ServerError::Twirp(e)) => match e.code.as_str() {
                "not_found" => Self::NotFound(e.msg),
                "failed_precondition" => Self::FailedPrecondition(e.msg),
                "unavailable" => Self::Unavailable(e.msg),
                "resource_exhausted" => Self::ResourceExhausted(e.msg),
                "unauthenticated" => Self::Unauthenticated(e.msg),
                "permission_denied" => Self::PermissionDenied(e.msg),
                "invalid_argument" => Self::InvalidArgument(e.msg),
                "internal" => Self::Internal(e.msg),
                _ => Self::Twirp { code: e.code, msg: e.msg },
            },
            ServiceError::Twirp(ServerError::Request(e)) if e.is_timeout() => Self::Timeout,
            ServiceError::Twirp(ServerError::Request(e)) if e.is_decode() => Self::Decode(e.to_string()),
            ServiceError::Twirp(ServerError::Request(e)) => Self::Transport(e.to_string()),
            ServiceError::Twirp(ServerError::Prost(e)) => Self::Decode(e.to_string()),
            ServiceError::Twirp(ServerError::Url(e)) => Self::Transport(e.to_string()),
            ServiceError::AccessToken(e) => Self::Token(e.to_string()),
            ServiceError::Env(e) => Self::Token(e.to_string()),
        }
    }
}

/// The egress operations of the recording saga.
#[derive(Debug)]
pub struct Egress {
    client: EgressClient,
}

impl Egress {
    pub fn new(config: &EgressConfig) -> Self {
        let client = EgressClient::with_api_key(&config.url, &config.api_key, &config.api_secret)
            .with_failover(false)
            .with_request_timeout(config.request_timeout);
        Self { client }
    }

    /// Starts a web egress recording `page_url` and streaming it to every
    /// RTMP(S) (or `mux://KEY`) URL. The answer is normally STARTING; watch
    /// webhooks or poll [`Self::get_egress`] for ACTIVE.
    ///
    /// Put the saga id in `page_url` (`?saga=…`): after a timeout this is
    /// what [`Self::find_active_egress_by_url`] matches on.
    pub async fn start_web_egress(
        &self,
        page_url: &str,
        rtmp_urls: &[String],
        start_signal: StartSignal,
    ) -> Result<proto::EgressInfo, EgressError> {
        let output = EgressOutput::Stream(proto::StreamOutput {
            protocol: proto::StreamProtocol::Rtmp as i32,
            urls: rtmp_urls.to_vec(),
        });
        let options =
            WebOptions { await_start_signal: start_signal == StartSignal::AwaitPage, ..WebOptions::default() };
        Ok(self.client.start_web_egress(page_url, vec![output], options).await?)
    }

    /// The egress with this id, or `None` if the server does not know it.
    pub async fn get_egress(&self, egress_id: &str) -> Result<Option<proto::EgressInfo>, EgressError> {
        let options = EgressListOptions {
            filter: EgressListFilter::Egress(egress_id.to_owned()),
            ..EgressListOptions::default()
        };
        match self.client.list_egress(options).await.map_err(EgressError::from) {
            Ok(items) => Ok(items.into_iter().find(|e| e.egress_id == egress_id)),
            Err(EgressError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Egresses not yet finished (STARTING, ACTIVE or ENDING).
    pub async fn list_active_egress(&self) -> Result<Vec<proto::EgressInfo>, EgressError> {
        let options = EgressListOptions { active: true, ..EgressListOptions::default() };
        Ok(self.client.list_egress(options).await?)
    }

    /// Reconciles a start whose response was lost: the active web egress
    /// recording exactly `page_url`, if any.
    pub async fn find_active_egress_by_url(&self, page_url: &str) -> Result<Option<proto::EgressInfo>, EgressError> {
        Ok(self.list_active_egress().await?.into_iter().find(|e| web_url(e) == Some(page_url)))
    }

    /// Stops an egress. A 412 ("cannot be stopped": already ENDING or
    /// terminal) is success, because the goal of the call is already met.
    pub async fn stop_egress(&self, egress_id: &str) -> Result<StopOutcome, EgressError> {
        match self.client.stop_egress(egress_id).await.map_err(EgressError::from) {
            Ok(info) => Ok(StopOutcome::Stopping(Box::new(info))),
            Err(EgressError::FailedPrecondition(message)) => Ok(StopOutcome::AlreadyStopped { message }),
            Err(e) => Err(e),
        }
    }

    /// The underlying crate client, for calls this wrapper does not cover.
    pub fn client(&self) -> &EgressClient {
        &self.client
    }
}

/// The page a web egress records, if `info` is a web egress.
pub fn web_url(info: &proto::EgressInfo) -> Option<&str> {
    match &info.request {
        Some(proto::egress_info::Request::Web(web)) => Some(web.url.as_str()),
        _ => None,
    }
}

/// The egress status as the enum (unknown numbers read as STARTING, the
/// protobuf default, which is also what an omitted JSON field means).
pub fn status(info: &proto::EgressInfo) -> proto::EgressStatus {
    proto::EgressStatus::try_from(info.status).unwrap_or(proto::EgressStatus::EgressStarting)
}

/// True once the egress can no longer change: COMPLETE, FAILED, ABORTED or
/// LIMIT_REACHED.
pub fn is_terminal(info: &proto::EgressInfo) -> bool {
    matches!(
        status(info),
        proto::EgressStatus::EgressComplete
            | proto::EgressStatus::EgressFailed
            | proto::EgressStatus::EgressAborted
            | proto::EgressStatus::EgressLimitReached
    )
}
