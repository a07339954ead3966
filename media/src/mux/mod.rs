//! Mux Video: our own client (Mux has no Rust SDK) and webhook verification.
//!
//! - `client`: [`MuxClient`] and its retry policy (POSTs are never replayed).
//! - `types`: the REST resources, tolerant of unknown fields.
//! - `error`: [`MuxError`], mapped from Mux's error envelope.
//! - `webhook`: [`verify_webhook`] for `mux-signature`.

mod client;
mod error;
mod types;
mod webhook;

pub use client::{MuxClient, MuxConfig, RetryPolicy};
pub use error::MuxError;
pub use types::{
    Asset, AssetErrors, AssetStatus, CreateClip, CreateLiveStream, LatencyMode, LiveStream, LiveStreamStatus,
    NewAssetSettings, PlaybackId, PlaybackPolicy,
};
pub use webhook::{
    DEFAULT_TOLERANCE, MuxWebhookError, MuxWebhookEvent, MuxWebhookObject, sign_webhook, verify_webhook,
};
