//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers'
//! `#[utoipa::path]` annotations and served at `GET /openapi.json` (no
//! token).
//!
//! Handlers that answer `json!` values, and the domain types that have no
//! schema of their own, are described here by schema-only types (they mirror
//! what the handlers and actors serialise; the contract is
//! `../shared/DESIGN.md`). The WebSocket messages are components too
//! (`EventRoomServerMessage`, `InterviewServerMessage`, …: `oneOf` unions
//! tagged by `type`); the socket routes are listed as `GET` with a 101
//! answer. `tests/api/openapi.rs` fails when a route is missing here.

use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToSchema};

use super::AppState;
use crate::interviews::QuotaRefusal;
use crate::interviews::frames::{InterviewJson, MessageJson};
use crate::recording::ClipView;
use crate::recording::db::CommandRow;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Eventuall",
        version = "1",
        description = "Event-sourced backend for live events (rooms, queues, recordings) and AI interviews. \
            HTTP routes take `Authorization: Bearer <jwt>` (HS256: `sub`, `exp`, optional `name`, \
            `role` = participant|moderator, `events` scope); sockets take `?token=<jwt>`, checked \
            before the upgrade. Errors are `{\"error\":{\"code\",\"message\"}}`. Times are integer \
            milliseconds since the Unix epoch. WebSocket messages are the `*Message` components.",
        license(name = "Apache-2.0")
    ),
    paths(
        super::healthz,
        super::metrics_text,
        openapi_json,
        super::rooms::short_token,
        super::rooms::snapshot,
        super::rooms::enter_stage,
        super::rooms::exit_stage,
        super::party::event_socket,
        super::queue::queue_socket,
        super::queue::view,
        super::queue::add,
        super::queue::move_entry,
        super::queue::promote,
        super::queue::remove,
        super::webhooks::livekit,
        super::recording::dead_letters,
        super::recording::retry_dead_letter,
        super::recording::start,
        super::recording::stop,
        super::recording::status,
        super::recording::clips,
        super::admin::projections,
        super::admin::history,
        super::admin::state,
        super::admin::analytics,
        super::console::console,
        super::interviews::list,
        super::interviews::create,
        super::interviews::details,
        super::interviews::rename,
        super::interviews::remove,
        super::interviews::ai_usage,
        super::interviews::interview_socket,
        super::interviews::user_socket,
    ),
    components(schemas(
        ErrorBody,
        ErrorCode,
        EventRoomServerMessage,
        EventRoomClientMessage,
        InterviewServerMessage,
        super::interviews::ClientMessage,
        UserInterviewsServerMessage,
        QueueEntry,
    )),
    modifiers(&SecuritySchemes, &UniqueOperationIds),
    tags(
        (name = "rooms", description = "Event rooms: presence, stage, snapshots"),
        (name = "queue", description = "The collaborative queue (Yjs)"),
        (name = "recording", description = "Recording sessions, clips and dead letters (`/cloudcaster`)"),
        (name = "interviews", description = "AI interviews (the interview contract)"),
        (name = "admin", description = "Operators and analytics"),
        (name = "ops", description = "Health, metrics and this document"),
        (name = "webhooks", description = "Inbound webhooks"),
    )
)]
pub struct ApiDoc;

/// The `bearer` (JWT) and `livekit` (LiveKit's signed webhook JWT) schemes.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some("HS256 JWT signed with EVENTUALL_JWT_SECRET"))
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        let livekit = ApiKeyValue::with_description(
            "Authorization",
            "LiveKit's webhook JWT (raw, `Bearer ` tolerated); its `sha256` claim covers the body",
        );
        components.add_security_scheme("livekit", SecurityScheme::ApiKey(ApiKey::Header(livekit)));
    }
}

/// Operation ids are the handlers' names, and two modules may both have a
/// `remove`, or one handler serve two methods: a repeated id gets its tag
/// as a prefix, then its method as a suffix (ids must be unique).
struct UniqueOperationIds;

impl Modify for UniqueOperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        fn operations(
            openapi: &mut utoipa::openapi::OpenApi,
        ) -> impl Iterator<Item = (&'static str, &mut utoipa::openapi::path::Operation)> {
            openapi.paths.paths.values_mut().flat_map(|item| {
                [
                    ("get", item.get.as_mut()),
                    ("put", item.put.as_mut()),
                    ("post", item.post.as_mut()),
                    ("delete", item.delete.as_mut()),
                    ("patch", item.patch.as_mut()),
                    ("head", item.head.as_mut()),
                    ("options", item.options.as_mut()),
                    ("trace", item.trace.as_mut()),
                ]
                .into_iter()
                .filter_map(|(method, op)| op.map(|op| (method, op)))
            })
        }
        fn repeated(openapi: &mut utoipa::openapi::OpenApi) -> std::collections::HashSet<String> {
            let mut seen = std::collections::HashMap::<String, usize>::new();
            for (_, op) in operations(openapi) {
                *seen.entry(op.operation_id.clone().unwrap_or_default()).or_default() += 1;
            }
            seen.into_iter().filter(|(_, n)| *n > 1).map(|(id, _)| id).collect()
        }
        let twice = repeated(openapi);
        for (_, op) in operations(openapi) {
            let id = op.operation_id.clone().unwrap_or_default();
            if twice.contains(&id) {
                let tag = op.tags.as_ref().and_then(|t| t.first()).cloned().unwrap_or_default();
                op.operation_id = Some(format!("{tag}_{id}"));
            }
        }
        let twice = repeated(openapi);
        for (method, op) in operations(openapi) {
            let id = op.operation_id.clone().unwrap_or_default();
            if twice.contains(&id) {
                op.operation_id = Some(format!("{id}_{method}"));
            }
        }
    }
}

/// The document as served.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
async fn openapi_json() -> impl IntoResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| document().to_json().expect("the OpenAPI document serialises"));
    ([(header::CONTENT_TYPE, "application/json")], json.as_str())
}

// ---- Errors ----------------------------------------------------------------

/// Every error answer: `{"error":{"code","message"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// Human-readable; 5xx messages never carry internal details.
    pub message: String,
    /// AI rate limit (429 of the interview routes): the quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// AI rate limit: requests left (0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u32>,
    /// AI rate limit: when the quota frees up (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_at: Option<i64>,
}

/// The stable error codes of HTTP answers and WebSocket `error` frames
/// (`unknown_message_type` and `unsupported_frame` are frames only).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidJson,
    InvalidRequest,
    UnknownMessageType,
    UnsupportedFrame,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    Internal,
}

/// `invalid_request` (bad id, body or parameter) or `invalid_json`.
#[derive(IntoResponses)]
#[response(status = 400)]
pub struct E400(pub ErrorBody);

/// `unauthorized`: missing, malformed, badly signed or expired token.
#[derive(IntoResponses)]
#[response(status = 401)]
pub struct E401(pub ErrorBody);

/// `forbidden`: the token's `events` scope excludes the event, or its role is too low.
#[derive(IntoResponses)]
#[response(status = 403)]
pub struct E403(pub ErrorBody);

/// `not_found`.
#[derive(IntoResponses)]
#[response(status = 404)]
pub struct E404(pub ErrorBody);

/// `conflict`: the request clashes with the current state.
#[derive(IntoResponses)]
#[response(status = 409)]
pub struct E409(pub ErrorBody);

/// `payload_too_large`: the body is over EVENTUALL_MAX_BODY_BYTES.
#[derive(IntoResponses)]
#[response(status = 413)]
pub struct E413(pub ErrorBody);

/// `rate_limited`: the user's AI quota is used up (`limit`, `remaining`, `resetAt`).
#[derive(IntoResponses)]
#[response(status = 429, headers(("Retry-After" = String, description = "Seconds until the quota frees up")))]
pub struct E429(pub ErrorBody);

/// `internal`: logged on the server; no details are sent.
#[derive(IntoResponses)]
#[response(status = 500)]
pub struct E500(pub ErrorBody);

/// `unavailable`: a dependency is down or the service is shutting down; try again.
#[derive(IntoResponses)]
#[response(status = 503)]
pub struct E503(pub ErrorBody);

// ---- Parameters --------------------------------------------------------------

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EventPath {
    /// The event id, `[A-Za-z0-9_-]{1,128}` (else 400).
    #[param(pattern = "^[A-Za-z0-9_-]{1,128}$")]
    pub event_id: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct StreamPath {
    /// A stream id, `{category}-{id}` (e.g. `room-launch`, `interview-…`; else 400).
    /// Printable ASCII, at most 200 characters, a non-empty category before the first `-`.
    #[param(pattern = "^[!-,.-~]+-[!-~]+$", max_length = 200)]
    pub stream_id: String,
}

/// The streams `…/state` can rebuild: `crate::replay::state::STATE_CATEGORIES`
/// (other categories get 400; a unit test keeps the pattern in step).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct StatePath {
    /// A stream id of a room, queue, interview or user's interviews (`room-launch`, …).
    #[param(pattern = "^(room|queue|interview|user_interviews)-[!-~]+$", max_length = 200)]
    pub stream_id: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AtQuery {
    /// A global position (`1234`), a time in milliseconds (`1764000000000ms`)
    /// or an RFC 3339 time in UTC (`2026-11-23T18:30:00Z`); the stream's
    /// latest state when absent (else 400).
    #[param(
        pattern = r"^\s*(-?[0-9]+|-?[0-9]+\s*ms|[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z?)\s*$"
    )]
    pub at: Option<String>,
}

/// `GET /admin/streams/{streamId}/history`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamHistory {
    pub stream_id: String,
    /// Events in the stream.
    pub events: u64,
    /// More events than `entries` holds (the newest 2,000 are kept).
    pub truncated: bool,
    pub entries: Vec<crate::replay::history::HistoryEntry>,
}

/// An interview id: 1 to 128 printable ASCII characters (anything else is
/// no interview: 404).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct InterviewPath {
    /// The interview id.
    #[param(pattern = "^[!-~]{1,128}$")]
    pub id: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CommandPath {
    /// The dead letter's command id.
    pub command_id: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// The user id; must be the token's `sub`.
    #[param(pattern = "^[!-~]{1,128}$")]
    pub user_id: String,
}

/// What every socket takes in its query string; other parameters are accepted and ignored.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SocketQuery {
    /// The JWT, checked before the upgrade (401 / 403).
    pub token: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PartyQuery {
    /// The JWT, checked before the upgrade (401 / 403).
    pub token: String,
    /// partysocket's client connection id (may repeat across reconnects).
    pub _pk: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AiUsageQuery {
    /// Whose usage (moderators only for another user); the caller's when absent.
    #[param(rename = "userId")]
    pub user_id: Option<String>,
}

/// `skills` of `CreateInterviewRequest`: strings of at most 100 characters
/// (the derive has no per-item limits).
pub fn skills_schema() -> utoipa::openapi::schema::Array {
    let item = utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .max_length(Some(eventuall_domain::interview::MAX_SKILL_CHARS));
    utoipa::openapi::schema::ArrayBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            utoipa::openapi::schema::Type::Array,
            utoipa::openapi::schema::Type::Null,
        ]))
        .items(item)
        .description(Some(format!(
            "Each at most {} characters once trimmed; blanks and case-insensitive repeats are dropped, and the \
             first {} kept.",
            eventuall_domain::interview::MAX_SKILL_CHARS,
            eventuall_domain::interview::MAX_SKILLS
        )))
        .build()
}

// ---- Bodies the handlers build with `json!` -----------------------------------

/// `GET|POST /auth/token`: a 5-minute token with the caller's claims.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShortToken {
    pub token: String,
    /// Expiry, ms since the epoch.
    pub expires_at: i64,
}

/// The room snapshot (also the `snapshot` frame without its `type`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomSnapshot {
    pub event_id: String,
    /// The room stream's version: never decreases; 0 for a never-used room.
    pub version: u64,
    pub presence: Vec<PresenceEntry>,
    pub stage: Vec<StageEntry>,
    /// The room's recording; null when none (also while its clips are cut after a stop).
    pub recording: Option<RecordingInfo>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEntry {
    pub user_id: String,
    /// The token's `name` claim, else the user id.
    pub name: String,
    pub status: PresenceStatus,
    /// Open connections (sockets and LiveKit); 0 once offline.
    pub connections: u64,
    pub last_seen: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    Online,
    Away,
    Offline,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageEntry {
    pub user_id: String,
    pub since: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingInfo {
    pub session_id: String,
    pub status: RecordingStatus,
    /// When the recording started; while `starting`, when it was requested.
    pub started_at: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordingStatus {
    Starting,
    Recording,
    Stopping,
}

/// The queue: two lists of `{userId, name}`.
#[derive(Serialize, ToSchema)]
pub struct QueueView {
    pub pending: Vec<QueueEntry>,
    pub live: Vec<QueueEntry>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueEntry {
    pub user_id: String,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueueList {
    Pending,
    Live,
}

/// `POST /webhooks/livekit`.
#[derive(Serialize, ToSchema)]
pub struct WebhookOutcome {
    pub status: WebhookStatus,
}

/// `applied` (presence changed), `ignored` (not a presence event) or
/// `duplicate` (this delivery id was applied before).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookStatus {
    Applied,
    Ignored,
    Duplicate,
}

/// 202 of `start` / `stop`: the durable command was queued.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandQueued {
    pub command_id: String,
    pub status: QueuedStatus,
    /// `start` only: the new session's id (the command id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueuedStatus {
    Queued,
}

/// A retried dead letter, pending again.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryAccepted {
    pub command_id: String,
    pub status: PendingStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PendingStatus {
    Pending,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterList {
    /// Commands that exhausted their retries (of the token's events only, when scoped).
    pub dead_letters: Vec<CommandRow>,
}

/// The clips of an event; `start` and `end` in seconds from the recording's start.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClipList {
    pub event_id: String,
    pub clips: Vec<ClipView>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClipStatus {
    Requested,
    Preparing,
    Ready,
    Errored,
}

#[derive(Serialize, ToSchema)]
pub enum InterviewState {
    #[serde(rename = "idle")]
    Idle,
    #[serde(rename = "ai.extracting.skills")]
    ExtractingSkills,
    #[serde(rename = "ai.generating.message")]
    GeneratingMessage,
    #[serde(rename = "ai.transcribing.text")]
    TranscribingText,
    #[serde(rename = "ai.generating.hint")]
    GeneratingHint,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    User,
    Ai,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Question,
    Answer,
    Hint,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Streaming,
    Complete,
    Failed,
}

/// `GET /api/interviews`: newest first.
#[derive(Serialize, ToSchema)]
pub struct InterviewList {
    /// Always true.
    pub success: bool,
    pub interviews: Vec<InterviewJson>,
}

/// One interview (create, rename).
#[derive(Serialize, ToSchema)]
pub struct InterviewEnvelope {
    /// Always true.
    pub success: bool,
    pub interview: InterviewJson,
}

/// One interview and its messages, oldest first (a message being streamed is last).
#[derive(Serialize, ToSchema)]
pub struct InterviewDetails {
    /// Always true.
    pub success: bool,
    pub interview: InterviewJson,
    pub messages: Vec<MessageJson>,
}

// ---- WebSocket messages ---------------------------------------------------------

/// A text frame the server sends on `/parties/event/{event_id}`.
#[derive(Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventRoomServerMessage {
    /// The whole room: the first frame after every (re)connect, then after
    /// every change (coalesced).
    Snapshot(RoomSnapshot),
    /// A refused frame (`invalid_json`, `invalid_request`,
    /// `unknown_message_type`, `unsupported_frame`, `rate_limited`); the
    /// socket stays open.
    Error { code: ErrorCode, message: String },
}

/// A text frame a client sends on `/parties/event/{event_id}`.
#[derive(Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventRoomClientMessage {
    /// Keeps the user `online` (`away` after the away timeout without one).
    Heartbeat,
}

/// A text frame the server sends on `/parties/interview/{id}`.
#[derive(Serialize, ToSchema)]
#[serde(tag = "type")]
pub enum InterviewServerMessage {
    /// The first frame after every (re)connect, then on every change.
    #[serde(rename = "INTERVIEW_STATE")]
    InterviewState { state: InterviewState },
    /// An upsert by `id`: a streamed reply repeats its id with the whole
    /// text so far, `status` `streaming` then `complete` or `failed`.
    #[serde(rename = "INTERVIEW_MESSAGE")]
    InterviewMessage(MessageJson),
    #[serde(rename = "INTERVIEW_UPDATED")]
    InterviewUpdated {
        #[serde(rename = "interviewId")]
        interview_id: String,
    },
    /// The user's AI quota is used up; the answer was not stored.
    #[serde(rename = "RATELIMIT")]
    RateLimit(QuotaRefusal),
    /// A refused frame (`conflict` while the AI works, `invalid_json`, …);
    /// the socket stays open.
    #[serde(rename = "error")]
    Error { code: ErrorCode, message: String },
}

/// A text frame the server sends on `/parties/user-interviews/{user_id}`
/// (the socket only sends: a client frame gets an `error` frame).
#[derive(Serialize, ToSchema)]
#[serde(tag = "type")]
pub enum UserInterviewsServerMessage {
    #[serde(rename = "INTERVIEW_CREATED")]
    InterviewCreated {
        #[serde(rename = "interviewId")]
        interview_id: String,
    },
    #[serde(rename = "INTERVIEW_UPDATED")]
    InterviewUpdated {
        #[serde(rename = "interviewId")]
        interview_id: String,
    },
    #[serde(rename = "INTERVIEW_DELETED")]
    InterviewDeleted {
        #[serde(rename = "interviewId")]
        interview_id: String,
    },
    #[serde(rename = "error")]
    Error { code: ErrorCode, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<T: Serialize>(values: &[T]) -> Vec<String> {
        values.iter().map(|v| serde_json::to_value(v).unwrap().as_str().unwrap().to_owned()).collect()
    }

    /// The schema-only mirrors of domain enums name the same values as the
    /// domain types serialise.
    #[test]
    fn mirrored_enums_match_the_domain() {
        use eventuall_domain::interview as i;
        use eventuall_domain::room as r;
        assert_eq!(
            names(&[r::PresenceStatus::Online, r::PresenceStatus::Away, r::PresenceStatus::Offline]),
            names(&[PresenceStatus::Online, PresenceStatus::Away, PresenceStatus::Offline])
        );
        assert_eq!(
            names(&[r::RecordingStatus::Starting, r::RecordingStatus::Recording, r::RecordingStatus::Stopping]),
            names(&[RecordingStatus::Starting, RecordingStatus::Recording, RecordingStatus::Stopping])
        );
        assert_eq!(
            names(&[
                i::InterviewState::Idle,
                i::InterviewState::ExtractingSkills,
                i::InterviewState::GeneratingMessage,
                i::InterviewState::TranscribingText,
                i::InterviewState::GeneratingHint
            ]),
            names(&[
                InterviewState::Idle,
                InterviewState::ExtractingSkills,
                InterviewState::GeneratingMessage,
                InterviewState::TranscribingText,
                InterviewState::GeneratingHint
            ])
        );
        assert_eq!(names(&[i::MessageRole::User, i::MessageRole::Ai]), names(&[MessageRole::User, MessageRole::Ai]));
        assert_eq!(
            names(&[i::MessageType::Question, i::MessageType::Answer, i::MessageType::Hint]),
            names(&[MessageType::Question, MessageType::Answer, MessageType::Hint])
        );
        assert_eq!(
            names(&[i::MessageStatus::Streaming, i::MessageStatus::Complete, i::MessageStatus::Failed]),
            names(&[MessageStatus::Streaming, MessageStatus::Complete, MessageStatus::Failed])
        );
        use eventuall_domain::recording::ClipStatus as C;
        assert_eq!(
            names(&[C::Requested, C::Preparing, C::Ready, C::Errored]),
            names(&[ClipStatus::Requested, ClipStatus::Preparing, ClipStatus::Ready, ClipStatus::Errored])
        );
        use eventuall_domain::queue::QueueList as Q;
        assert_eq!(names(&[Q::Pending, Q::Live]), names(&[QueueList::Pending, QueueList::Live]));
    }

    /// A snapshot the domain renders fits the mirrored `RoomSnapshot` field names.
    #[test]
    fn the_snapshot_mirror_has_the_domain_fields() {
        let snapshot = RoomSnapshot {
            event_id: "e".into(),
            version: 1,
            presence: vec![PresenceEntry {
                user_id: "u".into(),
                name: "n".into(),
                status: PresenceStatus::Online,
                connections: 1,
                last_seen: 2,
            }],
            stage: vec![StageEntry { user_id: "u".into(), since: 3 }],
            recording: Some(RecordingInfo {
                session_id: "s".into(),
                status: RecordingStatus::Recording,
                started_at: 4,
            }),
        };
        let domain = eventuall_domain::room::RoomSnapshot {
            event_id: "e".into(),
            version: 1,
            presence: vec![eventuall_domain::room::PresenceEntry {
                user_id: "u".into(),
                name: "n".into(),
                status: eventuall_domain::room::PresenceStatus::Online,
                connections: 1,
                last_seen: 2,
            }],
            stage: vec![eventuall_domain::room::StageEntry { user_id: "u".into(), since: 3 }],
            recording: Some(eventuall_domain::room::RecordingInfo {
                session_id: "s".into(),
                status: eventuall_domain::room::RecordingStatus::Recording,
                started_at: 4,
            }),
        };
        assert_eq!(serde_json::to_value(snapshot).unwrap(), serde_json::to_value(domain).unwrap());
    }

    /// The length limits the document states are the ones the handlers and
    /// the domain enforce (schemathesis generates from the document, the
    /// typed client validates nothing: a drift shows only here).
    #[test]
    fn documented_limits_are_the_enforced_ones() {
        use eventuall_domain::interview::{
            MAX_ANSWER_CHARS, MAX_JOB_DESCRIPTION_CHARS, MAX_SKILL_CHARS, MAX_TITLE_CHARS, StreamKey,
        };
        let doc = serde_json::to_value(document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for body in ["StageRequest", "QueueAddRequest", "QueueMoveRequest", "QueueUserRequest"] {
            let user_id = &schemas[body]["properties"]["userId"];
            assert_eq!(user_id["minLength"], 1, "{body}: {user_id}");
            assert_eq!(user_id["maxLength"], super::super::extract::MAX_USER_ID_CHARS, "{body}: {user_id}");
        }
        for body in ["CreateInterviewRequest", "RenameInterviewRequest"] {
            let title = &schemas[body]["properties"]["title"];
            assert_eq!(title["minLength"], 1, "{body}: {title}");
            assert_eq!(title["maxLength"], MAX_TITLE_CHARS, "{body}: {title}");
        }
        let create = &schemas["CreateInterviewRequest"]["properties"];
        assert_eq!(create["jobDescription"]["maxLength"], MAX_JOB_DESCRIPTION_CHARS, "{create}");
        assert_eq!(create["skills"]["items"]["maxLength"], MAX_SKILL_CHARS, "{create}");
        let answer = schemas["InterviewClientMessage"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["properties"]["type"]["enum"][0] == "USER_MESSAGE")
            .expect("USER_MESSAGE is documented");
        assert_eq!(answer["properties"]["content"]["maxLength"], MAX_ANSWER_CHARS, "{answer}");
        let key = format!("^[!-~]{{1,{}}}$", StreamKey::MAX_LEN);
        for (path, param) in [("/api/interviews/{id}", "id"), ("/parties/user-interviews/{user_id}", "user_id")] {
            let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
            let p = params.iter().find(|p| p["name"] == param).unwrap();
            assert_eq!(p["schema"]["pattern"], key, "{path}");
        }
        let state = &doc["paths"]["/admin/streams/{stream_id}/state"]["get"]["parameters"][0]["schema"]["pattern"];
        let categories = crate::replay::state::STATE_CATEGORIES.join("|");
        assert_eq!(state.as_str().unwrap(), format!("^({categories})-[!-~]+$"));
        let event = doc["paths"]["/event/{event_id}/snapshot"]["get"]["parameters"][0]["schema"]["pattern"].clone();
        assert_eq!(event, format!("^[A-Za-z0-9_-]{{1,{}}}$", eventuall_domain::EventId::MAX_LEN));
    }

    /// Every code `ApiError` answers is in `ErrorCode`.
    #[test]
    fn every_api_error_code_is_documented() {
        let doc = serde_json::to_value(document()).unwrap();
        let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
        for error in [
            super::super::ApiError::InvalidRequest(String::new()),
            super::super::ApiError::InvalidJson(String::new()),
            super::super::ApiError::Unauthorized,
            super::super::ApiError::Forbidden(String::new()),
            super::super::ApiError::NotFound(String::new()),
            super::super::ApiError::Conflict(String::new()),
            super::super::ApiError::PayloadTooLarge,
            super::super::ApiError::RateLimited,
            super::super::ApiError::Unavailable(String::new()),
            super::super::ApiError::Internal(anyhow::anyhow!("x")),
        ] {
            assert!(codes.as_array().unwrap().contains(&error.code().into()), "{} is not documented", error.code());
        }
    }
}
