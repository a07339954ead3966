//! The recording saga end to end: HTTP commands, the process manager stepped
//! deterministically (`try_step`), the Mux and LiveKit simulators with
//! injected faults, and a manual clock for health checks, the 12 h cap and
//! orphan detection. Every scenario ends in a terminal state with nothing
//! left running in the simulators.

use std::sync::Arc;
use std::time::Duration;

use eventuall::auth::Role;
use eventuall::clock::ManualClock;
use eventuall::recording::{Recording, StatusView, Step};
use eventuall::server::Application;
use eventuall::timers::{Dispatch, Timers};
use eventuall_domain::recording::{ClipStatus, Phase};
use eventuall_media::sim::{
    AssetFault, AssetKind, EgressFault, IngestFault, IngestPhase, MuxOp, MuxRequestFault, ResponseLoss, SimConfig,
    Simulators, Times, TwirpFault, TwirpMethod,
};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDb, config_with, serve_built, token};

const EVENT: &str = "launch";
/// Manual time added whenever both workers are idle: lets backoffs expire
/// and timers come due without real waiting.
const IDLE_ADVANCE_MS: i64 = 500;

struct Rig {
    app: TestApp,
    sims: Arc<Simulators>,
    clock: Arc<ManualClock>,
    recording: Recording,
    timers: Arc<Timers>,
    dispatch: Dispatch,
}

async fn rig(db: TestDb, sims: Arc<Simulators>, clock: Arc<ManualClock>, extra: &[&str]) -> Rig {
    let mut flags = vec![
        "--mux-url",
        sims.mux_url.as_str(),
        "--livekit-url",
        sims.livekit_url.as_str(),
        "--recording-worker",
        "manual",
        "--composite-url",
        "https://app.example.com/composite",
    ];
    flags.extend_from_slice(extra);
    let app = Application::build_with_clock(config_with(&db.url, &flags), clock.clone()).await.expect("app builds");
    let timers = app.timers();
    let dispatch = Application::timer_dispatch(app.state());
    let recording = app.state().recording.clone();
    let app = serve_built(db, app);
    Rig { app, sims, clock, recording, timers, dispatch }
}

async fn fresh(db: TestDb, extra: &[&str]) -> Rig {
    let sims = Arc::new(Simulators::spawn(SimConfig::fast()).await.expect("simulators"));
    rig(db, sims, ManualClock::starting_at(1_700_000_000_000), extra).await
}

fn moderator() -> String {
    token("mod", Role::Moderator, Some(&[EVENT]))
}

fn viewer() -> String {
    token("viewer", Role::Participant, Some(&[EVENT]))
}

impl Rig {
    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.app.post_json(path, Some(&moderator()), &body).await
    }

    async fn start(&self) -> reqwest::Response {
        self.post(&format!("/cloudcaster/{EVENT}/start"), json!({})).await
    }

    async fn stop(&self) -> reqwest::Response {
        self.post(&format!("/cloudcaster/{EVENT}/stop"), json!({})).await
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self.app.get(path, Some(&viewer())).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    async fn stage(&self, user: &str, action: &str) {
        let response = self.post(&format!("/event/{EVENT}/stage/{action}"), json!({"userId": user})).await;
        assert_eq!(response.status(), 200);
    }

    /// Steps both workers until `accept` holds for the status; moves the
    /// manual clock only while both are idle.
    async fn drive_until(&self, what: &str, accept: impl Fn(&StatusView) -> bool) -> StatusView {
        for _ in 0..3_000 {
            let commands = self.recording.commands_try_step().await.expect("command step");
            let sessions = self.recording.try_step().await.expect("saga step");
            let status = self.recording.status(EVENT).await.expect("status");
            if accept(&status) {
                return status;
            }
            if commands == Step::Idle && sessions == Step::Idle {
                tokio::time::sleep(Duration::from_millis(5)).await;
                self.clock.advance(IDLE_ADVANCE_MS);
            }
        }
        let status = self.recording.status(EVENT).await.expect("status");
        panic!("never reached {what}; status: {status:#?}");
    }

    async fn drive_to_state(&self, state: &str) -> StatusView {
        self.drive_until(state, |s| s.state == state).await
    }

    async fn fire_timers_after(&self, millis: i64) {
        self.clock.advance(millis);
        self.timers.fire_due(&self.dispatch).await.expect("timers fire");
    }

    /// Nothing left running: stopped egresses end and disconnected streams
    /// go idle within the simulators' millisecond timings.
    async fn assert_clean(&self) {
        for _ in 0..100 {
            if self.sims.handle.leftovers().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let leftovers = self.sims.handle.leftovers();
        panic!("left running: {leftovers:#?}");
    }

    async fn room_recording_status(&self) -> String {
        let snapshot = self.get_json(&format!("/event/{EVENT}/snapshot")).await;
        snapshot["recording"]["status"].as_str().unwrap_or_else(|| panic!("no recording in {snapshot}")).to_owned()
    }

    async fn assert_room_recording(&self, session_id: Option<&str>) {
        let snapshot = self.get_json(&format!("/event/{EVENT}/snapshot")).await;
        match session_id {
            Some(id) => assert_eq!(snapshot["recording"]["sessionId"], json!(id), "{snapshot}"),
            None => assert_eq!(snapshot["recording"], Value::Null, "{snapshot}"),
        }
    }
}

async fn start_session(rig: &Rig) -> String {
    let response = rig.start().await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    body["sessionId"].as_str().expect("session id").to_owned()
}

async fn happy_path(db: TestDb) {
    let rig = fresh(db, &[]).await;
    let session_id = start_session(&rig).await;

    let second = rig.start().await;
    assert_eq!(second.status(), 409);
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conflict");

    // Issue #22, defect 6: the snapshot shows where the recording is.
    rig.drive_until("stream created", |s| s.stream_id.is_some()).await;
    rig.assert_room_recording(Some(&session_id)).await;
    assert_eq!(rig.room_recording_status().await, "starting");
    let status = rig.drive_to_state("recording").await;
    assert_eq!(status.session_id.as_deref(), Some(session_id.as_str()));
    rig.assert_room_recording(Some(&session_id)).await;
    assert_eq!(rig.room_recording_status().await, "recording");
    assert_eq!(rig.start().await.status(), 409, "a second start while recording is refused");

    rig.stage("alice", "enter").await;
    rig.clock.advance(5_000);
    rig.stage("bob", "enter").await;
    rig.clock.advance(5_000);
    rig.stage("alice", "exit").await;
    rig.clock.advance(3_000);
    // The simulator records 1,000 media seconds per wall second.
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(rig.stop().await.status(), 202);
    rig.drive_until("egress stopped", |s| s.steps.iter().any(|step| step.step == "EgressStopped")).await;
    assert_eq!(rig.room_recording_status().await, "stopping");

    let status = rig.drive_to_state("completed").await;
    let steps: Vec<&str> = status.steps.iter().map(|s| s.step.as_str()).collect();
    for expected in [
        "RecordingRequested",
        "StreamCreated",
        "EgressStarted",
        "RecordingStarted",
        "StopRequested",
        "EgressStopped",
        "StreamCompleted",
        "RecordingAssetReady",
        "ClipsRequested",
        "RecordingCompleted",
    ] {
        assert!(steps.contains(&expected), "{expected} missing from {steps:?}");
    }

    let clips = rig.get_json(&format!("/cloudcaster/{EVENT}/clips")).await;
    let clips = clips["clips"].as_array().expect("clips").clone();
    assert_eq!(clips.len(), 2, "{clips:#?}");
    let alice = clips.iter().find(|c| c["participant"] == "alice").expect("alice's clip");
    assert_eq!(alice["start"], json!(0.0));
    assert_eq!(alice["end"], json!(10.0));
    let bob = clips.iter().find(|c| c["participant"] == "bob").expect("bob's clip");
    assert_eq!(bob["start"], json!(5.0));
    assert_eq!(bob["end"], json!(13.0));
    for clip in &clips {
        assert_eq!(clip["status"], "ready");
        assert!(clip["playbackId"].is_string(), "{clip}");
    }

    rig.assert_room_recording(None).await;
    rig.assert_clean().await;
    assert_eq!(rig.sims.handle.mux.live_streams().len(), 1);
    assert_eq!(rig.sims.handle.livekit.egresses().len(), 1);
    // The room is free again.
    assert_eq!(rig.start().await.status(), 202);
    rig.app.stop().await.drop_db().await;
}

#[tokio::test]
async fn a_recording_runs_from_start_to_clips_on_sqlite() {
    happy_path(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn a_recording_runs_from_start_to_clips_on_postgres() {
    happy_path(TestDb::postgres().await).await;
}

#[tokio::test]
async fn participants_cannot_start_but_can_read_the_status() {
    let rig = fresh(TestDb::sqlite().await, &[]).await;
    let response = rig.app.post_json(&format!("/cloudcaster/{EVENT}/start"), Some(&viewer()), &json!({})).await;
    assert_eq!(response.status(), 403);
    let status = rig.get_json(&format!("/cloudcaster/{EVENT}/status")).await;
    assert_eq!(status["state"], "none");
    rig.app.stop().await;
}

async fn fails_cleanly(rig: &Rig, reason_contains: &str) {
    let status = rig.drive_to_state("failed").await;
    let reason = status.failure_reason.clone().unwrap_or_default();
    assert!(reason.contains(reason_contains), "failure reason {reason:?} lacks {reason_contains:?}");
    let steps: Vec<&str> = status.steps.iter().map(|s| s.step.as_str()).collect();
    for expected in ["RecordingFailureDetected", "EgressStopped", "StreamDeleted", "LockReleased", "RecordingFailed"] {
        assert!(steps.contains(&expected), "{expected} missing from {steps:?}");
    }
    rig.assert_clean().await;
    rig.assert_room_recording(None).await;
}

#[tokio::test]
async fn an_egress_that_fails_mid_stream_is_caught_by_the_health_check() {
    let rig = fresh(TestDb::sqlite().await, &[]).await;
    rig.sims.faults().egress(EgressFault::FailMidStream { after: Duration::from_millis(300) }, Times::Once);
    start_session(&rig).await;
    // On a loaded machine the egress may already fail before the stream is
    // seen active; then the saga fails at that step instead, just as cleanly.
    rig.drive_until("recording", |s| s.state == "recording" || s.state == "failed").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    rig.fire_timers_after(31_000).await;
    fails_cleanly(&rig, "egress ended").await;
    rig.app.stop().await;
}

#[tokio::test]
async fn an_aborted_egress_start_compensates() {
    let rig = fresh(TestDb::sqlite().await, &[]).await;
    rig.sims.faults().egress(EgressFault::AbortStartSignal, Times::Once);
    start_session(&rig).await;
    fails_cleanly(&rig, "ABORTED").await;
    rig.app.stop().await;
}

#[tokio::test]
async fn a_lost_create_response_is_reconciled_without_a_duplicate() {
    let rig = fresh(TestDb::sqlite().await, &[]).await;
    let faults = rig.sims.faults();
    faults.mux_request(
        MuxOp::CreateLiveStream,
        MuxRequestFault::CommitThenLose(ResponseLoss::InternalError),
        Times::Once,
    );
    faults.livekit_request(TwirpMethod::StartWebEgress, TwirpFault::CommitThenLose(ResponseLoss::Reset), Times::Once);
    start_session(&rig).await;
    rig.drive_to_state("recording").await;
    assert_eq!(rig.sims.handle.mux.live_streams().len(), 1, "one live stream");
    assert_eq!(rig.sims.handle.livekit.egresses().len(), 1, "one egress");
    tokio::time::sleep(Duration::from_millis(20)).await;
    rig.stop().await;
    rig.drive_to_state("completed").await;
    rig.assert_clean().await;
    rig.app.stop().await;
}

#[tokio::test]
async fn transient_mux_and_livekit_errors_are_retried() {
    let rig = fresh(TestDb::sqlite().await, &[]).await;
    let faults = rig.sims.faults();
    let limited = MuxRequestFault::RateLimited { retry_after: Duration::from_secs(1) };
    faults.mux_request(MuxOp::CreateLiveStream, limited, Times::N(2));
    let slow = TwirpFault::SlowThenUnavailable { delay: Duration::from_millis(20) };
    faults.livekit_request(TwirpMethod::StartWebEgress, slow, Times::Once);
    faults.livekit_request(TwirpMethod::StartWebEgress, TwirpFault::ResourceExhausted, Times::Once);
    start_session(&rig).await;
    rig.drive_to_state("recording").await;
    assert_eq!(rig.sims.handle.livekit.egresses().len(), 1, "one egress");
    rig.stop().await;
    rig.drive_to_state("completed").await;
    rig.assert_clean().await;
    rig.app.stop().await;
}

#[tokio::test]
async fn mux_errors_past_the_retries_fail_the_session_cleanly() {
    let rig = fresh(TestDb::sqlite().await, &[]).await;
    let faults = rig.sims.faults();
    faults.mux_request(MuxOp::CreateLiveStream, MuxRequestFault::ServerError { status: 503 }, Times::Always);
    start_session(&rig).await;
    fails_cleanly(&rig, "gave up").await;
    faults.clear();
    rig.app.stop().await;
}

#[tokio::test]
async fn a_stream_that_never_goes_active_is_failed_as_an_orphan() {
    let rig = fresh(TestDb::sqlite().await, &["--recording-orphan-after", "30s"]).await;
    rig.sims.faults().mux_ingest(IngestFault::StuckIdle, Times::Always);
    start_session(&rig).await;
    fails_cleanly(&rig, "no progress").await;
    rig.app.stop().await;
}

#[tokio::test]
async fn an_errored_clip_does_not_fail_the_recording() {
    let rig = fresh(TestDb::sqlite().await, &[]).await;
    rig.sims.faults().mux_asset(AssetKind::Clip, AssetFault::Errored, Times::Once);
    start_session(&rig).await;
    rig.drive_to_state("recording").await;
    rig.stage("alice", "enter").await;
    rig.clock.advance(4_000);
    rig.stage("alice", "exit").await;
    rig.stage("bob", "enter").await;
    rig.clock.advance(4_000);
    tokio::time::sleep(Duration::from_millis(30)).await;
    rig.stop().await;
    rig.drive_to_state("completed").await;
    let clips = rig.get_json(&format!("/cloudcaster/{EVENT}/clips")).await;
    let statuses: Vec<&str> =
        clips["clips"].as_array().unwrap().iter().map(|c| c["status"].as_str().unwrap()).collect();
    assert_eq!(statuses.len(), 2);
    assert!(statuses.contains(&"errored") && statuses.contains(&"ready"), "{statuses:?}");
    rig.assert_clean().await;
    rig.app.stop().await;
}

/// Steps both workers without moving the clock.
impl Rig {
    async fn step_in_place(&self, rounds: usize) {
        for _ in 0..rounds {
            self.recording.commands_try_step().await.expect("command step");
            self.recording.try_step().await.expect("saga step");
        }
    }

    fn now(&self) -> i64 {
        eventuall::clock::Clock::now_millis(&*self.clock)
    }
}

/// Issue #22, defect 8: the cap stops a recording at exactly 12 h after it
/// started, not a millisecond before.
#[tokio::test]
async fn the_twelve_hour_cap_stops_the_recording() {
    let rig = fresh(TestDb::sqlite().await, &[]).await;
    start_session(&rig).await;
    let started = rig.drive_to_state("recording").await.started_at.expect("started");
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Health checks fire along the way and find everything alive.
    rig.fire_timers_after(started + eventuall_domain::recording::MAX_RECORDING_MS - 1 - rig.now()).await;
    rig.step_in_place(5).await;
    let status = rig.recording.status(EVENT).await.unwrap();
    assert_eq!(status.state, "recording", "still recording 1 ms before 12 h");
    assert!(!status.steps.iter().any(|s| s.step == "StopRequested"));
    rig.fire_timers_after(1).await;
    let status = rig.drive_to_state("completed").await;
    assert!(status.steps.iter().any(|s| s.step == "StopRequested"));
    rig.assert_clean().await;
    rig.app.stop().await;
}

/// Issue #22, defect 8: the health check runs every 30 s while recording,
/// re-armed after each run, and finds an egress that died between two
/// checks at the second, not before.
#[tokio::test]
async fn the_health_check_runs_every_thirty_seconds_and_is_re_armed() {
    let rig = fresh(TestDb::sqlite().await, &[]).await;
    // The egress fails 2 s (real time) after going active: after the first
    // check below, before the second.
    rig.sims.faults().egress(EgressFault::FailMidStream { after: Duration::from_secs(2) }, Times::Once);
    let session_id = start_session(&rig).await;
    rig.drive_to_state("recording").await;
    let owner = format!("{}{session_id}", eventuall::recording::TIMER_PREFIX);
    let health_due = || async { rig.timers.get(&owner, "health").await.unwrap().expect("health timer").due_at };
    let first = health_due().await;
    assert_eq!(first - rig.now(), 30_000, "armed 30 s after the recording started");
    // 1 ms early: not run, still armed for the same time.
    rig.fire_timers_after(first - 1 - rig.now()).await;
    assert_eq!(health_due().await, first);
    // On time: run, found alive, re-armed 30 s later.
    rig.fire_timers_after(1).await;
    let second = health_due().await;
    assert_eq!(second - first, 30_000, "re-armed for the next check");
    // The egress dies now; the next check finds it, not one before its time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !rig.sims.handle.livekit.egresses().iter().any(|e| !e.error.is_empty()) {
        assert!(tokio::time::Instant::now() < deadline, "the egress never failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rig.fire_timers_after(second - 1 - rig.now()).await;
    rig.step_in_place(3).await;
    assert_eq!(rig.recording.status(EVENT).await.unwrap().state, "recording", "no check before 30 s");
    rig.fire_timers_after(1).await;
    fails_cleanly(&rig, "egress ended").await;
    rig.app.stop().await;
}

#[tokio::test]
async fn a_restart_mid_saga_finishes_without_duplicates() {
    let db = TestDb::sqlite().await;
    let first = fresh(db, &[]).await;
    start_session(&first).await;
    first.drive_to_state("egress_started").await;
    let sims = first.sims.clone();
    let clock = first.clock.clone();
    let db = first.app.stop().await;

    let second = rig(db, sims, clock, &[]).await;
    second.drive_to_state("recording").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    second.stop().await;
    second.drive_to_state("completed").await;
    assert_eq!(second.sims.handle.mux.live_streams().len(), 1, "one live stream");
    assert_eq!(second.sims.handle.livekit.egresses().len(), 1, "one egress");
    second.assert_clean().await;
    second.app.stop().await;
}

/// A start queued before a stop and stuck in its retry backoff: the stop
/// waits for it, retried with backoff, and becomes a dead letter when it
/// never comes. The stuck start is put in the queue behind the service's
/// back (a due time far ahead), as a start whose attempts keep failing is.
async fn queue_a_stop_behind_a_stuck_start(rig: &Rig) {
    use eventuall::store::{DbTx, subscription::SqlValue};
    let mut tx = DbTx::begin(&rig.app.state.store).await.unwrap();
    tx.execute(
        "insert into recording_commands (command_id, event_id, kind, requested_by, status, attempts, \
         next_attempt_at, created_at, updated_at) values ('00000000-0000-7000-8000-000000000000', $1, 'start', \
         'mod', 'pending', 3, $2, 0, 0)",
        &[SqlValue::Text(EVENT.into()), SqlValue::Int(i64::MAX / 2)],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(rig.stop().await.status(), 202, "a stop behind a queued start is accepted");
    for _ in 0..40 {
        rig.recording.commands_try_step().await.unwrap();
        rig.clock.advance(60_000);
    }
}

#[tokio::test]
async fn a_stop_waiting_for_a_start_that_never_comes_becomes_a_dead_letter_and_can_be_retried() {
    let rig = fresh(TestDb::sqlite().await, &[]).await;
    queue_a_stop_behind_a_stuck_start(&rig).await;
    let dead = rig.app.get("/cloudcaster/dead-letters", Some(&moderator())).await;
    assert_eq!(dead.status(), 200);
    let dead: Value = dead.json().await.unwrap();
    let letters = dead["deadLetters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{dead}");
    assert_eq!(letters[0]["kind"], "stop");
    assert_eq!(letters[0]["attempts"], 5);
    let id = letters[0]["commandId"].as_str().unwrap();

    let viewer_retry =
        rig.app.post_json(&format!("/cloudcaster/dead-letters/{id}/retry"), Some(&viewer()), &json!({})).await;
    assert_eq!(viewer_retry.status(), 403);
    // Issue #22, defect 3: a moderator of another event neither sees nor
    // retries this event's dead letters.
    let elsewhere = token("mod", Role::Moderator, Some(&["elsewhere"]));
    let listed: Value = rig.app.get("/cloudcaster/dead-letters", Some(&elsewhere)).await.json().await.unwrap();
    assert_eq!(listed["deadLetters"], json!([]), "{listed}");
    let foreign_retry =
        rig.app.post_json(&format!("/cloudcaster/dead-letters/{id}/retry"), Some(&elsewhere), &json!({})).await;
    assert_eq!(foreign_retry.status(), 403);
    assert_eq!(rig.recording.dead_letters().await.unwrap().len(), 1, "a refused retry changes nothing");

    assert_eq!(rig.post(&format!("/cloudcaster/dead-letters/{id}/retry"), json!({})).await.status(), 200);
    assert!(rig.recording.dead_letters().await.unwrap().is_empty());
    assert_eq!(rig.post("/cloudcaster/dead-letters/nope/retry", json!({})).await.status(), 404);
    rig.app.stop().await;
}

/// Issue #22, defect 9: a stop with nothing to stop is refused at once
/// (409) and queues nothing; a stop whose recording ended before it ran is
/// done as a no-op and does not stop the recording started after it.
#[tokio::test]
async fn a_stop_with_nothing_to_stop_is_refused_and_never_stops_the_next_recording() {
    let rig = fresh(TestDb::sqlite().await, &[]).await;
    let refused = rig.stop().await;
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conflict", "{body}");
    assert_eq!(rig.recording.commands_try_step().await.unwrap(), Step::Idle, "nothing was queued");

    // A first recording, stopped and ended.
    let first = start_session(&rig).await;
    rig.drive_to_state("recording").await;
    assert_eq!(rig.stop().await.status(), 202);
    rig.drive_to_state("completed").await;
    // A second stop of that first session, still in its retry backoff (as
    // one is when its attempts failed), comes due after the next start.
    {
        use eventuall::store::{DbTx, subscription::SqlValue};
        let mut tx = DbTx::begin(&rig.app.state.store).await.unwrap();
        tx.execute(
            "insert into recording_commands (command_id, event_id, kind, requested_by, status, attempts, \
             next_attempt_at, created_at, updated_at, target_session_id) \
             values ('stale-stop', $1, 'stop', 'mod', 'pending', 2, $2, 0, 0, $3)",
            &[
                SqlValue::Text(EVENT.into()),
                SqlValue::Int(eventuall::clock::Clock::now_millis(&*rig.clock) + 60_000),
                SqlValue::Text(first.clone()),
            ],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    // Nothing queued now; the next start records and no stale stop ends it.
    let second = start_session(&rig).await;
    let recording = rig.drive_to_state("recording").await;
    assert_eq!(recording.session_id.as_deref(), Some(second.as_str()));
    for _ in 0..20 {
        rig.recording.commands_try_step().await.unwrap();
        rig.recording.try_step().await.unwrap();
        rig.clock.advance(5_000);
    }
    assert_eq!(rig.recording.commands_try_step().await.unwrap(), Step::Idle, "the stale stop ran");
    let still = rig.recording.status(EVENT).await.unwrap();
    assert_eq!((still.session_id.as_deref(), still.state.as_str()), (Some(second.as_str()), "recording"));
    assert!(rig.recording.dead_letters().await.unwrap().is_empty());
    rig.stop().await;
    rig.drive_to_state("completed").await;
    rig.assert_clean().await;
    rig.app.stop().await;
}

#[tokio::test]
async fn an_egress_cut_at_its_limit_is_caught_by_the_health_check() {
    let rig = fresh(TestDb::sqlite().await, &[]).await;
    rig.sims.faults().egress(EgressFault::LimitReached { after: Duration::from_millis(300) }, Times::Once);
    start_session(&rig).await;
    rig.drive_until("recording", |s| s.state == "recording" || s.state == "failed").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    rig.fire_timers_after(31_000).await;
    fails_cleanly(&rig, "egress ended").await;
    rig.app.stop().await;
}

#[tokio::test]
async fn an_egress_stuck_starting_is_failed_as_an_orphan() {
    let rig = fresh(TestDb::sqlite().await, &["--recording-orphan-after", "30s"]).await;
    rig.sims.faults().egress(EgressFault::StuckStarting, Times::Once);
    start_session(&rig).await;
    fails_cleanly(&rig, "no progress").await;
    rig.app.stop().await;
}

/// `eventuall commands dead-letters` and `retry` on the database directly.
#[tokio::test]
async fn the_cli_lists_and_retries_dead_letters() {
    let rig = fresh(TestDb::sqlite().await, &[]).await;
    queue_a_stop_behind_a_stuck_start(&rig).await;
    let db = rig.app.stop().await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_eventuall"))
            .args(args)
            .args(["--database-url", &db.url])
            .output()
            .expect("cli runs");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, listed) = cli(&["commands", "dead-letters"]);
    assert!(ok);
    let row: Value = serde_json::from_str(listed.lines().next().expect("one dead letter")).unwrap();
    assert_eq!(row["kind"], "stop");
    let id = row["commandId"].as_str().unwrap().to_owned();
    let (ok, _) = cli(&["commands", "retry", &id]);
    assert!(ok);
    let (_, listed) = cli(&["commands", "dead-letters"]);
    assert!(listed.trim().is_empty(), "{listed}");
    let (ok, _) = cli(&["commands", "retry", &id]);
    assert!(!ok, "retrying a command that is not dead fails");
}

/// The real binary killed with SIGKILL mid-saga, restarted on the same
/// database: the saga finishes with one stream and one egress.
#[tokio::test]
async fn a_kill_9_mid_saga_resumes_without_duplicates() {
    let sims = Simulators::spawn(SimConfig::fast()).await.expect("simulators");
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("events.db").display());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let spawn = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_eventuall"))
            .args(["serve", "--listen", &listen, "--database-url", &db_url, "--jwt-secret", crate::helpers::SECRET])
            .args(["--mux-url", &sims.mux_url, "--livekit-url", &sims.livekit_url])
            .args(["--composite-url", "https://app.example.com/composite"])
            .args(["--recording-poll-every", "20ms"])
            .env("EVENTUALL_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .expect("binary starts")
    };
    let http = reqwest::Client::new();
    let base = format!("http://{listen}");
    let status = |http: reqwest::Client, base: String| async move {
        let response = http.get(format!("{base}/cloudcaster/{EVENT}/status")).bearer_auth(viewer()).send().await;
        match response {
            Ok(r) if r.status() == 200 => r.json::<Value>().await.ok(),
            _ => None,
        }
    };
    let wait_for = |state: &'static str| {
        let http = http.clone();
        let base = base.clone();
        async move {
            for _ in 0..500 {
                if let Some(s) = status(http.clone(), base.clone()).await
                    && s["state"] == state
                {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("never reached {state}");
        }
    };

    let mut first = spawn();
    for _ in 0..500 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = http.post(format!("{base}/cloudcaster/{EVENT}/start")).bearer_auth(moderator()).send().await.unwrap();
    assert_eq!(started.status(), 202);
    wait_for("recording").await;
    first.kill().await.expect("SIGKILL");

    let mut second = spawn();
    let mut stopped = false;
    for _ in 0..500 {
        if let Ok(r) = http.post(format!("{base}/cloudcaster/{EVENT}/stop")).bearer_auth(moderator()).send().await {
            assert_eq!(r.status(), 202);
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped, "the restarted binary answers");
    wait_for("completed").await;
    assert_eq!(sims.handle.mux.live_streams().len(), 1, "one live stream");
    assert_eq!(sims.handle.livekit.egresses().len(), 1, "one egress");
    for _ in 0..100 {
        if sims.handle.leftovers().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sims.handle.leftovers().is_empty(), "{:#?}", sims.handle.leftovers());
    second.kill().await.ok();
}

#[tokio::test]
async fn an_html_bad_gateway_from_mux_is_retried_like_any_5xx() {
    let rig = fresh(TestDb::sqlite().await, &[]).await;
    let faults = rig.sims.faults();
    faults.mux_request(MuxOp::CreateLiveStream, MuxRequestFault::BadGatewayHtml, Times::N(2));
    faults.mux_request(MuxOp::GetLiveStream, MuxRequestFault::BadGatewayHtml, Times::Once);
    start_session(&rig).await;
    let status = rig.drive_to_state("recording").await;
    assert_eq!(rig.sims.handle.mux.live_streams_created(), 1, "the POSTs refused with 502 created nothing twice");
    assert!(status.failure_reason.is_none());
    tokio::time::sleep(Duration::from_millis(20)).await;
    rig.stop().await;
    rig.drive_to_state("completed").await;
    rig.assert_clean().await;
    rig.app.stop().await;
}

/// Simulators whose streams wait `window` for an encoder to come back.
async fn with_reconnect_window(window: Duration) -> Rig {
    let mut config = SimConfig::fast();
    config.mux.reconnect_window_override = Some(window);
    let sims = Arc::new(Simulators::spawn(config).await.expect("simulators"));
    rig(TestDb::sqlite().await, sims, ManualClock::starting_at(1_700_000_000_000), &[]).await
}

async fn wait_for_ingest(rig: &Rig, what: &str, accept: impl Fn(&eventuall_media::sim::LiveStreamSnapshot) -> bool) {
    for _ in 0..250 {
        if rig.sims.handle.mux.live_streams().iter().any(&accept) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the stream never got {what}: {:#?}", rig.sims.handle.mux.live_streams());
}

#[tokio::test]
async fn an_encoder_back_inside_the_reconnect_window_does_not_fail_the_recording() {
    let rig = with_reconnect_window(Duration::from_secs(3)).await;
    start_session(&rig).await;
    let status = rig.drive_to_state("recording").await;
    let stream_id = status.stream_id.clone().expect("stream id");
    assert!(rig.sims.handle.mux.interrupt_ingest(&stream_id, Some(Duration::from_millis(1_000))));

    // The health check runs while the encoder is away.
    rig.fire_timers_after(31_000).await;
    assert_eq!(rig.sims.handle.mux.live_streams()[0].phase, IngestPhase::Disconnected, "checked during the outage");
    let (session, _) = rig.recording.session(status.session_id.as_deref().unwrap()).await.unwrap();
    assert_eq!(session.phase, Phase::Recording, "{:?}", session.failure);

    // And again once it is back on the same asset.
    wait_for_ingest(&rig, "its encoder back", |s| s.phase == IngestPhase::Active && s.encoder_connected).await;
    rig.fire_timers_after(31_000).await;
    let (session, _) = rig.recording.session(status.session_id.as_deref().unwrap()).await.unwrap();
    assert_eq!(session.phase, Phase::Recording, "{:?}", session.failure);

    rig.stop().await;
    rig.drive_to_state("completed").await;
    let recordings = rig.sims.handle.mux.assets().into_iter().filter(|a| a.live_stream_id.is_some()).count();
    assert_eq!(recordings, 1, "one recording asset");
    rig.assert_clean().await;
    rig.app.stop().await;
}

#[tokio::test]
async fn an_encoder_back_after_the_reconnect_window_fails_the_recording() {
    let rig = with_reconnect_window(Duration::from_millis(100)).await;
    start_session(&rig).await;
    let status = rig.drive_to_state("recording").await;
    let stream_id = status.stream_id.clone().expect("stream id");
    assert!(rig.sims.handle.mux.interrupt_ingest(&stream_id, Some(Duration::from_millis(500))));
    // Mux ended the first asset and records the reconnection as a new one:
    // the stream looks `active` again, but the recording was cut.
    wait_for_ingest(&rig, "a second asset", |s| s.phase == IngestPhase::Active && s.recent_asset_ids.len() == 2).await;
    rig.fire_timers_after(31_000).await;
    fails_cleanly(&rig, "reconnect window").await;
    rig.app.stop().await;
}

#[tokio::test]
async fn an_encoder_gone_past_the_reconnect_window_fails_the_recording() {
    let rig = with_reconnect_window(Duration::from_millis(100)).await;
    start_session(&rig).await;
    let status = rig.drive_to_state("recording").await;
    let stream_id = status.stream_id.clone().expect("stream id");
    assert!(rig.sims.handle.mux.interrupt_ingest(&stream_id, None));
    wait_for_ingest(&rig, "idle", |s| s.phase == IngestPhase::Idle).await;
    rig.fire_timers_after(31_000).await;
    fails_cleanly(&rig, "live stream is Idle").await;
    rig.app.stop().await;
}

/// Opens the test's SQLite database beside the service.
async fn sqlite(url: &str) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    sqlx::SqliteConnection::connect(url).await.expect("sqlite opens")
}

#[tokio::test]
async fn a_start_dead_lettered_after_taking_the_lock_releases_it_and_fails_the_session() {
    let rig = fresh(TestDb::sqlite().await, &[]).await;
    let mut db = sqlite(&rig.app.db.url).await;
    // Every attempt of the start takes the lock, records the session, then
    // cannot hand it to the saga.
    sqlx::query(
        "create trigger refuse_activation before insert on recording_sessions_active \
         begin select raise(abort, 'injected: activation refused'); end",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let session_id = start_session(&rig).await;
    for _ in 0..10 {
        rig.recording.commands_try_step().await.unwrap();
        rig.recording.try_step().await.unwrap();
        if !rig.recording.dead_letters().await.unwrap().is_empty() {
            break;
        }
        rig.clock.advance(60_000);
    }
    let dead = rig.recording.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1, "the start was dead-lettered");
    assert_eq!(dead[0].command_id, session_id);

    let status = rig.recording.status(EVENT).await.unwrap();
    assert_eq!(status.state, "failed");
    let reason = status.failure_reason.clone().unwrap_or_default();
    assert!(reason.contains("dead-lettered") && reason.contains("activation refused"), "{reason}");
    let steps: Vec<&str> = status.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(steps.last(), Some(&"RecordingFailed"), "{steps:?}");
    assert!(steps.contains(&"LockReleased"), "{steps:?}");
    let (coordinator, _) = rig.recording.coordinator(EVENT).await.unwrap();
    assert_eq!(coordinator.active, None, "the lock is released, not left to the 12 h expiry");
    assert_eq!(rig.sims.handle.mux.live_streams_created(), 0);
    assert!(rig.sims.handle.livekit.egresses().is_empty());

    // Retrying the dead letter does not lock the room for the failed session.
    sqlx::query("drop trigger refuse_activation").execute(&mut db).await.unwrap();
    assert_eq!(rig.post(&format!("/cloudcaster/dead-letters/{session_id}/retry"), json!({})).await.status(), 200);
    rig.recording.commands_try_step().await.unwrap();
    let (coordinator, _) = rig.recording.coordinator(EVENT).await.unwrap();
    assert_eq!(coordinator.active, None);
    assert_eq!(rig.recording.status(EVENT).await.unwrap().state, "failed");

    // The room records again at once.
    let next = start_session(&rig).await;
    let status = rig.drive_to_state("recording").await;
    assert_eq!(status.session_id.as_deref(), Some(next.as_str()));
    rig.stop().await;
    rig.drive_to_state("completed").await;
    rig.assert_clean().await;
    rig.app.stop().await;
}

#[tokio::test]
async fn a_new_recording_can_start_while_the_clips_of_the_previous_one_are_cut() {
    let rig = fresh(TestDb::sqlite().await, &[]).await;
    rig.sims.faults().mux_asset(AssetKind::Clip, AssetFault::StuckPreparing, Times::Once);
    let first = start_session(&rig).await;
    rig.drive_to_state("recording").await;
    rig.stage("alice", "enter").await;
    rig.clock.advance(4_000);
    rig.stage("alice", "exit").await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    rig.stop().await;
    let status = rig
        .drive_until("a clip being prepared", |s| {
            s.state == "clipping" && s.steps.iter().any(|step| step.step == "ClipCreated")
        })
        .await;
    let steps: Vec<&str> = status.steps.iter().map(|s| s.step.as_str()).collect();
    let at = |name: &str| steps.iter().position(|s| *s == name).unwrap_or_else(|| panic!("{name} in {steps:?}"));
    assert!(at("StreamCompleted") < at("LockReleased"), "{steps:?}");
    assert!(at("LockReleased") < at("RecordingAssetReady"), "{steps:?}");
    let (coordinator, _) = rig.recording.coordinator(EVENT).await.unwrap();
    assert_eq!(coordinator.active, None, "the lock went with the stream, before the clips");
    rig.assert_room_recording(None).await;

    let second = start_session(&rig).await;
    rig.drive_until("the second recording", |s| {
        s.session_id.as_deref() == Some(second.as_str()) && s.state == "recording"
    })
    .await;
    let (earlier, _) = rig.recording.session(&first).await.unwrap();
    assert_eq!(earlier.phase, Phase::Clipping, "the first session is still cutting clips");
    rig.assert_room_recording(Some(&second)).await;

    tokio::time::sleep(Duration::from_millis(20)).await;
    rig.stop().await;
    rig.drive_to_state("completed").await;
    // The stuck clip of the first session is given up as an orphan.
    rig.clock.advance(11 * 60 * 1000);
    for _ in 0..50 {
        rig.recording.try_step().await.unwrap();
        if rig.recording.session(&first).await.unwrap().0.phase == Phase::Completed {
            break;
        }
    }
    let (earlier, _) = rig.recording.session(&first).await.unwrap();
    assert_eq!(earlier.phase, Phase::Completed);
    assert!(earlier.clips.values().all(|c| c.status == ClipStatus::Errored), "{:?}", earlier.clips);
    rig.assert_clean().await;
    rig.app.stop().await;
}

/// Two service processes on one PostgreSQL database: only the lease holder
/// runs the saga, and the other takes over once the holder gives it up.
#[tokio::test]
async fn on_postgres_one_process_at_a_time_runs_the_saga() {
    let a = fresh(TestDb::postgres().await, &["--recording-poll-every", "50ms"]).await;
    let flags = [
        "--mux-url",
        a.sims.mux_url.as_str(),
        "--livekit-url",
        a.sims.livekit_url.as_str(),
        "--recording-worker",
        "manual",
        "--composite-url",
        "https://app.example.com/composite",
        "--recording-poll-every",
        "50ms",
    ];
    let b_app =
        Application::build_with_clock(config_with(&a.app.db.url, &flags), a.clock.clone()).await.expect("b builds");
    let b = b_app.state().recording.clone();

    // A steps first and takes the lease.
    assert_eq!(a.recording.commands_try_step().await.unwrap(), Step::Idle);
    start_session(&a).await;
    let b_steps_nothing = || async {
        for _ in 0..5 {
            assert_eq!(b.commands_try_step().await.unwrap(), Step::Idle, "B must not take A's commands");
            assert_eq!(b.try_step().await.unwrap(), Step::Idle, "B must not drive A's sessions");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    b_steps_nothing().await;
    assert_eq!(a.recording.status(EVENT).await.unwrap().state, "none", "the start is still queued");
    a.drive_to_state("egress_started").await;
    b_steps_nothing().await;
    a.drive_to_state("recording").await;
    assert_eq!(a.sims.handle.mux.live_streams_created(), 1);

    // A shuts down (giving the lease up); B takes over and finishes.
    a.recording.release_lease().await;
    b.enqueue(EVENT, eventuall::recording::CommandKind::Stop, "mod").await.unwrap();
    let mut done = false;
    for _ in 0..400 {
        b.commands_try_step().await.unwrap();
        b.try_step().await.unwrap();
        if b.status(EVENT).await.unwrap().state == "completed" {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        a.clock.advance(IDLE_ADVANCE_MS);
    }
    assert!(done, "B never completed the session: {:#?}", b.status(EVENT).await.unwrap());
    assert_eq!(a.sims.handle.mux.live_streams_created(), 1, "one live stream");
    assert_eq!(a.sims.handle.livekit.egresses().len(), 1, "one egress");
    a.assert_clean().await;
    drop(b);
    drop(b_app);
    a.app.stop().await.drop_db().await;
}

/// Issue #22, defect 5: starts sent at once get one 202 and 409 for the
/// rest, never two 202s of which one is later refused silently. The check
/// before the insert can pass for several; the database's index of one
/// pending start per event decides.
async fn simultaneous_starts(db: TestDb) {
    let rig = fresh(db, &[]).await;
    let answers = futures::future::join_all((0..8).map(|_| rig.start())).await;
    let mut statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, [202, 409, 409, 409, 409, 409, 409, 409]);
    // The index itself: a second pending start cannot be stored.
    use eventuall::store::{DbTx, subscription::SqlValue};
    let mut tx = DbTx::begin(&rig.app.state.store).await.unwrap();
    let second = tx
        .execute(
            "insert into recording_commands (command_id, event_id, kind, requested_by, status, attempts, \
             next_attempt_at, created_at, updated_at) values ('second', $1, 'start', 'mod', 'pending', 0, 0, 0, 0)",
            &[SqlValue::Text(EVENT.into())],
        )
        .await;
    assert!(second.is_err(), "a second pending start was stored");
    drop(tx);
    rig.drive_to_state("recording").await;
    rig.stop().await;
    rig.drive_to_state("completed").await;
    rig.app.stop().await.drop_db().await;
}

#[tokio::test]
async fn simultaneous_starts_get_one_202_on_sqlite() {
    simultaneous_starts(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn simultaneous_starts_get_one_202_on_postgres() {
    simultaneous_starts(TestDb::postgres().await).await;
}
