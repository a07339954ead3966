//! Interview read models: the interview list (`GET /api/interviews`) and
//! one row per AI call (latency, tokens, outcome per user and model).
//!
//! A user's directory says which interviews exist and what they are called;
//! each interview's stream says what state it is in, how many messages it
//! has and which AI calls it made. [`changes`] maps an event of either
//! stream to the row changes it implies; the runner turns them into SQL.

use eventuall_domain::interview::{AiCallKind, DirectoryEvent, InterviewEvent, InterviewState, MessageType};

/// Event types of either stream that change no row.
pub const IGNORED_EVENT_TYPES: [&str; 4] = ["AiQuotaReserved", "HintScheduled", "HintPostponed", "HintSkipped"];

/// A change to the interview list or to the AI call table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterviewChange {
    Created {
        interview_id: String,
        user_id: String,
        title: String,
        job_description: String,
        skills: Vec<String>,
        at: i64,
    },
    Renamed {
        interview_id: String,
        title: String,
        at: i64,
    },
    SkillsSet {
        interview_id: String,
        skills: Vec<String>,
        at: i64,
    },
    Archived {
        interview_id: String,
        at: i64,
    },
    Deleted {
        interview_id: String,
        at: i64,
    },
    StateChanged {
        interview_id: String,
        state: InterviewState,
        at: i64,
    },
    /// A stored message; `hint` when it is a hint the AI wrote.
    MessageAdded {
        interview_id: String,
        hint: bool,
        at: i64,
    },
    CallStarted {
        call_id: String,
        interview_id: String,
        kind: AiCallKind,
        model: String,
        input_size: i64,
        at: i64,
    },
    CallEnded {
        call_id: String,
        outcome: String,
        latency_ms: i64,
        prompt_tokens: Option<i64>,
        completion_tokens: Option<i64>,
        at: i64,
    },
}

/// Which stream an event came from, decoded.
pub enum Input<'a> {
    /// An event of `user_interviews-{user_id}`.
    Directory { user_id: &'a str, event: &'a DirectoryEvent },
    /// An event of `interview-{interview_id}`.
    Interview { interview_id: &'a str, event: &'a InterviewEvent },
}

pub fn changes(input: Input<'_>) -> Vec<InterviewChange> {
    match input {
        Input::Directory { user_id, event } => directory_changes(user_id, event),
        Input::Interview { interview_id, event } => interview_changes(interview_id, event),
    }
}

fn directory_changes(user_id: &str, event: &DirectoryEvent) -> Vec<InterviewChange> {
    let change = match event.clone() {
        DirectoryEvent::InterviewCreated { interview_id, title, job_description, skills, at } => {
            InterviewChange::Created { interview_id, user_id: user_id.to_owned(), title, job_description, skills, at }
        }
        DirectoryEvent::InterviewRenamed { interview_id, title, at } => {
            InterviewChange::Renamed { interview_id, title, at }
        }
        DirectoryEvent::SkillsSet { interview_id, skills, at } => {
            InterviewChange::SkillsSet { interview_id, skills, at }
        }
        DirectoryEvent::InterviewArchived { interview_id, at } => InterviewChange::Archived { interview_id, at },
        DirectoryEvent::InterviewDeleted { interview_id, at } => InterviewChange::Deleted { interview_id, at },
        DirectoryEvent::AiQuotaReserved { .. } => return vec![],
    };
    vec![change]
}

fn interview_changes(interview_id: &str, event: &InterviewEvent) -> Vec<InterviewChange> {
    let id = || interview_id.to_owned();
    match event {
        InterviewEvent::AiCallStarted { call, at } => vec![
            InterviewChange::CallStarted {
                call_id: call.call_id.clone(),
                interview_id: id(),
                kind: call.kind,
                model: call.model.clone(),
                input_size: i64::try_from(call.input_size).unwrap_or(i64::MAX),
                at: *at,
            },
            InterviewChange::StateChanged { interview_id: id(), state: call.kind.state(), at: *at },
        ],
        InterviewEvent::AiCallCompleted { call_id, latency_ms, usage, at, .. } => vec![
            InterviewChange::CallEnded {
                call_id: call_id.clone(),
                outcome: "completed".into(),
                latency_ms: *latency_ms,
                prompt_tokens: Some(tokens(usage.prompt_tokens)),
                completion_tokens: Some(tokens(usage.completion_tokens)),
                at: *at,
            },
            InterviewChange::StateChanged { interview_id: id(), state: InterviewState::Idle, at: *at },
        ],
        InterviewEvent::AiCallFailed { call_id, latency_ms, outcome, at, .. } => vec![
            InterviewChange::CallEnded {
                call_id: call_id.clone(),
                outcome: outcome.clone(),
                latency_ms: *latency_ms,
                prompt_tokens: None,
                completion_tokens: None,
                at: *at,
            },
            InterviewChange::StateChanged { interview_id: id(), state: InterviewState::Idle, at: *at },
        ],
        InterviewEvent::UserAnswered { at, .. } | InterviewEvent::AiMessageFailed { at, .. } => {
            vec![InterviewChange::MessageAdded { interview_id: id(), hint: false, at: *at }]
        }
        InterviewEvent::AiMessageWritten { message_type, at, .. } => vec![InterviewChange::MessageAdded {
            interview_id: id(),
            hint: *message_type == MessageType::Hint,
            at: *at,
        }],
        InterviewEvent::SkillsExtracted { skills, at } => {
            vec![InterviewChange::SkillsSet { interview_id: id(), skills: skills.clone(), at: *at }]
        }
        InterviewEvent::InterviewDeleted { at } => vec![InterviewChange::Deleted { interview_id: id(), at: *at }],
        InterviewEvent::InterviewOpened { .. }
        | InterviewEvent::HintScheduled { .. }
        | InterviewEvent::HintPostponed { .. }
        | InterviewEvent::HintSkipped { .. } => vec![],
    }
}

fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The `q`-quantile (0..=1) of `values` by the nearest-rank method; `None`
/// for no values. Used for latency p50/p95 per model.
pub fn quantile(values: &mut [i64], q: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = (q.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.saturating_sub(1).min(values.len() - 1)])
}

#[cfg(test)]
mod tests {
    use eventuall_domain::interview::{AiCallStart, TokenUsage};

    use super::*;

    #[test]
    fn a_call_changes_the_state_and_records_its_row() {
        let call = AiCallStart {
            call_id: "c1".into(),
            kind: AiCallKind::Question,
            model: "m".into(),
            message_id: Some("m1".into()),
            input_size: 42,
            prompt_version: 1,
        };
        let started = InterviewEvent::AiCallStarted { call, at: 10 };
        assert_eq!(
            changes(Input::Interview { interview_id: "i1", event: &started }),
            vec![
                InterviewChange::CallStarted {
                    call_id: "c1".into(),
                    interview_id: "i1".into(),
                    kind: AiCallKind::Question,
                    model: "m".into(),
                    input_size: 42,
                    at: 10,
                },
                InterviewChange::StateChanged {
                    interview_id: "i1".into(),
                    state: InterviewState::GeneratingMessage,
                    at: 10
                },
            ]
        );
        let done = InterviewEvent::AiCallCompleted {
            call_id: "c1".into(),
            kind: AiCallKind::Question,
            model: "m".into(),
            latency_ms: 7,
            usage: TokenUsage { prompt_tokens: 3, completion_tokens: 5 },
            finish_reason: None,
            at: 17,
        };
        assert_eq!(
            changes(Input::Interview { interview_id: "i1", event: &done })[0],
            InterviewChange::CallEnded {
                call_id: "c1".into(),
                outcome: "completed".into(),
                latency_ms: 7,
                prompt_tokens: Some(3),
                completion_tokens: Some(5),
                at: 17
            }
        );
    }

    #[test]
    fn a_hint_counts_as_a_message_and_a_hint() {
        let hint = InterviewEvent::AiMessageWritten {
            message_id: "m".into(),
            message_type: MessageType::Hint,
            content: "Hint: think".into(),
            created_at: 1,
            at: 2,
        };
        assert_eq!(
            changes(Input::Interview { interview_id: "i1", event: &hint }),
            vec![InterviewChange::MessageAdded { interview_id: "i1".into(), hint: true, at: 2 }]
        );
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        assert_eq!(quantile(&mut [], 0.5), None);
        let mut values = vec![50, 10, 40, 20, 30];
        assert_eq!(quantile(&mut values, 0.5), Some(30));
        assert_eq!(quantile(&mut values, 0.95), Some(50));
        assert_eq!(quantile(&mut values, 0.0), Some(10));
        let mut hundred: Vec<i64> = (1..=100).collect();
        assert_eq!(quantile(&mut hundred, 0.95), Some(95));
    }
}
