//! The interview contract's JSON: the `Interview` and `Message` objects of
//! the HTTP API and the WebSocket frames (`INTERVIEW_STATE`,
//! `INTERVIEW_MESSAGE`, `INTERVIEW_UPDATED`, `INTERVIEW_CREATED`,
//! `INTERVIEW_DELETED`, `RATELIMIT`), each rendered once and shared by every
//! connection as one [`Text`].

use crate::outlet::Text;

use eventuall_domain::interview::{InterviewEntry, InterviewState, Message, MessageRole, MessageStatus, MessageType};
use serde::Serialize;
use serde_json::json;

use super::QuotaRefusal;
use super::conversation::View;
use crate::store::{EventStore, StoreError};

/// `Interview` of the contract.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Interview)]
pub struct InterviewJson {
    pub id: String,
    pub user_id: String,
    pub title: String,
    pub job_description: String,
    pub skills: Vec<String>,
    #[schema(value_type = crate::http::openapi::InterviewState)]
    pub state: InterviewState,
    pub created_at: i64,
    pub updated_at: i64,
    pub message_count: u64,
    pub archived: bool,
}

impl InterviewJson {
    /// The directory's entry (title, archive flag) with the conversation's
    /// live state; skills from the conversation once it extracted them.
    pub fn merge(interview_id: &str, user_id: &str, entry: &InterviewEntry, view: &View) -> Self {
        Self {
            id: interview_id.to_owned(),
            user_id: user_id.to_owned(),
            title: entry.title.clone(),
            job_description: entry.job_description.clone(),
            skills: if view.skills.is_empty() { entry.skills.clone() } else { view.skills.clone() },
            state: view.state,
            created_at: entry.created_at,
            updated_at: entry.updated_at.max(view.updated_at),
            message_count: view.stored_messages,
            archived: entry.archived,
        }
    }
}

/// `Message` of the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Message)]
pub struct MessageJson {
    pub id: String,
    pub interview_id: String,
    pub user_id: String,
    #[schema(value_type = crate::http::openapi::MessageRole)]
    pub role: MessageRole,
    #[schema(value_type = crate::http::openapi::MessageType)]
    pub message_type: MessageType,
    pub content: String,
    pub created_at: i64,
    #[schema(value_type = crate::http::openapi::MessageStatus)]
    pub status: MessageStatus,
}

impl MessageJson {
    pub fn stored(interview_id: &str, user_id: &str, message: &Message) -> Self {
        Self {
            id: message.id.clone(),
            interview_id: interview_id.to_owned(),
            user_id: user_id.to_owned(),
            role: message.role,
            message_type: message.message_type,
            content: message.content.clone(),
            created_at: message.created_at,
            status: message.status,
        }
    }
}

fn typed(kind: &str, body: impl Serialize) -> Text {
    let mut value = serde_json::to_value(body).expect("frames serialise");
    match value.as_object_mut() {
        Some(object) => {
            object.insert("type".into(), kind.into());
        }
        None => value = json!({ "type": kind }),
    }
    Text::from(value.to_string())
}

pub fn state(state: InterviewState) -> Text {
    Text::from(json!({"type": "INTERVIEW_STATE", "state": state}).to_string())
}

pub fn message(message: &MessageJson) -> Text {
    typed("INTERVIEW_MESSAGE", message)
}

pub fn updated(interview_id: &str) -> Text {
    Text::from(json!({"type": "INTERVIEW_UPDATED", "interviewId": interview_id}).to_string())
}

pub fn created(interview_id: &str) -> Text {
    Text::from(json!({"type": "INTERVIEW_CREATED", "interviewId": interview_id}).to_string())
}

pub fn deleted(interview_id: &str) -> Text {
    Text::from(json!({"type": "INTERVIEW_DELETED", "interviewId": interview_id}).to_string())
}

pub fn rate_limit(quota: &QuotaRefusal) -> Text {
    typed("RATELIMIT", quota)
}

/// The contract's `error` frame.
pub fn error(code: &str, message: &str) -> Text {
    Text::from(json!({"type": "error", "code": code, "message": message}).to_string())
}

type ListRow = (String, String, String, String, String, String, i64, i64, i64, i64);

/// The user's interviews from the `interviews` read model, newest first.
pub async fn list_rows(store: &EventStore, user_id: &str) -> Result<Vec<InterviewJson>, StoreError> {
    let rows: Vec<ListRow> = store
        .query_as(
            "select interview_id, user_id, title, job_description, skills, state, created_at, updated_at, \
             message_count, archived from interviews where user_id = $1 and deleted = 0 \
             order by created_at desc, interview_id desc",
            &[user_id.into()],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, user_id, title, job_description, skills, state, created_at, updated_at, message_count, archived)| {
            InterviewJson {
                id,
                user_id,
                title,
                job_description,
                skills: serde_json::from_str(&skills).unwrap_or_default(),
                state: serde_json::from_value(state.into()).unwrap_or_default(),
                created_at,
                updated_at,
                message_count: u64::try_from(message_count).unwrap_or(0),
                archived: archived != 0,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_type_and_the_contract_names() {
        let frame: serde_json::Value = serde_json::from_str(&state(InterviewState::GeneratingHint)).unwrap();
        assert_eq!(frame, json!({"type": "INTERVIEW_STATE", "state": "ai.generating.hint"}));
        let m = MessageJson {
            id: "m1".into(),
            interview_id: "i1".into(),
            user_id: "u".into(),
            role: MessageRole::Ai,
            message_type: MessageType::Question,
            content: "Why?".into(),
            created_at: 5,
            status: MessageStatus::Streaming,
        };
        let frame: serde_json::Value = serde_json::from_str(&message(&m)).unwrap();
        assert_eq!(
            frame,
            json!({"type": "INTERVIEW_MESSAGE", "id": "m1", "interviewId": "i1", "userId": "u", "role": "ai",
                   "messageType": "question", "content": "Why?", "createdAt": 5, "status": "streaming"})
        );
        let frame: serde_json::Value =
            serde_json::from_str(&rate_limit(&QuotaRefusal { limit: 3, remaining: 0, reset_at: 9 })).unwrap();
        assert_eq!(frame, json!({"type": "RATELIMIT", "limit": 3, "remaining": 0, "resetAt": 9}));
    }
}
