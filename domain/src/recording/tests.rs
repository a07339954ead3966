//! Given/when/then tests of the recording coordinator and session.

use cqrs_es::test::TestFramework;

use super::*;

const H: i64 = 60 * 60 * 1000;

fn coordinator() -> TestFramework<Coordinator> {
    TestFramework::with(())
}

fn session() -> TestFramework<RecordingSession> {
    TestFramework::with(())
}

fn acquired(session_id: &str, at: i64) -> CoordinatorEvent {
    CoordinatorEvent::LockAcquired { session_id: session_id.into(), at }
}

#[test]
fn a_free_room_grants_the_lock() {
    coordinator()
        .given_no_previous_events()
        .when(CoordinatorCommand::Acquire { session_id: "s1".into(), at: 0 })
        .then_expect_events(vec![acquired("s1", 0)]);
}

#[test]
fn a_second_session_is_refused_while_one_records() {
    coordinator()
        .given(vec![acquired("s1", 0)])
        .when(CoordinatorCommand::Acquire { session_id: "s2".into(), at: 5 * H })
        .then_expect_error(CoordinatorError::AlreadyRecording { session_id: "s1".into() });
}

#[test]
fn acquiring_again_for_the_same_session_is_a_retry() {
    coordinator()
        .given(vec![acquired("s1", 0)])
        .when(CoordinatorCommand::Acquire { session_id: "s1".into(), at: 1 })
        .then_expect_events(vec![]);
}

#[test]
fn a_lock_older_than_twelve_hours_expires() {
    let at = 13 * H;
    coordinator()
        .given(vec![acquired("s1", 0)])
        .when(CoordinatorCommand::Acquire { session_id: "s2".into(), at })
        .then_expect_events(vec![CoordinatorEvent::LockExpired { session_id: "s1".into(), at }, acquired("s2", at)]);
}

/// Issue #22, defect 8: the lock outlives the 12 h maximum by exactly the
/// 30 min grace: held at 12 h 30 min, expired one millisecond later.
#[test]
fn the_lock_expires_one_millisecond_after_twelve_hours_and_the_grace() {
    assert_eq!((MAX_RECORDING_MS, EXPIRY_GRACE_MS), (12 * H, 30 * 60 * 1000));
    let bound = MAX_RECORDING_MS + EXPIRY_GRACE_MS;
    let acquire = |at| CoordinatorCommand::Acquire { session_id: "s2".into(), at };
    coordinator()
        .given(vec![acquired("s1", 0)])
        .when(acquire(bound))
        .then_expect_error(CoordinatorError::AlreadyRecording { session_id: "s1".into() });
    coordinator().given(vec![acquired("s1", 0)]).when(acquire(bound + 1)).then_expect_events(vec![
        CoordinatorEvent::LockExpired { session_id: "s1".into(), at: bound + 1 },
        acquired("s2", bound + 1),
    ]);
}

#[test]
fn release_frees_the_room_and_is_idempotent() {
    let release = || CoordinatorCommand::Release { session_id: "s1".into(), reason: "done".into(), at: 9 };
    coordinator().given(vec![acquired("s1", 0)]).when(release()).then_expect_events(vec![
        CoordinatorEvent::LockReleased { session_id: "s1".into(), reason: "done".into(), at: 9 },
    ]);
    coordinator()
        .given(vec![
            acquired("s1", 0),
            CoordinatorEvent::LockReleased { session_id: "s1".into(), reason: "done".into(), at: 9 },
        ])
        .when(release())
        .then_expect_events(vec![]);
}

fn requested() -> SessionEvent {
    SessionEvent::Requested { session_id: "s1".into(), event_id: "launch".into(), requested_by: "mod".into(), at: 0 }
}

fn recording() -> Vec<SessionEvent> {
    vec![
        requested(),
        SessionEvent::StreamCreateRequested { at: 1 },
        SessionEvent::StreamCreated { stream_id: "ls".into(), stream_key: "k".into(), playback_id: None, at: 2 },
        SessionEvent::StreamReady { at: 3 },
        SessionEvent::EgressStartRequested { page_url: "http://x?saga=s1".into(), at: 4 },
        SessionEvent::EgressStarted { egress_id: "EG_1".into(), at: 5 },
        SessionEvent::EgressActive { at: 6 },
        SessionEvent::RecordingStarted { asset_id: Some("a1".into()), at: 7 },
    ]
}

#[test]
fn requesting_twice_records_once() {
    session()
        .given(vec![requested()])
        .when(SessionCommand::Request {
            session_id: "s1".into(),
            event_id: "launch".into(),
            requested_by: "mod".into(),
            at: 5,
        })
        .then_expect_events(vec![]);
}

#[test]
fn steps_out_of_order_are_refused() {
    session()
        .given(vec![requested()])
        .when(SessionCommand::Record(SessionEvent::EgressStarted { egress_id: "EG".into(), at: 1 }))
        .then_expect_error(SessionError::OutOfOrder { phase: Phase::Requested, event: "EgressStarted".into() });
}

#[test]
fn a_stop_while_recording_is_recorded_once() {
    session()
        .given(recording())
        .when(SessionCommand::RequestStop { reason: "moderator".into(), at: 10 })
        .then_expect_events(vec![SessionEvent::StopRequested { reason: "moderator".into(), at: 10 }]);
    let mut given = recording();
    given.push(SessionEvent::StopRequested { reason: "moderator".into(), at: 10 });
    session()
        .given(given)
        .when(SessionCommand::RequestStop { reason: "again".into(), at: 11 })
        .then_expect_events(vec![]);
}

#[test]
fn the_session_completes_once_every_clip_settled() {
    let mut given = recording();
    let plan = |id: &str| ClipPlan { clip_id: id.into(), user_id: "u".into(), start: 0.0, end: 5.0 };
    given.extend([
        SessionEvent::StopRequested { reason: "moderator".into(), at: 10 },
        SessionEvent::EgressStopped { egress_id: Some("EG_1".into()), error: None, at: 11 },
        SessionEvent::StreamCompleted { asset_id: "a1".into(), at: 12 },
        SessionEvent::AssetReady { asset_id: "a1".into(), duration: 60.0, at: 13 },
        SessionEvent::ClipsRequested { clips: vec![plan("c1"), plan("c2")], at: 14 },
        SessionEvent::ClipCreated { clip_id: "c1".into(), asset_id: "x".into(), playback_id: None, at: 15 },
        SessionEvent::ClipReady { clip_id: "c1".into(), at: 16 },
    ]);
    session()
        .given(given.clone())
        .when(SessionCommand::Record(SessionEvent::Completed { at: 17 }))
        .then_expect_error(SessionError::OutOfOrder { phase: Phase::Clipping, event: "RecordingCompleted".into() });
    given.push(SessionEvent::ClipErrored { clip_id: "c2".into(), reason: "errored".into(), at: 17 });
    session()
        .given(given)
        .when(SessionCommand::Record(SessionEvent::Completed { at: 18 }))
        .then_expect_events(vec![SessionEvent::Completed { at: 18 }]);
}

#[test]
fn a_failure_compensates_before_it_ends() {
    let mut given = recording();
    given.push(SessionEvent::FailureDetected { reason: "egress FAILED".into(), at: 20 });
    session()
        .given(given.clone())
        .when(SessionCommand::Record(SessionEvent::Failed { reason: "egress FAILED".into(), at: 21 }))
        .then_expect_error(SessionError::OutOfOrder { phase: Phase::Compensating, event: "RecordingFailed".into() });
    given.extend([
        SessionEvent::EgressStopped { egress_id: Some("EG_1".into()), error: None, at: 21 },
        SessionEvent::StreamDeleted { stream_id: Some("ls".into()), error: None, at: 22 },
        SessionEvent::LockReleased { at: 23 },
    ]);
    session()
        .given(given)
        .when(SessionCommand::Record(SessionEvent::Failed { reason: "egress FAILED".into(), at: 24 }))
        .then_expect_events(vec![SessionEvent::Failed { reason: "egress FAILED".into(), at: 24 }]);
}

#[test]
fn a_finished_session_cannot_fail_again() {
    let mut given = recording();
    given.extend([
        SessionEvent::FailureDetected { reason: "x".into(), at: 20 },
        SessionEvent::EgressStopped { egress_id: None, error: None, at: 21 },
        SessionEvent::StreamDeleted { stream_id: None, error: None, at: 22 },
        SessionEvent::LockReleased { at: 23 },
        SessionEvent::Failed { reason: "x".into(), at: 24 },
    ]);
    session()
        .given(given)
        .when(SessionCommand::Record(SessionEvent::FailureDetected { reason: "y".into(), at: 25 }))
        .then_expect_error(SessionError::OutOfOrder { phase: Phase::Failed, event: "RecordingFailureDetected".into() });
}

#[test]
fn a_stop_releases_the_lock_once_the_stream_is_complete_before_the_clips() {
    let mut given = recording();
    given.extend([
        SessionEvent::StopRequested { reason: "moderator".into(), at: 10 },
        SessionEvent::EgressStopped { egress_id: Some("EG_1".into()), error: None, at: 11 },
    ]);
    session()
        .given(given.clone())
        .when(SessionCommand::Record(SessionEvent::LockReleased { at: 12 }))
        .then_expect_error(SessionError::OutOfOrder { phase: Phase::EgressStopped, event: "LockReleased".into() });
    given.push(SessionEvent::StreamCompleted { asset_id: "a1".into(), at: 12 });
    session()
        .given(given.clone())
        .when(SessionCommand::Record(SessionEvent::LockReleased { at: 13 }))
        .then_expect_events(vec![SessionEvent::LockReleased { at: 13 }]);
    given.push(SessionEvent::LockReleased { at: 13 });
    session()
        .given(given)
        .when(SessionCommand::Record(SessionEvent::LockReleased { at: 14 }))
        .then_expect_error(SessionError::OutOfOrder { phase: Phase::StreamCompleted, event: "LockReleased".into() });
}
