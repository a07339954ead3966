//! Eventuall's media edge: clients for the two external video services and
//! faithful in-process simulators of both.
//!
//! # Layout
//!
//! - [`mux`]: our own Mux Video client (Mux ships no Rust SDK): live streams,
//!   assets, clips, retries that never replay a create, and `mux-signature`
//!   webhook verification.
//! - [`livekit`]: thin wrappers over the `livekit-api` crate: the web-egress
//!   client with our timeout/failover policy and Twirp error codes kept
//!   distinguishable, and a multi-key webhook verifier (key rotation).
//! - [`ai`]: a client for any OpenAI-compatible AI API: streamed chat
//!   (server-sent events), JSON completions, transcription; timeouts per
//!   chunk, retries only before the first chunk.
//! - [`sim`]: axum simulators of the Mux REST API and the LiveKit Egress Twirp
//!   API, linked by an in-process "RTMP bus" so an egress streaming to a Mux
//!   stream key drives that stream's state machine; with fault injection and
//!   inspection for tests. `src/bin/eventuall-sim.rs` runs them standalone.
//!
//! The wire shapes reproduced here are documented in
//! `shared/research/media.md`. This crate owns no domain logic: the recording
//! saga lives in the service and only calls these clients.

pub mod ai;
pub mod livekit;
pub mod mux;
pub mod sim;

pub(crate) mod time;
