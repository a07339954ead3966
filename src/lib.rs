//! Eventuall: an event-sourced CQRS backend for live events.
//!
//! # Layout
//!
//! - [`store`]: the event log on sqlx (SQLite and PostgreSQL): appends with
//!   expected versions, group commit, global positions, catch-up
//!   subscriptions, snapshots, hash chains, and cqrs-es on top. It alone
//!   names a database: everything else runs SQL through its executor and
//!   decodes events through its registry (ADR 0015). `store::archive` is
//!   its cold tier: older events in segment files on object storage, read
//!   back transparently (ADR 0017).
//! - [`archiving`]: when streams go cold (interviews by a durable timer,
//!   an event's streams by a sweep) and `eventuall archive …`.
//! - [`actor`]: one task per live aggregate (the Durable Object), retired
//!   when idle and rebuilt from snapshot + tail.
//! - [`host`]: the one actor shape (ADR 0019): an aggregate hosted by its
//!   actor, decided on live, one append per batch, then answers; the
//!   room, queue and interview actors share it.
//! - [`cluster`]: several nodes on one PostgreSQL (ADR 0020): a lease per
//!   event or user scope, actors started only by the lease holder, requests
//!   and sockets forwarded to the owner, takeover when it dies.
//! - [`timers`]: durable timers in the database (the DO alarm).
//! - [`clock`]: time as a dependency, so tests can move it.
//! - [`config`]: every setting as a flag and an environment variable.
//! - [`interviews`]: AI interview rooms (the second seed): the per-user
//!   directory and per-interview actors, AI calls, hints, rate limits.
//! - [`recording`]: the recording saga (process manager over Mux and
//!   LiveKit, one file per phase group in `recording/steps/`) and its
//!   durable command queue.
//! - [`analytics`]: per-event analytics read from the analytics projection.
//! - [`projections`]: the runner that keeps read models (presence,
//!   analytics, interviews) up to date from the log.
//! - [`rooms`], [`queues`]: the event room and collaborative queue actors.
//! - [`http`]: the axum routes and sockets; `http::ws` is the reader loop
//!   every socket shares (size and rate limits, silence), `http::party`
//!   the admission and writer, `http::openapi` the OpenAPI document
//!   (`GET /openapi.json`; the TypeScript client in `clients/ts` is
//!   generated from it).
//! - [`connections`]: the accept loop under the routes: header timeout,
//!   connection cap, `TCP_NODELAY`, graceful drain.
//! - [`auth`]: JWT checks; [`outlet`]: a connection's outbound queue.
//! - [`metrics`]: Prometheus metrics (`GET /metrics`).
//! - [`replay`]: audits and replays of the log (`eventuall replay …`):
//!   verify, rebuild, time travel, history, export, status.
//! - [`fuzzing`]: one checked entry per parser of outside input, shared by
//!   the `cargo fuzz` targets in `fuzz/` and `tests/fuzz_corpus.rs`.
//!
//! The domain (aggregates, commands, events) lives in the `eventuall-domain`
//! crate and knows nothing of IO; read models live in
//! `eventuall-projections`; Mux, LiveKit and AI clients and simulators in
//! `eventuall-media`. What the service promises, and the tests behind it:
//! `docs/RELIABILITY.md`.

pub mod actor;
pub mod analytics;
pub mod archiving;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod fuzzing;
pub mod host;
pub mod http;
pub mod interviews;
pub mod metrics;
pub mod outlet;
pub mod projections;
pub mod queues;
pub mod recording;
pub mod replay;
pub mod rooms;
pub mod server;
pub mod store;
pub mod timers;
pub mod tools;
