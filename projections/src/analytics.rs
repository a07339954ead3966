//! Per-event analytics: attendance, stage time, queue waiting time,
//! recording sessions and their clips.
//!
//! Unlike [`crate::presence`], these read models are running totals: the
//! change an event makes depends on the rows it touches (a user's second tab
//! does not make them "arrive" again). The fold is still pure: the runner
//! asks [`keys`] which rows an event touches, loads them into [`Rows`]
//! (absent rows stay absent), calls [`apply`], and writes every row in
//! [`Rows`] back. A rebuild runs the very same fold from position 0, so it
//! cannot disagree with incremental processing.
//!
//! Definitions (documented for SQL users in `docs/ANALYTICS.md`):
//! - a user is *present* while they have at least one open connection
//!   (status `online` or `away`); their presence time is the union of those
//!   spans, counted when the span ends;
//! - *concurrent users* counts present users, its peak is the highest value
//!   reached and the first time it was reached;
//! - stage time is the sum of closed stays on stage;
//! - a queue wait starts when a user enters `pending` (queued, or sent back
//!   from live) and ends when they are promoted (`promoted`) or leave the
//!   queue from `pending` (`removed`). A user queued straight into `live`
//!   waited 0 ms.
//! - a recording session (stream `recording-{sessionId}`) belongs to the
//!   live event its `RecordingRequested` names; its recording runs from
//!   `RecordingStarted` to the first `EgressStopped` after it (the recorder
//!   actually stopping, on a normal stop or in compensation), which is its
//!   `duration_ms`; its outcome is `completed` or `failed` once terminal,
//!   else the phase it is in (`requested`, `recording`, `processing`);
//! - a clip is one participant's stay on stage cut from a recording
//!   (`ClipsRequested`), `requested` → `created` → `ready` or `errored`.
//!
//! Heartbeats, away/forget sweeps, the room's `RecordingChanged` (the
//! recording streams say more) and coordinator locks change nothing here.

use std::collections::HashMap;

use eventuall_domain::queue::{QueueEvent, QueueList};
use eventuall_domain::recording::SessionEvent;
use eventuall_domain::room::RoomEvent;

/// One event, as this projection reads it, with its stream's entity id
/// (passed alongside to [`keys`] and [`apply`]): the live event's id for
/// room and queue events, the session id for recording events.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    Room(&'a RoomEvent),
    Queue(&'a QueueEvent),
    Recording(&'a SessionEvent),
}

/// Totals of one live event (`analytics_events`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventTotals {
    pub event_id: String,
    /// Users with at least one open connection now.
    pub present_users: i64,
    pub peak_concurrent_users: i64,
    /// When the peak was first reached.
    pub peak_at: Option<i64>,
    pub first_activity_at: Option<i64>,
    pub last_activity_at: Option<i64>,
}

/// One user's attendance of one live event (`analytics_attendance`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attendance {
    pub event_id: String,
    pub user_id: String,
    pub first_joined_at: i64,
    /// When the user's last presence span ended (null while present).
    pub last_left_at: Option<i64>,
    pub open_connections: i64,
    /// Start of the current presence span (null while absent).
    pub present_since: Option<i64>,
    /// Sum of finished presence spans.
    pub present_ms: i64,
    /// Connections opened (tabs, reconnects, LiveKit joins).
    pub sessions: i64,
}

/// One user's time on stage in one live event (`analytics_stage_time`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StageTime {
    pub event_id: String,
    pub user_id: String,
    /// Start of the current stay (null while off stage).
    pub on_stage_since: Option<i64>,
    pub stage_ms: i64,
    pub stage_entries: i64,
}

/// How a queue wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    Promoted,
    Removed,
}

impl WaitOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitOutcome::Promoted => "promoted",
            WaitOutcome::Removed => "removed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "promoted" => Some(WaitOutcome::Promoted),
            "removed" => Some(WaitOutcome::Removed),
            _ => None,
        }
    }
}

/// One wait in the queue (`analytics_queue_waits`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueWait {
    pub event_id: String,
    pub user_id: String,
    pub queued_at: i64,
    /// Null while still waiting.
    pub ended_at: Option<i64>,
    pub outcome: Option<WaitOutcome>,
}

impl QueueWait {
    pub fn wait_ms(&self) -> Option<i64> {
        self.ended_at.map(|end| end - self.queued_at)
    }
}

/// Where a recording session is (`analytics_recording_sessions.outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordingOutcome {
    /// Requested, not recording yet.
    Requested,
    Recording,
    /// Stopped; the asset and clips are being prepared.
    Processing,
    Completed,
    Failed,
}

impl RecordingOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Recording => "recording",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Requested, Self::Recording, Self::Processing, Self::Completed, Self::Failed]
            .into_iter()
            .find(|o| o.as_str() == raw)
    }
}

/// One recording session (`analytics_recording_sessions`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingRow {
    pub event_id: String,
    pub session_id: String,
    pub requested_by: String,
    pub requested_at: i64,
    pub recording_started_at: Option<i64>,
    pub recording_stopped_at: Option<i64>,
    /// `recording_stopped_at - recording_started_at`.
    pub duration_ms: Option<i64>,
    /// The asset's own duration as the media service measured it.
    pub asset_duration_ms: Option<i64>,
    /// When it completed or failed.
    pub ended_at: Option<i64>,
    pub outcome: RecordingOutcome,
    pub failure_reason: Option<String>,
}

/// Where a clip is (`analytics_clips.status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClipOutcome {
    Requested,
    Created,
    Ready,
    Errored,
}

impl ClipOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Created => "created",
            Self::Ready => "ready",
            Self::Errored => "errored",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Requested, Self::Created, Self::Ready, Self::Errored].into_iter().find(|o| o.as_str() == raw)
    }
}

/// One clip of one participant (`analytics_clips`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipRow {
    pub event_id: String,
    pub session_id: String,
    pub clip_id: String,
    pub user_id: String,
    /// Milliseconds from the recording's start (the plan's seconds × 1000).
    pub start_ms: i64,
    pub end_ms: i64,
    pub requested_at: i64,
    /// When it became ready or errored.
    pub finished_at: Option<i64>,
    pub status: ClipOutcome,
    pub error: Option<String>,
}

/// A row an event reads and writes, by primary key (waits: the user's open
/// wait, if any; recordings and clips: by session, whose live event the
/// session row knows).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Totals { event_id: String },
    Attendance { event_id: String, user_id: String },
    Stage { event_id: String, user_id: String },
    OpenWait { event_id: String, user_id: String },
    Recording { session_id: String },
    Clip { session_id: String, clip_id: String },
}

/// The rows touched by a batch of events: loaded before, written after.
#[derive(Debug, Default)]
pub struct Rows {
    pub totals: HashMap<String, EventTotals>,
    pub attendance: HashMap<(String, String), Attendance>,
    pub stage: HashMap<(String, String), StageTime>,
    /// Open waits by (event, user).
    pub open_waits: HashMap<(String, String), QueueWait>,
    /// Waits that ended during the batch (their rows get their end).
    pub ended_waits: Vec<QueueWait>,
    /// Recording sessions by session id.
    pub recordings: HashMap<String, RecordingRow>,
    /// Clips by (session id, clip id).
    pub clips: HashMap<(String, String), ClipRow>,
}

/// The rows `input` of live event `event_id` reads (to load before [`apply`]).
pub fn keys(event_id: &str, input: Input<'_>) -> Vec<Key> {
    let pair = |user_id: &str| (event_id.to_owned(), user_id.to_owned());
    match input {
        Input::Room(RoomEvent::ConnectionOpened { user_id, .. } | RoomEvent::ConnectionClosed { user_id, .. }) => {
            let (event_id, user_id) = pair(user_id);
            vec![Key::Totals { event_id: event_id.clone() }, Key::Attendance { event_id, user_id }]
        }
        Input::Room(RoomEvent::StageEntered { user_id, .. } | RoomEvent::StageExited { user_id, .. }) => {
            let (event_id, user_id) = pair(user_id);
            vec![Key::Stage { event_id, user_id }]
        }
        Input::Queue(
            QueueEvent::ParticipantQueued { user_id, .. }
            | QueueEvent::ParticipantPromoted { user_id, .. }
            | QueueEvent::ParticipantSentBack { user_id, .. }
            | QueueEvent::ParticipantRemoved { user_id, .. },
        ) => {
            let (event_id, user_id) = pair(user_id);
            vec![Key::OpenWait { event_id, user_id }]
        }
        Input::Recording(event) => {
            // `event_id` is the stream's entity id: the session id.
            let session_id = event_id.to_owned();
            let clips: Vec<&String> = match event {
                SessionEvent::ClipsRequested { clips, .. } => clips.iter().map(|c| &c.clip_id).collect(),
                SessionEvent::ClipCreated { clip_id, .. }
                | SessionEvent::ClipReady { clip_id, .. }
                | SessionEvent::ClipErrored { clip_id, .. } => vec![clip_id],
                _ => vec![],
            };
            let mut keys = vec![Key::Recording { session_id: session_id.clone() }];
            keys.extend(
                clips.into_iter().map(|clip_id| Key::Clip { session_id: session_id.clone(), clip_id: clip_id.clone() }),
            );
            keys
        }
        _ => vec![],
    }
}

/// The queue event types that start or end a wait: the runner skips the
/// others (document updates, moves, repairs: half of a queue's log) without
/// decoding them.
pub const QUEUE_EVENT_TYPES: [&str; 4] =
    ["ParticipantQueued", "ParticipantPromoted", "ParticipantSentBack", "ParticipantRemoved"];

/// Applies one event of live event `event_id` to the rows it touches.
pub fn apply(rows: &mut Rows, event_id: &str, input: Input<'_>) {
    match input {
        Input::Room(event) => apply_room(rows, event_id, event),
        Input::Queue(event) => apply_queue(rows, event_id, event),
        Input::Recording(event) => apply_recording(rows, event_id, event),
    }
}

/// Milliseconds of a plan's seconds, rounded (plans are in seconds with
/// fractions; the table keeps integers like every other time).
fn seconds_to_ms(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

fn apply_recording(rows: &mut Rows, session_id: &str, event: &SessionEvent) {
    if let SessionEvent::Requested { event_id, requested_by, at, .. } = event {
        rows.recordings.entry(session_id.to_owned()).or_insert_with(|| RecordingRow {
            event_id: event_id.clone(),
            session_id: session_id.to_owned(),
            requested_by: requested_by.clone(),
            requested_at: *at,
            recording_started_at: None,
            recording_stopped_at: None,
            duration_ms: None,
            asset_duration_ms: None,
            ended_at: None,
            outcome: RecordingOutcome::Requested,
            failure_reason: None,
        });
        return;
    }
    // Any other event of a session never seen requested (a log that starts
    // mid-session) has no live event to count under: nothing changes.
    let Some(session) = rows.recordings.get_mut(session_id) else { return };
    let terminal = matches!(session.outcome, RecordingOutcome::Completed | RecordingOutcome::Failed);
    match event {
        SessionEvent::RecordingStarted { at, .. } if session.recording_started_at.is_none() => {
            session.recording_started_at = Some(*at);
            if !terminal {
                session.outcome = RecordingOutcome::Recording;
            }
        }
        SessionEvent::StopRequested { .. } if session.outcome == RecordingOutcome::Recording => {
            session.outcome = RecordingOutcome::Processing;
        }
        SessionEvent::EgressStopped { at, .. } => {
            if let (Some(started), None) = (session.recording_started_at, session.recording_stopped_at) {
                session.recording_stopped_at = Some(*at);
                session.duration_ms = Some((*at - started).max(0));
            }
            if session.outcome == RecordingOutcome::Recording {
                session.outcome = RecordingOutcome::Processing;
            }
        }
        SessionEvent::AssetReady { duration, .. } => session.asset_duration_ms = Some(seconds_to_ms(*duration)),
        SessionEvent::FailureDetected { reason, .. } if session.failure_reason.is_none() => {
            session.failure_reason = Some(reason.clone());
        }
        SessionEvent::Completed { at } if !terminal => {
            session.outcome = RecordingOutcome::Completed;
            session.ended_at = Some(*at);
        }
        SessionEvent::Failed { reason, at } if !terminal => {
            session.outcome = RecordingOutcome::Failed;
            session.ended_at = Some(*at);
            session.failure_reason.get_or_insert_with(|| reason.clone());
        }
        SessionEvent::ClipsRequested { clips, at } => {
            let event_id = session.event_id.clone();
            for plan in clips {
                rows.clips.entry((session_id.to_owned(), plan.clip_id.clone())).or_insert_with(|| ClipRow {
                    event_id: event_id.clone(),
                    session_id: session_id.to_owned(),
                    clip_id: plan.clip_id.clone(),
                    user_id: plan.user_id.clone(),
                    start_ms: seconds_to_ms(plan.start),
                    end_ms: seconds_to_ms(plan.end),
                    requested_at: *at,
                    finished_at: None,
                    status: ClipOutcome::Requested,
                    error: None,
                });
            }
        }
        SessionEvent::ClipCreated { clip_id, .. } => {
            if let Some(clip) = rows.clips.get_mut(&(session_id.to_owned(), clip_id.clone()))
                && clip.status == ClipOutcome::Requested
            {
                clip.status = ClipOutcome::Created;
            }
        }
        SessionEvent::ClipReady { clip_id, at } => {
            if let Some(clip) = rows.clips.get_mut(&(session_id.to_owned(), clip_id.clone()))
                && clip.finished_at.is_none()
            {
                clip.status = ClipOutcome::Ready;
                clip.finished_at = Some(*at);
            }
        }
        SessionEvent::ClipErrored { clip_id, reason, at } => {
            if let Some(clip) = rows.clips.get_mut(&(session_id.to_owned(), clip_id.clone()))
                && clip.finished_at.is_none()
            {
                clip.status = ClipOutcome::Errored;
                clip.error = Some(reason.clone());
                clip.finished_at = Some(*at);
            }
        }
        _ => {}
    }
}

fn apply_room(rows: &mut Rows, event_id: &str, event: &RoomEvent) {
    match event {
        RoomEvent::ConnectionOpened { user_id, at, .. } => {
            let attendance =
                rows.attendance.entry((event_id.to_owned(), user_id.clone())).or_insert_with(|| Attendance {
                    event_id: event_id.to_owned(),
                    user_id: user_id.clone(),
                    first_joined_at: *at,
                    ..Attendance::default()
                });
            attendance.sessions += 1;
            attendance.open_connections += 1;
            let arrived = attendance.open_connections == 1;
            if arrived {
                attendance.present_since = Some(*at);
            }
            let totals = totals(rows, event_id, *at);
            if arrived {
                totals.present_users += 1;
                if totals.present_users > totals.peak_concurrent_users {
                    totals.peak_concurrent_users = totals.present_users;
                    totals.peak_at = Some(*at);
                }
            }
        }
        RoomEvent::ConnectionClosed { user_id, at, .. } => {
            // A close the projection never saw open (a log that starts
            // mid-event) changes nothing rather than going negative.
            let Some(attendance) = rows.attendance.get_mut(&(event_id.to_owned(), user_id.clone())) else {
                return;
            };
            if attendance.open_connections == 0 {
                return;
            }
            attendance.open_connections -= 1;
            let left = attendance.open_connections == 0;
            if left {
                let since = attendance.present_since.take().unwrap_or(*at);
                attendance.present_ms += (*at - since).max(0);
                attendance.last_left_at = Some(*at);
            }
            let totals = totals(rows, event_id, *at);
            if left {
                totals.present_users = (totals.present_users - 1).max(0);
            }
        }
        RoomEvent::StageEntered { user_id, at } => {
            let stage = stage(rows, event_id, user_id);
            if stage.on_stage_since.is_none() {
                stage.on_stage_since = Some(*at);
                stage.stage_entries += 1;
            }
        }
        RoomEvent::StageExited { user_id, at } => {
            let stage = stage(rows, event_id, user_id);
            if let Some(since) = stage.on_stage_since.take() {
                stage.stage_ms += (*at - since).max(0);
            }
        }
        RoomEvent::HeartbeatReceived { .. }
        | RoomEvent::UserWentAway { .. }
        | RoomEvent::UserForgotten { .. }
        | RoomEvent::RecordingChanged { .. }
        | RoomEvent::LiveKitDeliveryApplied { .. } => {}
    }
}

fn totals<'r>(rows: &'r mut Rows, event_id: &str, at: i64) -> &'r mut EventTotals {
    let totals = rows
        .totals
        .entry(event_id.to_owned())
        .or_insert_with(|| EventTotals { event_id: event_id.to_owned(), ..EventTotals::default() });
    totals.first_activity_at = Some(totals.first_activity_at.map_or(at, |t| t.min(at)));
    totals.last_activity_at = Some(totals.last_activity_at.map_or(at, |t| t.max(at)));
    totals
}

fn stage<'r>(rows: &'r mut Rows, event_id: &str, user_id: &str) -> &'r mut StageTime {
    rows.stage.entry((event_id.to_owned(), user_id.to_owned())).or_insert_with(|| StageTime {
        event_id: event_id.to_owned(),
        user_id: user_id.to_owned(),
        ..StageTime::default()
    })
}

fn apply_queue(rows: &mut Rows, event_id: &str, event: &QueueEvent) {
    let key = |user_id: &str| (event_id.to_owned(), user_id.to_owned());
    let start = |rows: &mut Rows, user_id: &str, at: i64| {
        // An open wait already there (a replayed annotation) keeps its start.
        rows.open_waits.entry(key(user_id)).or_insert_with(|| QueueWait {
            event_id: event_id.to_owned(),
            user_id: user_id.to_owned(),
            queued_at: at,
            ended_at: None,
            outcome: None,
        });
    };
    let end = |rows: &mut Rows, user_id: &str, at: i64, outcome: WaitOutcome| {
        if let Some(mut wait) = rows.open_waits.remove(&key(user_id)) {
            wait.ended_at = Some(at);
            wait.outcome = Some(outcome);
            rows.ended_waits.push(wait);
        }
    };
    match event {
        QueueEvent::ParticipantQueued { user_id, list: QueueList::Pending, at, .. }
        | QueueEvent::ParticipantSentBack { user_id, at, .. } => start(rows, user_id, *at),
        QueueEvent::ParticipantQueued { user_id, list: QueueList::Live, at, .. } => {
            start(rows, user_id, *at);
            end(rows, user_id, *at, WaitOutcome::Promoted);
        }
        QueueEvent::ParticipantPromoted { user_id, at, .. } => end(rows, user_id, *at, WaitOutcome::Promoted),
        QueueEvent::ParticipantRemoved { user_id, list: QueueList::Pending, at, .. } => {
            end(rows, user_id, *at, WaitOutcome::Removed)
        }
        QueueEvent::ParticipantRemoved { list: QueueList::Live, .. }
        | QueueEvent::ParticipantMoved { .. }
        | QueueEvent::UpdateApplied { .. }
        | QueueEvent::QueueRepaired { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use eventuall_domain::queue::UpdateOrigin;
    use eventuall_domain::room::{CloseReason, ConnectionKind};

    use super::*;

    fn open(connection: &str, user: &str, at: i64) -> RoomEvent {
        RoomEvent::ConnectionOpened {
            connection_id: connection.into(),
            client_id: None,
            user_id: user.into(),
            name: user.into(),
            kind: ConnectionKind::WebSocket,
            at,
        }
    }

    fn close(connection: &str, user: &str, at: i64) -> RoomEvent {
        RoomEvent::ConnectionClosed {
            connection_id: connection.into(),
            user_id: user.into(),
            reason: CloseReason::Closed,
            at,
        }
    }

    #[test]
    fn the_queue_events_read_are_exactly_those_that_touch_a_wait() {
        let at = 1;
        let by = || "mod".to_owned();
        let every_kind = [
            QueueEvent::UpdateApplied { update: String::new(), origin: UpdateOrigin::Client, by: by(), at },
            QueueEvent::ParticipantQueued {
                user_id: "u".into(),
                name: "U".into(),
                list: QueueList::Pending,
                index: 0,
                by: by(),
                at,
            },
            QueueEvent::ParticipantMoved {
                user_id: "u".into(),
                list: QueueList::Pending,
                from: 0,
                to: 1,
                by: by(),
                at,
            },
            QueueEvent::ParticipantPromoted { user_id: "u".into(), by: by(), at },
            QueueEvent::ParticipantSentBack { user_id: "u".into(), by: by(), at },
            QueueEvent::ParticipantRemoved { user_id: "u".into(), list: QueueList::Pending, by: by(), at },
            QueueEvent::QueueRepaired { removed: vec![], by: by(), at },
        ];
        for event in &every_kind {
            // Externally tagged: the one key is the event type.
            let json = serde_json::to_value(event).unwrap();
            let event_type = json.as_object().unwrap().keys().next().unwrap().clone();
            let touches = !keys("e", Input::Queue(event)).is_empty();
            assert_eq!(touches, QUEUE_EVENT_TYPES.contains(&event_type.as_str()), "{event_type}");
        }
    }

    fn fold(events: &[RoomEvent]) -> Rows {
        let mut rows = Rows::default();
        for event in events {
            apply(&mut rows, "e", Input::Room(event));
        }
        rows
    }

    #[test]
    fn a_second_tab_is_not_a_second_arrival() {
        let rows = fold(&[open("c1", "alice", 10), open("c2", "alice", 20), close("c1", "alice", 30)]);
        let alice = &rows.attendance[&("e".into(), "alice".into())];
        assert_eq!((alice.sessions, alice.open_connections, alice.present_since), (2, 1, Some(10)));
        assert_eq!(rows.totals["e"].peak_concurrent_users, 1);
        assert_eq!(rows.totals["e"].present_users, 1);
    }

    #[test]
    fn presence_time_is_counted_when_the_last_connection_closes() {
        let rows = fold(&[
            open("c1", "alice", 10),
            open("c2", "alice", 20),
            close("c1", "alice", 30),
            close("c2", "alice", 45),
        ]);
        let alice = &rows.attendance[&("e".into(), "alice".into())];
        assert_eq!((alice.present_ms, alice.last_left_at, alice.present_since), (35, Some(45), None));
        assert_eq!(rows.totals["e"].present_users, 0);
    }

    #[test]
    fn the_peak_remembers_when_it_was_first_reached() {
        let rows = fold(&[open("a", "alice", 1), open("b", "bob", 2), close("a", "alice", 3), open("a2", "alice", 4)]);
        assert_eq!(rows.totals["e"].peak_concurrent_users, 2);
        assert_eq!(rows.totals["e"].peak_at, Some(2));
    }

    #[test]
    fn a_close_never_seen_open_changes_nothing() {
        assert!(fold(&[close("c", "ghost", 5)]).attendance.is_empty());
    }

    #[test]
    fn stage_time_sums_closed_stays_and_ignores_repeated_entries() {
        let rows = fold(&[
            RoomEvent::StageEntered { user_id: "bob".into(), at: 100 },
            RoomEvent::StageEntered { user_id: "bob".into(), at: 150 },
            RoomEvent::StageExited { user_id: "bob".into(), at: 300 },
            RoomEvent::StageExited { user_id: "bob".into(), at: 400 },
        ]);
        let bob = &rows.stage[&("e".into(), "bob".into())];
        assert_eq!((bob.stage_ms, bob.stage_entries, bob.on_stage_since), (200, 1, None));
    }

    #[test]
    fn a_wait_ends_when_promoted_or_removed_from_pending() {
        let mut rows = Rows::default();
        let queued = |user: &str, at| QueueEvent::ParticipantQueued {
            user_id: user.into(),
            name: user.into(),
            list: QueueList::Pending,
            index: 0,
            by: "mod".into(),
            at,
        };
        for event in [
            queued("carol", 10),
            queued("dave", 20),
            QueueEvent::ParticipantPromoted { user_id: "carol".into(), by: "mod".into(), at: 70 },
            QueueEvent::ParticipantRemoved {
                user_id: "dave".into(),
                list: QueueList::Pending,
                by: "mod".into(),
                at: 25,
            },
        ] {
            apply(&mut rows, "e", Input::Queue(&event));
        }
        let waits: Vec<_> = rows.ended_waits.iter().map(|w| (w.user_id.as_str(), w.wait_ms(), w.outcome)).collect();
        assert_eq!(
            waits,
            vec![("carol", Some(60), Some(WaitOutcome::Promoted)), ("dave", Some(5), Some(WaitOutcome::Removed))]
        );
        assert!(rows.open_waits.is_empty());
    }
}
