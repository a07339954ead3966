//! LiveKit: wrappers over the `livekit-api` crate, never a reimplementation.
//!
//! - `egress`: [`Egress`], the web-egress calls with our failover/timeout
//!   policy and [`EgressError`] keeping Twirp codes apart.
//! - `webhook`: [`WebhookVerifier`], multi-key verification by `iss`.
//!
//! The protobuf types are re-exported as [`proto`] so callers need no direct
//! `livekit-protocol` dependency.

mod egress;
mod webhook;

pub use egress::{
    DEFAULT_REQUEST_TIMEOUT, Egress, EgressConfig, EgressError, StartSignal, StopOutcome, is_terminal, status, web_url,
};
pub use livekit_protocol as proto;
pub use webhook::{WebhookVerifier, WebhookVerifyError};
