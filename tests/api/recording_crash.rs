//! `kill -9` of the real `eventuall` binary inside each step of the
//! recording saga, then a restart on the same database: the session still
//! ends in a clean terminal state, and no Mux live stream, LiveKit egress or
//! clip was ever created twice.
//!
//! The crash points do not depend on timing luck. The simulators run in this
//! test process and hold the response of the call under test after it took
//! effect ([`Faults::hold`]): the service is provably inside that call (a
//! create has created, the result is not recorded) when it is killed. The
//! one step without an external call, right after the lock is taken, uses
//! the service's own stall point (`EVENTUALL_RECORDING_STALL_AT`), and the
//! recording itself is a state the status route shows.

use std::time::Duration;

use eventuall::auth::Role;
use eventuall_media::sim::{Faults, HoldOn, MuxOp, SimConfig, Simulators, TwirpMethod};
use serde_json::{Value, json};
use tokio::process::Child;

use crate::helpers::{SECRET, token};

const EVENT: &str = "crash";
/// Upper bound of every wait: the whole saga takes about a second here.
const WAIT: Duration = Duration::from_secs(30);
/// Alice's stay on stage must outlast Mux's 0.5 s clip minimum (clips are
/// planned in the service's real clock).
const ON_STAGE: Duration = Duration::from_millis(700);

/// Where the service is when it is killed.
#[derive(Clone, Copy, Debug)]
enum At {
    /// The response of a simulator call, held after the call took effect
    /// (after `skip` earlier matching calls went through).
    Hold { on: HoldOn, skip: u32 },
    /// The service's stall point of that name.
    Stall(&'static str),
    /// The status route shows the session in this state.
    State(&'static str),
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
struct Crash {
    at: At,
    /// The crash point comes after the moderator's stop.
    after_stop: bool,
    /// Step names the status must show when the kill happens: proof that
    /// the service got that far.
    recorded: &'static [&'static str],
}

const fn mux(op: MuxOp, skip: u32) -> At {
    At::Hold { on: HoldOn::Mux(op), skip }
}

const fn livekit(method: TwirpMethod, skip: u32) -> At {
    At::Hold { on: HoldOn::LiveKit(method), skip }
}

fn moderator() -> String {
    token("mod", Role::Moderator, Some(&[EVENT]))
}

/// The real binary on a fixed port and database, talking to the simulators.
struct Service {
    base: String,
    listen: String,
    db_url: String,
    mux_url: String,
    livekit_url: String,
    http: reqwest::Client,
}

impl Service {
    fn new(sims: &Simulators, dir: &tempfile::TempDir) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let listen = format!("127.0.0.1:{port}");
        Self {
            base: format!("http://{listen}"),
            listen,
            db_url: format!("sqlite://{}", dir.path().join("events.db").display()),
            mux_url: sims.mux_url.clone(),
            livekit_url: sims.livekit_url.clone(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap(),
        }
    }

    /// Starts the binary and waits until it answers.
    async fn spawn(&self, stall_at: Option<&str>) -> Child {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventuall"));
        command
            .args(["serve", "--listen", &self.listen, "--database-url", &self.db_url, "--jwt-secret", SECRET])
            .args(["--mux-url", &self.mux_url, "--livekit-url", &self.livekit_url])
            .args(["--composite-url", "https://app.example.com/composite"])
            .args(["--recording-poll-every", "20ms"])
            .env("EVENTUALL_LOG", "warn")
            .env_remove("EVENTUALL_RECORDING_STALL_AT")
            .kill_on_drop(true);
        if let Some(point) = stall_at {
            command.env("EVENTUALL_RECORDING_STALL_AT", point);
        }
        let child = command.spawn().expect("the binary starts");
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            if let Ok(r) = self.http.get(format!("{}/healthz", self.base)).send().await
                && r.status() == 200
            {
                return child;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the service never answered /healthz");
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http.post(format!("{}{path}", self.base)).bearer_auth(moderator()).json(&body).send().await.unwrap()
    }

    async fn get(&self, path: &str) -> Option<Value> {
        let response = self.http.get(format!("{}{path}", self.base)).bearer_auth(moderator()).send().await.ok()?;
        if response.status() != 200 {
            return None;
        }
        response.json().await.ok()
    }

    async fn status(&self) -> Option<Value> {
        self.get(&format!("/cloudcaster/{EVENT}/status")).await
    }

    async fn wait_for_state(&self, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = None;
        while tokio::time::Instant::now() < deadline {
            last = self.status().await;
            if last.as_ref().is_some_and(|s| s["state"] == state) {
                return last.unwrap_or_default();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("never reached {state}; last status: {last:#?}");
    }

    async fn record_then_stop(&self) {
        self.wait_for_state("recording").await;
        tokio::time::sleep(ON_STAGE).await;
        assert_eq!(self.post(&format!("/cloudcaster/{EVENT}/stop"), json!({})).await.status(), 202);
    }
}

fn steps(status: &Value) -> Vec<String> {
    status["steps"].as_array().into_iter().flatten().filter_map(|s| s["step"].as_str()).map(str::to_owned).collect()
}

/// Waits until the simulators have nothing running (stopped egresses end
/// and disconnected streams go idle within their millisecond timings).
async fn assert_clean(sims: &Simulators) {
    for _ in 0..100 {
        if sims.handle.leftovers().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("left running: {:#?}", sims.handle.leftovers());
}

async fn crash_and_restart(crash: Crash) {
    let sims = Simulators::spawn(SimConfig::fast()).await.expect("simulators");
    let faults: &Faults = sims.faults();
    let hold = match crash.at {
        At::Hold { on, skip } => Some(faults.hold(on, skip)),
        _ => None,
    };
    let dir = tempfile::tempdir().unwrap();
    let service = Service::new(&sims, &dir);
    let stall = match crash.at {
        At::Stall(point) => Some(point),
        _ => None,
    };
    let mut first = service.spawn(stall).await;

    let started = service.post(&format!("/cloudcaster/{EVENT}/start"), json!({})).await;
    assert_eq!(started.status(), 202);
    let session_id = started.json::<Value>().await.unwrap()["sessionId"].as_str().unwrap().to_owned();
    let entered = service.post(&format!("/event/{EVENT}/stage/enter"), json!({"userId": "alice"})).await;
    assert_eq!(entered.status(), 200);
    if crash.after_stop {
        service.record_then_stop().await;
    }

    // Provably inside the step under test.
    let status = match crash.at {
        At::Hold { .. } => {
            let hold = hold.as_ref().expect("armed");
            assert!(hold.reached(WAIT).await, "the service never made the held call");
            service.status().await.expect("status while held")
        }
        At::Stall(_) => service.wait_for_state("new").await,
        At::State(state) => service.wait_for_state(state).await,
    };
    assert_eq!(status["sessionId"], json!(session_id));
    let seen = steps(&status);
    for step in crash.recorded {
        assert!(seen.iter().any(|s| s == step), "{step} not recorded before the kill: {seen:?}");
    }

    first.kill().await.expect("SIGKILL");
    // The held response may go now: nobody is left to read it.
    if let Some(hold) = &hold {
        hold.release();
    }

    let mut second = service.spawn(None).await;
    if !crash.after_stop {
        service.record_then_stop().await;
    }
    let status = service.wait_for_state("completed").await;
    assert_eq!(status["sessionId"], json!(session_id));

    assert_eq!(sims.handle.mux.live_streams_created(), 1, "exactly one live stream was ever created");
    assert_eq!(sims.handle.livekit.egresses().len(), 1, "exactly one egress was ever started");
    let clips = service.get(&format!("/cloudcaster/{EVENT}/clips")).await.expect("clips");
    let clips = clips["clips"].as_array().cloned().unwrap_or_default();
    assert_eq!(clips.len(), 1, "alice's stay on stage is one clip: {clips:#?}");
    assert!(clips.iter().all(|c| c["status"] == "ready"), "{clips:#?}");
    let clip_assets = sims.handle.mux.assets().into_iter().filter(|a| a.source_asset_id.is_some()).count();
    assert_eq!(clip_assets, clips.len(), "no clip asset was created twice");
    let seen = steps(&status);
    assert_eq!(seen.iter().filter(|s| *s == "LockReleased").count(), 1, "{seen:?}");
    assert_clean(&sims).await;

    // No orphan lock: the room takes a new recording at once.
    let again = service.post(&format!("/cloudcaster/{EVENT}/start"), json!({})).await;
    assert_eq!(again.status(), 202, "the room is free after the session");
    second.kill().await.ok();
}

/// One test per crash point, so they run (and fail) independently.
macro_rules! crash_points {
    ($($name:ident: $crash:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            crash_and_restart($crash).await;
        }
    )*};
}

crash_points! {
    killed_after_the_lock_is_acquired: Crash {
        at: At::Stall("lock-acquired"),
        after_stop: false,
        recorded: &[],
    };
    killed_while_reconciling_before_the_stream_create: Crash {
        at: mux(MuxOp::ListLiveStreams, 0),
        after_stop: false,
        recorded: &["RecordingRequested", "StreamCreateRequested"],
    };
    killed_after_mux_created_the_stream_but_before_it_was_recorded: Crash {
        at: mux(MuxOp::CreateLiveStream, 0),
        after_stop: false,
        recorded: &["StreamCreateRequested"],
    };
    killed_while_checking_the_idle_stream: Crash {
        at: mux(MuxOp::GetLiveStream, 0),
        after_stop: false,
        recorded: &["StreamCreated"],
    };
    killed_after_livekit_started_the_egress_but_before_it_was_recorded: Crash {
        at: livekit(TwirpMethod::StartWebEgress, 0),
        after_stop: false,
        recorded: &["EgressStartRequested"],
    };
    killed_while_waiting_for_the_egress_to_go_active: Crash {
        at: livekit(TwirpMethod::ListEgress, 1),
        after_stop: false,
        recorded: &["EgressStarted"],
    };
    killed_while_waiting_for_the_stream_to_go_active: Crash {
        at: mux(MuxOp::GetLiveStream, 1),
        after_stop: false,
        recorded: &["EgressActive"],
    };
    killed_while_recording: Crash {
        at: At::State("recording"),
        after_stop: false,
        recorded: &["RecordingStarted"],
    };
    killed_after_livekit_stopped_the_egress_but_before_it_was_recorded: Crash {
        at: livekit(TwirpMethod::StopEgress, 0),
        after_stop: true,
        recorded: &["StopRequested"],
    };
    killed_after_mux_completed_the_stream_but_before_it_was_recorded: Crash {
        at: mux(MuxOp::CompleteLiveStream, 0),
        after_stop: true,
        recorded: &["EgressStopped"],
    };
    killed_after_the_lock_is_released_while_the_asset_is_prepared: Crash {
        at: mux(MuxOp::GetAsset, 0),
        after_stop: true,
        recorded: &["StreamCompleted", "LockReleased"],
    };
    killed_after_mux_created_a_clip_but_before_it_was_recorded: Crash {
        at: mux(MuxOp::CreateAsset, 0),
        after_stop: true,
        recorded: &["ClipsRequested"],
    };
}
