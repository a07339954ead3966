//! Given/when/then tests of an interview's conversation.

use cqrs_es::test::TestFramework;

use super::*;

const HINT_AFTER: i64 = 180_000;

fn interview() -> TestFramework<Interview> {
    TestFramework::with(())
}

fn opened() -> InterviewEvent {
    InterviewEvent::InterviewOpened {
        user_id: "alice".into(),
        job_description: "Rust".into(),
        skills: vec!["Rust".into()],
        at: 1,
    }
}

fn start(call_id: &str, kind: AiCallKind) -> AiCallStart {
    AiCallStart {
        call_id: call_id.into(),
        kind,
        model: "m".into(),
        message_id: kind.writes().map(|_| format!("msg-{call_id}")),
        input_size: 10,
        prompt_version: 1,
    }
}

fn started(call_id: &str, kind: AiCallKind, at: i64) -> InterviewEvent {
    InterviewEvent::AiCallStarted { call: start(call_id, kind), at }
}

/// Opened, first question asked at 10 and written at 20 (hint due at 20 + HINT_AFTER).
fn asked() -> Vec<InterviewEvent> {
    vec![
        opened(),
        started("q1", AiCallKind::Question, 10),
        InterviewEvent::AiCallCompleted {
            call_id: "q1".into(),
            kind: AiCallKind::Question,
            model: "m".into(),
            latency_ms: 10,
            usage: TokenUsage::default(),
            finish_reason: Some("stop".into()),
            at: 20,
        },
        InterviewEvent::AiMessageWritten {
            message_id: "msg-q1".into(),
            message_type: MessageType::Question,
            content: "Why Rust?".into(),
            created_at: 10,
            at: 20,
        },
        InterviewEvent::HintScheduled { due_at: 20 + HINT_AFTER, at: 20 },
    ]
}

fn state_after(events: Vec<InterviewEvent>) -> Interview {
    let mut state = Interview::default();
    for event in events {
        state.apply(event);
    }
    state
}

#[test]
fn nothing_happens_to_an_interview_that_was_never_opened() {
    interview()
        .given_no_previous_events()
        .when(InterviewCommand::StartAiCall { call: start("q1", AiCallKind::Question), at: 5 })
        .then_expect_error(InterviewError::NotOpened);
}

#[test]
fn the_state_follows_the_open_call() {
    let mut events = vec![opened()];
    assert_eq!(state_after(events.clone()).state(), InterviewState::Idle);
    for (kind, state) in [
        (AiCallKind::ExtractSkills, InterviewState::ExtractingSkills),
        (AiCallKind::Question, InterviewState::GeneratingMessage),
        (AiCallKind::Transcribe, InterviewState::TranscribingText),
        (AiCallKind::Hint, InterviewState::GeneratingHint),
    ] {
        events.push(started("c", kind, 5));
        assert_eq!(state_after(events.clone()).state(), state);
        events.pop();
    }
}

#[test]
fn a_written_question_schedules_a_hint() {
    let mut given = asked();
    given.truncate(2);
    interview()
        .given(given)
        .when(InterviewCommand::CompleteMessage {
            call_id: "q1".into(),
            content: "Why Rust?".into(),
            usage: TokenUsage { prompt_tokens: 3, completion_tokens: 4 },
            finish_reason: Some("stop".into()),
            hint_after_ms: HINT_AFTER,
            at: 20,
        })
        .then_expect_events(vec![
            InterviewEvent::AiCallCompleted {
                call_id: "q1".into(),
                kind: AiCallKind::Question,
                model: "m".into(),
                latency_ms: 10,
                usage: TokenUsage { prompt_tokens: 3, completion_tokens: 4 },
                finish_reason: Some("stop".into()),
                at: 20,
            },
            InterviewEvent::AiMessageWritten {
                message_id: "msg-q1".into(),
                message_type: MessageType::Question,
                content: "Why Rust?".into(),
                created_at: 10,
                at: 20,
            },
            InterviewEvent::HintScheduled { due_at: 20 + HINT_AFTER, at: 20 },
        ]);
}

#[test]
fn an_answer_and_its_reply_call_are_one_decision() {
    interview()
        .given(asked())
        .when(InterviewCommand::Answer {
            message_id: "a1".into(),
            content: " Because it is safe ".into(),
            reply: start("q2", AiCallKind::Question),
            at: 30,
        })
        .then_expect_events(vec![
            InterviewEvent::UserAnswered {
                message_id: "a1".into(),
                content: "Because it is safe".into(),
                source: AnswerSource::Typed,
                at: 30,
            },
            started("q2", AiCallKind::Question, 30),
        ]);
    let mut events = asked();
    events.push(InterviewEvent::UserAnswered {
        message_id: "a1".into(),
        content: "x".into(),
        source: AnswerSource::Typed,
        at: 30,
    });
    assert_eq!(state_after(events).hint_due, None, "an answer cancels the hint");
}

#[test]
fn an_answer_while_the_ai_works_is_refused() {
    let mut given = asked();
    given.push(started("q2", AiCallKind::Question, 30));
    interview()
        .given(given)
        .when(InterviewCommand::Answer {
            message_id: "a2".into(),
            content: "again".into(),
            reply: start("q3", AiCallKind::Question),
            at: 31,
        })
        .then_expect_error(InterviewError::Busy(InterviewState::GeneratingMessage));
}

#[test]
fn empty_and_oversized_answers_are_refused() {
    let answer = |content: String| InterviewCommand::Answer {
        message_id: "a1".into(),
        content,
        reply: start("q2", AiCallKind::Question),
        at: 30,
    };
    interview().given(asked()).when(answer("   ".into())).then_expect_error(InterviewError::EmptyAnswer);
    interview()
        .given(asked())
        .when(answer("x".repeat(MAX_ANSWER_CHARS + 1)))
        .then_expect_error(InterviewError::AnswerTooLong);
    interview().given(asked()).when(answer("x".repeat(MAX_ANSWER_CHARS))).then_expect_events(vec![
        InterviewEvent::UserAnswered {
            message_id: "a1".into(),
            content: "x".repeat(MAX_ANSWER_CHARS),
            source: AnswerSource::Typed,
            at: 30,
        },
        started("q2", AiCallKind::Question, 30),
    ]);
}

#[test]
fn a_transcription_becomes_the_answer_and_starts_the_reply() {
    let mut given = asked();
    given.push(started("t1", AiCallKind::Transcribe, 30));
    interview()
        .given(given)
        .when(InterviewCommand::CompleteTranscription {
            call_id: "t1".into(),
            message_id: "a1".into(),
            text: "I like Rust".into(),
            usage: TokenUsage::default(),
            reply: start("q2", AiCallKind::Question),
            at: 40,
        })
        .then_expect_events(vec![
            InterviewEvent::AiCallCompleted {
                call_id: "t1".into(),
                kind: AiCallKind::Transcribe,
                model: "m".into(),
                latency_ms: 10,
                usage: TokenUsage::default(),
                finish_reason: None,
                at: 40,
            },
            InterviewEvent::UserAnswered {
                message_id: "a1".into(),
                content: "I like Rust".into(),
                source: AnswerSource::Audio,
                at: 40,
            },
            started("q2", AiCallKind::Question, 40),
        ]);
}

#[test]
fn a_silent_recording_fails_its_call_and_stores_no_answer() {
    let mut given = asked();
    given.push(started("t1", AiCallKind::Transcribe, 30));
    interview()
        .given(given)
        .when(InterviewCommand::CompleteTranscription {
            call_id: "t1".into(),
            message_id: "a1".into(),
            text: "  ".into(),
            usage: TokenUsage::default(),
            reply: start("q2", AiCallKind::Question),
            at: 40,
        })
        .then_expect_events(vec![InterviewEvent::AiCallFailed {
            call_id: "t1".into(),
            kind: AiCallKind::Transcribe,
            model: "m".into(),
            latency_ms: 10,
            outcome: "empty_transcript".into(),
            reason: "no speech was recognised".into(),
            at: 40,
        }]);
}

#[test]
fn a_broken_stream_fails_the_message_with_its_partial_text_and_frees_the_interview() {
    let mut given = asked();
    given.push(started("q2", AiCallKind::Question, 30));
    let failed = vec![
        InterviewEvent::AiCallFailed {
            call_id: "q2".into(),
            kind: AiCallKind::Question,
            model: "m".into(),
            latency_ms: 20,
            outcome: "stream_broken".into(),
            reason: "reset".into(),
            at: 50,
        },
        InterviewEvent::AiMessageFailed {
            message_id: "msg-q2".into(),
            message_type: MessageType::Question,
            content: "Tell me ab".into(),
            created_at: 30,
            at: 50,
        },
    ];
    interview()
        .given(given.clone())
        .when(InterviewCommand::FailAiCall {
            call_id: "q2".into(),
            outcome: "stream_broken".into(),
            reason: "reset".into(),
            partial: "Tell me ab".into(),
            at: 50,
        })
        .then_expect_events(failed.clone());
    given.extend(failed);
    let state = state_after(given);
    assert_eq!(state.state(), InterviewState::Idle);
    assert_eq!(state.messages.last().map(|m| m.status), Some(MessageStatus::Failed));
}

#[test]
fn a_call_open_at_a_restart_is_recovered_as_interrupted() {
    let mut given = asked();
    given.push(started("q2", AiCallKind::Question, 30));
    interview().given(given).when(InterviewCommand::RecoverInterruptedCall { at: 90 }).then_expect_events(vec![
        InterviewEvent::AiCallFailed {
            call_id: "q2".into(),
            kind: AiCallKind::Question,
            model: "m".into(),
            latency_ms: 60,
            outcome: "interrupted".into(),
            reason: "the service restarted during the call".into(),
            at: 90,
        },
        InterviewEvent::AiMessageFailed {
            message_id: "msg-q2".into(),
            message_type: MessageType::Question,
            content: String::new(),
            created_at: 30,
            at: 90,
        },
    ]);
    interview().given(asked()).when(InterviewCommand::RecoverInterruptedCall { at: 90 }).then_expect_events(vec![]);
}

#[test]
fn a_completion_for_another_call_is_refused() {
    let mut given = asked();
    given.push(started("q2", AiCallKind::Question, 30));
    interview()
        .given(given)
        .when(InterviewCommand::FailAiCall {
            call_id: "q1".into(),
            outcome: "timeout".into(),
            reason: "late".into(),
            partial: String::new(),
            at: 50,
        })
        .then_expect_error(InterviewError::NoSuchCall("q1".into()));
}

#[test]
fn a_hint_starts_only_once_due() {
    let due = 20 + HINT_AFTER;
    interview()
        .given(asked())
        .when(InterviewCommand::StartAiCall { call: start("h1", AiCallKind::Hint), at: due - 1 })
        .then_expect_error(InterviewError::HintNotDue);
    interview()
        .given(asked())
        .when(InterviewCommand::StartAiCall { call: start("h1", AiCallKind::Hint), at: due })
        .then_expect_events(vec![started("h1", AiCallKind::Hint, due)]);
}

#[test]
fn each_question_gets_at_most_one_hint() {
    let due = 20 + HINT_AFTER;
    let mut given = asked();
    given.push(started("h1", AiCallKind::Hint, due));
    given.push(InterviewEvent::AiCallCompleted {
        call_id: "h1".into(),
        kind: AiCallKind::Hint,
        model: "m".into(),
        latency_ms: 5,
        usage: TokenUsage::default(),
        finish_reason: Some("stop".into()),
        at: due + 5,
    });
    interview()
        .given(given)
        .when(InterviewCommand::StartAiCall { call: start("h2", AiCallKind::Hint), at: due + 10_000_000 })
        .then_expect_error(InterviewError::HintNotDue);
}

#[test]
fn typing_postpones_a_pending_hint_and_only_later() {
    let due = 20 + HINT_AFTER;
    interview()
        .given(asked())
        .when(InterviewCommand::PostponeHint { due_at: due + 1, at: 21 })
        .then_expect_events(vec![InterviewEvent::HintPostponed { due_at: due + 1, at: 21 }]);
    interview().given(asked()).when(InterviewCommand::PostponeHint { due_at: due, at: 21 }).then_expect_events(vec![]);
    // No hint pending (answered): typing schedules nothing.
    let mut answered = asked();
    answered.push(InterviewEvent::UserAnswered {
        message_id: "a1".into(),
        content: "x".into(),
        source: AnswerSource::Typed,
        at: 30,
    });
    interview()
        .given(answered)
        .when(InterviewCommand::PostponeHint { due_at: due + 100, at: 31 })
        .then_expect_events(vec![]);
}

#[test]
fn a_skipped_hint_is_not_given_later() {
    let mut given = asked();
    given.push(InterviewEvent::HintSkipped { reason: "rate_limited".into(), at: 200_000 });
    assert_eq!(state_after(given.clone()).hint_due, None);
    interview()
        .given(given)
        .when(InterviewCommand::StartAiCall { call: start("h1", AiCallKind::Hint), at: 300_000 })
        .then_expect_error(InterviewError::HintNotDue);
}

#[test]
fn skills_extracted_replace_the_interview_skills() {
    let given = vec![opened(), started("s1", AiCallKind::ExtractSkills, 2)];
    let mut events = given.clone();
    events.extend([
        InterviewEvent::AiCallCompleted {
            call_id: "s1".into(),
            kind: AiCallKind::ExtractSkills,
            model: "m".into(),
            latency_ms: 3,
            usage: TokenUsage::default(),
            finish_reason: None,
            at: 5,
        },
        InterviewEvent::SkillsExtracted { skills: vec!["Rust".into(), "SQL".into()], at: 5 },
    ]);
    interview()
        .given(given)
        .when(InterviewCommand::CompleteSkills {
            call_id: "s1".into(),
            skills: vec!["Rust".into(), "SQL".into(), "rust".into()],
            usage: TokenUsage::default(),
            at: 5,
        })
        .then_expect_events(events[2..].to_vec());
    assert_eq!(state_after(events).skills, vec!["Rust".to_owned(), "SQL".to_owned()]);
}

#[test]
fn questions_and_hints_need_a_message_id() {
    let mut call = start("q1", AiCallKind::Question);
    call.message_id = None;
    interview()
        .given(vec![opened()])
        .when(InterviewCommand::StartAiCall { call, at: 5 })
        .then_expect_error(InterviewError::InvalidCall("questions and hints need a message id, other calls none"));
}

#[test]
fn a_deleted_interview_takes_no_answers_and_deleting_twice_is_quiet() {
    let mut given = asked();
    given.push(InterviewEvent::InterviewDeleted { at: 40 });
    interview()
        .given(given.clone())
        .when(InterviewCommand::Answer {
            message_id: "a1".into(),
            content: "x".into(),
            reply: start("q2", AiCallKind::Question),
            at: 41,
        })
        .then_expect_error(InterviewError::Deleted);
    interview().given(given).when(InterviewCommand::Delete { at: 42 }).then_expect_events(vec![]);
}

#[test]
fn the_state_serialises_as_the_seed_names_it() {
    for state in InterviewState::ALL {
        assert_eq!(serde_json::to_value(state).unwrap(), serde_json::json!(state.as_str()));
    }
}
