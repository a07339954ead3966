//! End-to-end tests of the HTTP and WebSocket API: the real service on a
//! random port with a fresh database, driven by real HTTP and WebSocket
//! clients.

mod auth_matrix;
mod bounds;
mod console;
mod error_codes;
mod helpers;
mod hostile;
mod interviews;
mod metrics;
mod openapi;
mod projections;
mod queue;
mod recording;
mod recording_crash;
mod replay;
mod rooms;
mod webhooks;
