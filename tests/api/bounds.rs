//! The seed's presence numbers with the service's own defaults, each on
//! both sides of its bound on the manual clock (issue #22, defect 8): away
//! after 90 s without a heartbeat, found by the sweep every 30 s; offline
//! users forgotten after 24 h, by the durable timer of a room that was
//! evicted from memory meanwhile.

use std::sync::Arc;
use std::time::Duration;

use eventuall::auth::Role;
use eventuall::clock::{Clock, ManualClock};
use eventuall::server::Application;
use eventuall::timers::{Dispatch, Timers};
use serde_json::Value;

use crate::helpers::{TestApp, TestDb, config_with_defaults, presence_of, serve_built, token};

const SECOND: i64 = 1_000;

struct Presence {
    app: TestApp,
    clock: Arc<ManualClock>,
    timers: Arc<Timers>,
    dispatch: Dispatch,
}

impl Presence {
    /// The service with default presence timings; only eviction is fast
    /// (not one of the seed's numbers) so that the forget timer meets an
    /// evicted room.
    async fn start() -> Self {
        let db = TestDb::sqlite().await;
        let config = config_with_defaults(&db.url, &["--evict-after", "200ms"]);
        assert_eq!(Duration::from(config.away_after), Duration::from_secs(90));
        assert_eq!(Duration::from(config.sweep_every), Duration::from_secs(30));
        assert_eq!(Duration::from(config.forget_after), Duration::from_secs(24 * 3600));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let clock = ManualClock::starting_at(now);
        let app = Application::build_with_clock(config, clock.clone()).await.expect("app builds");
        let timers = app.timers();
        let dispatch = Application::timer_dispatch(app.state());
        Self { app: serve_built(db, app), clock, timers, dispatch }
    }

    async fn advance_and_fire(&self, millis: i64) {
        self.clock.advance(millis);
        self.timers.fire_due(&self.dispatch).await.expect("timers fire");
    }

    /// Waits until the room's sweep timer is armed for later than now and
    /// returns its due time. The room arms it after answering (a join, a
    /// fired sweep), so the clock must not move before that.
    async fn sweep_armed(&self, event: &str) -> i64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let timer = self.timers.get(&format!("room-{event}"), "sweep").await.unwrap();
            if let Some(timer) = timer.filter(|t| t.due_at > self.clock.now_millis()) {
                return timer.due_at;
            }
            assert!(tokio::time::Instant::now() < deadline, "the sweep of {event} was not re-armed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn snapshot(&self, event: &str) -> Value {
        let reader = token("reader", Role::Participant, None);
        self.app.get(&format!("/event/{event}/snapshot"), Some(&reader)).await.json().await.unwrap()
    }

    async fn status_of(&self, event: &str, user: &str) -> Option<String> {
        presence_of(&self.snapshot(event).await, user).map(|p| p["status"].as_str().unwrap().to_owned())
    }

    async fn wait_until_evicted(&self, event: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.app.state.rooms.is_live(event) {
            assert!(tokio::time::Instant::now() < deadline, "room {event} was not evicted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn a_silent_user_is_away_at_ninety_seconds_found_by_the_thirty_second_sweep() {
    let p = Presence::start().await;
    let (_socket, _) = p.app.join("quiet", &token("alice", Role::Participant, None)).await;
    let joined = p.clock.now_millis();
    // Sweeps at 30 s and 60 s find a user silent for less than 90 s.
    assert_eq!(p.sweep_armed("quiet").await, joined + 30 * SECOND);
    p.advance_and_fire(30 * SECOND).await;
    assert_eq!(p.sweep_armed("quiet").await, joined + 60 * SECOND, "re-armed every 30 s");
    p.advance_and_fire(30 * SECOND).await;
    assert_eq!(p.sweep_armed("quiet").await, joined + 90 * SECOND);
    assert_eq!(p.status_of("quiet", "alice").await.as_deref(), Some("online"));
    // 89.999 s: the next sweep is not due yet, and alice is online.
    p.advance_and_fire(30 * SECOND - 1).await;
    assert_eq!(p.status_of("quiet", "alice").await.as_deref(), Some("online"));
    // 90 s: the sweep is due and she has been silent for 90 s.
    p.advance_and_fire(1).await;
    assert_eq!(p.status_of("quiet", "alice").await.as_deref(), Some("away"));
    p.app.stop().await;
}

#[tokio::test]
async fn an_offline_user_is_forgotten_at_twenty_four_hours_by_an_evicted_rooms_timer() {
    let p = Presence::start().await;
    let (socket, _) = p.app.join("gone", &token("bob", Role::Participant, None)).await;
    p.clock.advance(SECOND);
    drop(socket);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while p.status_of("gone", "bob").await.as_deref() != Some("offline") {
        assert!(tokio::time::Instant::now() < deadline, "bob never went offline");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last_seen = presence_of(&p.snapshot("gone").await, "bob").unwrap()["lastSeen"].as_i64().unwrap();
    let until_forgotten = last_seen + 24 * 3600 * SECOND - p.clock.now_millis();
    p.sweep_armed("gone").await;

    // One millisecond before: the room is evicted, the timer not yet due.
    p.wait_until_evicted("gone").await;
    p.advance_and_fire(until_forgotten - 1).await;
    // The sweep still armed from while bob was connected ran; the next is
    // armed for his forget time.
    assert_eq!(p.sweep_armed("gone").await, last_seen + 24 * 3600 * SECOND, "armed for the forget time");
    assert_eq!(p.status_of("gone", "bob").await.as_deref(), Some("offline"), "listed until 24 h");

    // At 24 h: the durable timer wakes the evicted room, which forgets bob.
    p.wait_until_evicted("gone").await;
    p.advance_and_fire(1).await;
    assert_eq!(p.status_of("gone", "bob").await, None, "forgotten at 24 h");
    p.app.stop().await;
}
