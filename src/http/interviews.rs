//! The interview contract's routes: `/api/interviews…` (Bearer token) and
//! the two party sockets, `/parties/interview/{id}` and
//! `/parties/user-interviews/{userId}` (`?token=`, checked before the
//! upgrade). Only an interview's owner reads or writes it: anyone else gets
//! 403, or 404 if it does not exist.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;

use super::extract::{ApiJson, Authenticated};
use super::openapi as oa;
use super::party::accept_protocols;
use super::ws::{self, FrameLimits, Frames, error_frame};
use super::{ApiError, AppState};
use crate::actor::ActorHandle;
use crate::auth::Caller;
use crate::interviews::usage::AiUsage;
use crate::interviews::{DirectoryMsg, Failure, InterviewMsg, Interviews, NewInterview};
use crate::outlet::Outlet;
use crate::rooms::actor::new_connection_id;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/interviews", get(list).post(create))
        .route("/api/interviews/{id}", get(details).patch(rename).delete(remove))
        .route("/analytics/ai", get(ai_usage))
        .route("/parties/interview/{id}", get(interview_socket))
        .route("/parties/user-interviews/{user_id}", get(user_socket))
}

/// An interview failure as the HTTP API answers it.
pub struct InterviewError(Failure);

impl From<Failure> for InterviewError {
    fn from(failure: Failure) -> Self {
        Self(failure)
    }
}

impl IntoResponse for InterviewError {
    fn into_response(self) -> Response {
        match self.0 {
            Failure::NotFound => ApiError::NotFound("no such interview".into()).into_response(),
            Failure::Forbidden => ApiError::Forbidden("this interview belongs to someone else".into()).into_response(),
            Failure::Invalid(message) => ApiError::InvalidRequest(message).into_response(),
            failure @ Failure::Busy(_) => ApiError::Conflict(failure.to_string()).into_response(),
            Failure::Unavailable => {
                ApiError::Unavailable("the interview service is unavailable".into()).into_response()
            }
            Failure::RateLimited(quota) => {
                metrics::counter!(crate::metrics::RATE_LIMITED, "limit" => "ai").increment(1);
                let retry_after_ms = (quota.reset_at - crate::store::now_millis()).max(0);
                let retry_after = ((retry_after_ms + 999) / 1000).max(1).to_string();
                let body = json!({"error": {
                    "code": "rate_limited",
                    "message": format!("the AI request limit of {} is used up", quota.limit),
                    "limit": quota.limit,
                    "remaining": quota.remaining,
                    "resetAt": quota.reset_at,
                }});
                let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
                if let Ok(value) = HeaderValue::from_str(&retry_after) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
        }
    }
}

type InterviewResult<T> = Result<T, InterviewError>;

/// The caller's interviews, newest first.
#[utoipa::path(get, path = "/api/interviews", tag = "interviews", security(("bearer" = [])),
    responses((status = 200, body = oa::InterviewList), oa::E401, oa::E503))]
async fn list(State(app): State<AppState>, Authenticated(caller): Authenticated) -> InterviewResult<Response> {
    let interviews = app.interviews.list(caller.user_id()).await?;
    Ok(Json(json!({"success": true, "interviews": interviews})).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = CreateInterviewRequest)]
pub(crate) struct CreateRequest {
    /// 1 to 200 characters once trimmed (not only whitespace).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub(crate) title: String,
    /// At most 20,000 characters.
    #[serde(default)]
    #[schema(max_length = 20000)]
    pub(crate) job_description: Option<String>,
    /// Described by `oa::skills_schema` (the derive has no per-item limits).
    #[serde(default)]
    #[schema(schema_with = oa::skills_schema)]
    pub(crate) skills: Option<Vec<String>>,
}

/// Creates an interview; with a job description and no skills the AI extracts skills first.
#[utoipa::path(post, path = "/api/interviews", tag = "interviews", security(("bearer" = [])), request_body = CreateRequest,
    responses((status = 201, body = oa::InterviewEnvelope), oa::E400, oa::E401, oa::E409, oa::E413, oa::E429, oa::E503))]
async fn create(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<CreateRequest>,
) -> InterviewResult<Response> {
    let new = NewInterview {
        title: body.title,
        job_description: body.job_description.unwrap_or_default(),
        skills: body.skills.unwrap_or_default(),
    };
    let interview = app.interviews.create(caller.user_id(), new).await?;
    Ok((StatusCode::CREATED, Json(json!({"success": true, "interview": interview}))).into_response())
}

/// An interview and its messages (owner only).
#[utoipa::path(get, path = "/api/interviews/{id}", tag = "interviews", params(oa::InterviewPath), security(("bearer" = [])),
    responses((status = 200, body = oa::InterviewDetails), oa::E401, oa::E403, oa::E404, oa::E503))]
async fn details(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> InterviewResult<Response> {
    let (interview, messages) = app.interviews.get(caller.user_id(), &id).await?;
    Ok(Json(json!({"success": true, "interview": interview, "messages": messages})).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = RenameInterviewRequest)]
pub(crate) struct RenameRequest {
    /// 1 to 200 characters once trimmed (not only whitespace).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub(crate) title: Option<String>,
}

/// Renames an interview (owner only); without `title` it answers it unchanged.
#[utoipa::path(patch, path = "/api/interviews/{id}", tag = "interviews", params(oa::InterviewPath), security(("bearer" = [])),
    request_body = RenameRequest,
    responses((status = 200, body = oa::InterviewEnvelope), oa::E400, oa::E401, oa::E403, oa::E404, oa::E413, oa::E503))]
async fn rename(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RenameRequest>,
) -> InterviewResult<Response> {
    let interview = match body.title {
        Some(title) => app.interviews.rename(caller.user_id(), &id, title).await?,
        None => app.interviews.get(caller.user_id(), &id).await?.0,
    };
    Ok(Json(json!({"success": true, "interview": interview})).into_response())
}

/// Deletes an interview (owner only; its streams stay for the audit).
#[utoipa::path(delete, path = "/api/interviews/{id}", tag = "interviews", params(oa::InterviewPath), security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), oa::E401, oa::E403, oa::E404, oa::E409, oa::E503))]
async fn remove(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> InterviewResult<StatusCode> {
    app.interviews.delete(caller.user_id(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's AI usage; a moderator may ask for anyone's (`?userId=`).
#[utoipa::path(get, path = "/analytics/ai", tag = "interviews", params(oa::AiUsageQuery), security(("bearer" = [])),
    responses((status = 200, body = AiUsage), oa::E401, oa::E403, oa::E500, oa::E503))]
async fn ai_usage(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let user_id = match query.get("userId").cloned() {
        Some(user) if user != caller.user_id() && !caller.is_moderator() => {
            return Err(ApiError::Forbidden("only moderators read other users' AI usage".into()));
        }
        Some(user) => user,
        None => caller.user_id().to_owned(),
    };
    let usage = crate::interviews::usage::ai_usage(&app.store, &user_id).await?;
    Ok(Json(usage).into_response())
}

/// `?token=` of a socket: 401 for a missing or bad token.
fn socket_caller(app: &AppState, params: &HashMap<String, String>) -> Result<Caller, ApiError> {
    let token = params.get("token").ok_or(ApiError::Unauthorized)?;
    Ok(app.auth.verify(token)?)
}

fn expect_upgrade(upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>) -> Result<WebSocketUpgrade, ApiError> {
    upgrade.map_err(|_| ApiError::InvalidRequest("expected a WebSocket upgrade".into()))
}

/// WebSocket (owner only): server frames are `InterviewServerMessage` (`INTERVIEW_STATE`
/// first), client frames `InterviewClientMessage`; a binary frame is one recorded audio answer.
#[utoipa::path(get, path = "/parties/interview/{id}", tag = "interviews", params(oa::InterviewPath, oa::SocketQuery),
    responses((status = 101, description = "Switching to the WebSocket protocol"), oa::E400, oa::E401, oa::E403, oa::E404, oa::E503))]
async fn interview_socket(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let caller = match socket_caller(&app, &params) {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(failure) = app.interviews.authorize(caller.user_id(), &id).await {
        return InterviewError(failure).into_response();
    }
    let upgrade = match expect_upgrade(upgrade) {
        Ok(upgrade) => upgrade,
        Err(refusal) => return refusal.into_response(),
    };
    let max_audio = app.interviews.settings().max_audio_bytes;
    let upgrade = accept_protocols(upgrade, &headers).max_message_size(max_audio.saturating_add(64 * 1024));
    upgrade.on_upgrade(move |socket| serve_interview(app, id, socket))
}

/// A text frame a client may send on `/parties/interview/{id}` (a binary
/// frame is one recorded audio answer, ≤ EVENTUALL_MAX_AUDIO_BYTES). The
/// type the socket reads frames into is also the OpenAPI document's schema.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = InterviewClientMessage)]
#[serde(tag = "type")]
pub(crate) enum ClientMessage {
    /// Answered by one `INTERVIEW_MESSAGE` per stored message, oldest first,
    /// on this connection only.
    #[serde(rename = "GET_ALL_MESSAGES")]
    GetAllMessages,
    /// A typed answer: 1 to 20,000 characters once trimmed.
    #[serde(rename = "USER_MESSAGE")]
    UserMessage {
        #[schema(min_length = 1, max_length = 20000, pattern = r"\S")]
        content: String,
    },
    /// Resets the hint timer.
    #[serde(rename = "USER_TYPING")]
    UserTyping,
    /// Resets the hint timer.
    #[serde(rename = "USER_RECORDING")]
    UserRecording,
}

/// What a text frame asks for, or the error frame that answers it (also
/// the entry of the `interview_frame` fuzz target, `crate::fuzzing`).
pub(crate) fn classify(text: &str) -> Result<ClientMessage, crate::outlet::Outbound> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| error_frame("invalid_json", "frames must be JSON text"))?;
    let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
        return Err(error_frame("invalid_request", "a message needs a string \"type\""));
    };
    if !matches!(kind, "GET_ALL_MESSAGES" | "USER_MESSAGE" | "USER_TYPING" | "USER_RECORDING") {
        return Err(error_frame("unknown_message_type", &format!("unknown message type {kind:?}")));
    }
    serde_json::from_value(value).map_err(|_| error_frame("invalid_request", "USER_MESSAGE needs a string \"content\""))
}

struct InterviewFrames {
    interview: ActorHandle<InterviewMsg>,
    connection_id: String,
}

impl Frames for InterviewFrames {
    async fn text(&mut self, text: Utf8Bytes, outlet: &Outlet) {
        let connection_id = self.connection_id.clone();
        let msg = match classify(&text) {
            Ok(ClientMessage::GetAllMessages) => InterviewMsg::GetAllMessages { connection_id },
            Ok(ClientMessage::UserMessage { content }) => InterviewMsg::Answer { connection_id, content },
            Ok(ClientMessage::UserTyping | ClientMessage::UserRecording) => InterviewMsg::Activity { connection_id },
            Err(error) => {
                let _ = outlet.try_send(error);
                return;
            }
        };
        self.interview.send(msg).await;
    }

    async fn binary(&mut self, audio: Bytes, _: &Outlet) {
        let msg = InterviewMsg::Audio { connection_id: self.connection_id.clone(), audio };
        self.interview.send(msg).await;
    }

    async fn closed(&mut self, _: bool) {
        let connection_id = std::mem::take(&mut self.connection_id);
        self.interview.send(InterviewMsg::Disconnect { connection_id }).await;
    }
}

async fn serve_interview(app: AppState, interview_id: String, mut socket: WebSocket) {
    let connection_id = new_connection_id();
    let (outlet, queue) = Outlet::new();
    let (reply, joined) = oneshot::channel();
    let connect = InterviewMsg::Connect { connection_id: connection_id.clone(), outlet: outlet.clone(), reply };
    app.interviews.to_interview(&interview_id, connect).await;
    if !matches!(joined.await, Ok(Ok(()))) {
        ws::close_now(&mut socket, 1011, "interview unavailable").await;
        return;
    }
    let limits = FrameLimits::json(
        ws::SocketKind::Interview,
        app.limits.max_frame_bytes,
        app.interviews.settings().max_audio_bytes,
        app.limits.frame_rate,
    )
    .writes_within(app.limits.write_timeout);
    let mut frames = InterviewFrames { interview: app.interviews.interview_handle(&interview_id), connection_id };
    ws::serve(socket, outlet, queue, limits, &mut frames).await;
}

/// WebSocket of one user (that user only): server frames are `UserInterviewsServerMessage`.
#[utoipa::path(get, path = "/parties/user-interviews/{user_id}", tag = "interviews", params(oa::UserPath, oa::SocketQuery),
    responses((status = 101, description = "Switching to the WebSocket protocol"), oa::E400, oa::E401, oa::E403))]
async fn user_socket(
    State(app): State<AppState>,
    Path(user_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let caller = match socket_caller(&app, &params) {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(),
    };
    if caller.user_id() != user_id {
        return ApiError::Forbidden("this is another user's socket".into()).into_response();
    }
    let upgrade = match expect_upgrade(upgrade) {
        Ok(upgrade) => upgrade,
        Err(refusal) => return refusal.into_response(),
    };
    accept_protocols(upgrade, &headers).on_upgrade(move |socket| serve_user(app, user_id, socket))
}

/// The user socket only listens; whatever a client sends gets an error.
struct UserFrames {
    interviews: Interviews,
    user_id: String,
    connection_id: String,
}

impl Frames for UserFrames {
    async fn text(&mut self, _: Utf8Bytes, outlet: &Outlet) {
        let _ = outlet.try_send(error_frame("unknown_message_type", "this socket only sends"));
    }

    async fn binary(&mut self, _: Bytes, outlet: &Outlet) {
        let _ = outlet.try_send(error_frame("unsupported_frame", "this socket speaks JSON text frames"));
    }

    async fn closed(&mut self, _: bool) {
        let connection_id = std::mem::take(&mut self.connection_id);
        self.interviews.to_directory(&self.user_id, DirectoryMsg::Disconnect { connection_id }).await;
    }
}

async fn serve_user(app: AppState, user_id: String, socket: WebSocket) {
    let connection_id = new_connection_id();
    let (outlet, queue) = Outlet::new();
    let connect = DirectoryMsg::Connect { connection_id: connection_id.clone(), outlet: outlet.clone() };
    app.interviews.to_directory(&user_id, connect).await;
    let limits = FrameLimits::json(
        ws::SocketKind::UserInterviews,
        app.limits.max_frame_bytes,
        app.limits.max_frame_bytes,
        app.limits.frame_rate,
    )
    .writes_within(app.limits.write_timeout);
    let mut frames = UserFrames { interviews: app.interviews.clone(), user_id, connection_id };
    ws::serve(socket, outlet, queue, limits, &mut frames).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outlet::Outbound;
    use proptest::prelude::*;

    fn code_of(frame: Outbound) -> String {
        match frame {
            Outbound::Text(text) => {
                serde_json::from_str::<serde_json::Value>(&text).unwrap()["code"].as_str().unwrap().to_owned()
            }
            other => panic!("not a text frame: {other:?}"),
        }
    }

    proptest! {
        /// Any text, and any JSON object with any `type` and `content`, is
        /// classified without a panic; a refusal is an error frame with one
        /// of the contract's codes.
        #[test]
        fn any_text_frame_is_classified_or_refused_with_a_known_code(
            text in prop_oneof![
                ".{0,200}",
                ("(GET_ALL_MESSAGES|USER_MESSAGE|USER_TYPING|USER_RECORDING|[A-Z_]{0,12})", prop::option::of(".{0,40}"))
                    .prop_map(|(kind, content)| serde_json::json!({"type": kind, "content": content}).to_string()),
            ]
        ) {
            if let Err(frame) = classify(&text) {
                let code = code_of(frame);
                prop_assert!(
                    ["invalid_json", "invalid_request", "unknown_message_type"].contains(&code.as_str()),
                    "{}", code
                );
            }
        }
    }

    #[test]
    fn client_frames_are_read_like_the_seed_sends_them_and_bad_ones_get_their_codes() {
        assert!(matches!(classify(r#"{"type":"GET_ALL_MESSAGES"}"#), Ok(ClientMessage::GetAllMessages)));
        assert!(
            matches!(classify(r#"{"type":"USER_MESSAGE","content":"hi"}"#), Ok(ClientMessage::UserMessage { content }) if content == "hi")
        );
        assert!(matches!(classify(r#"{"type":"USER_TYPING"}"#), Ok(ClientMessage::UserTyping)));
        assert!(matches!(classify(r#"{"type":"USER_RECORDING","extra":1}"#), Ok(ClientMessage::UserRecording)));
        assert_eq!(code_of(classify("not json").err().unwrap()), "invalid_json");
        assert_eq!(code_of(classify(r#"{"kind":"x"}"#).err().unwrap()), "invalid_request");
        assert_eq!(code_of(classify(r#"{"type":"DANCE"}"#).err().unwrap()), "unknown_message_type");
        assert_eq!(code_of(classify(r#"{"type":"USER_MESSAGE","content":5}"#).err().unwrap()), "invalid_request");
    }
}
