//! What the AI is asked, built from the interview's stored state only, so
//! that an audit can rebuild any prompt from the log and
//! [`PROMPT_VERSION`] (recorded in every `AiCallStarted`).
//!
//! Questions and hints see the conversation so far: the AI's questions as
//! `assistant` turns and the answers as `user` turns. Failed messages (a
//! broken stream's fragment) and earlier hints are left out: they are not
//! part of the interview the candidate had.

use eventuall_domain::interview::{Interview, MessageRole, MessageStatus, MessageType};
use eventuall_media::ai::{ChatMessage, ChatRequest, Role};

/// Bump when a template below changes.
pub const PROMPT_VERSION: u32 = 1;

fn system(content: String) -> ChatMessage {
    ChatMessage { role: Role::System, content }
}

fn user(content: String) -> ChatMessage {
    ChatMessage { role: Role::User, content }
}

/// Skills from a job description, as a JSON object `{"skills": [...]}`.
pub fn extract_skills(interview: &Interview) -> ChatRequest {
    ChatRequest {
        messages: vec![
            system(
                "You read job descriptions and list the skills a candidate needs. Reply with only a JSON object \
                 of the form {\"skills\": [\"skill\", ...]} with at most 8 short skill names."
                    .into(),
            ),
            user(interview.job_description.clone()),
        ],
        max_tokens: Some(200),
        temperature: Some(0.0),
    }
}

fn role_of(interview: &Interview) -> String {
    let skills = if interview.skills.is_empty() { "general".to_owned() } else { interview.skills.join(", ") };
    let job = if interview.job_description.trim().is_empty() {
        "No job description was given.".to_owned()
    } else {
        format!("The job description:\n{}", interview.job_description)
    };
    format!("{job}\nSkills to cover: {skills}.")
}

fn conversation(interview: &Interview) -> Vec<ChatMessage> {
    interview
        .messages
        .iter()
        .filter(|m| m.status == MessageStatus::Complete && m.message_type != MessageType::Hint)
        .map(|m| ChatMessage {
            role: if m.role == MessageRole::Ai { Role::Assistant } else { Role::User },
            content: m.content.clone(),
        })
        .collect()
}

/// The next interview question (after an answer, or the first one).
pub fn question(interview: &Interview) -> ChatRequest {
    let mut messages = vec![system(format!(
        "You are a friendly, rigorous job interviewer. {} Ask exactly one question at a time. When the candidate \
         answers, react in one sentence, then ask the next question.",
        role_of(interview)
    ))];
    let history = conversation(interview);
    if history.is_empty() {
        messages.push(user("Please ask me the first interview question.".into()));
    }
    messages.extend(history);
    ChatRequest { messages, max_tokens: Some(400), temperature: Some(0.7) }
}

/// A hint for the last question, which the candidate has not answered.
pub fn hint(interview: &Interview) -> ChatRequest {
    let mut messages = vec![system(format!(
        "You are an interview coach. {} The candidate has been quiet for a while. Give one short hint that helps \
         them start answering the last question, without answering it for them.",
        role_of(interview)
    ))];
    messages.extend(conversation(interview));
    messages.push(user("Can I have a hint?".into()));
    ChatRequest { messages, max_tokens: Some(150), temperature: Some(0.7) }
}

/// Characters sent: the `input_size` recorded for a chat call.
pub fn size(request: &ChatRequest) -> u64 {
    request.messages.iter().map(|m| m.content.chars().count() as u64).sum()
}

#[cfg(test)]
mod tests {
    use eventuall_domain::interview::Message;

    use super::*;

    fn message(role: MessageRole, message_type: MessageType, status: MessageStatus, content: &str) -> Message {
        Message { id: content.into(), role, message_type, content: content.into(), created_at: 0, status }
    }

    #[test]
    fn the_first_question_is_asked_for_and_the_conversation_leaves_out_hints_and_failures() {
        let mut interview = Interview { job_description: "Rust backend".into(), ..Interview::default() };
        let first = question(&interview);
        assert_eq!(first.messages.len(), 2);
        assert!(first.messages[0].content.contains("Rust backend"));
        assert!(!first.messages[0].content.to_lowercase().contains("hint"), "the simulator keys hints on the word");
        interview.messages = vec![
            message(MessageRole::Ai, MessageType::Question, MessageStatus::Complete, "Q1"),
            message(MessageRole::Ai, MessageType::Hint, MessageStatus::Complete, "H1"),
            message(MessageRole::User, MessageType::Answer, MessageStatus::Complete, "A1"),
            message(MessageRole::Ai, MessageType::Question, MessageStatus::Failed, "Q2-broken"),
        ];
        let next = question(&interview);
        let turns: Vec<(&Role, &str)> = next.messages[1..].iter().map(|m| (&m.role, m.content.as_str())).collect();
        assert_eq!(turns, vec![(&Role::Assistant, "Q1"), (&Role::User, "A1")]);
        assert!(hint(&interview).messages[0].content.contains("hint"));
    }
}
