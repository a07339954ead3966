//! Fault injection for both simulators: the failure modes reported against
//! the real services (see `research/media.md` §5 and design item 10), armed
//! for the next call(s) or persistently.
//!
//! A fault is armed with a [`Times`] and consumed by the first matching
//! request or lifecycle step; several armed faults for the same trigger fire
//! in arming order.
//!
//! A [`Hold`] is not a failure but a stall: the request takes effect, then
//! its response waits until the test releases it. A crash test uses it to
//! kill the client while it is provably inside that call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// How many matching calls an armed fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Times {
    Once,
    N(u32),
    /// Until [`Faults::clear`].
    Always,
}

/// How a request that did take effect fails to report it: the "committed,
/// response lost" case that makes retrying a create dangerous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseLoss {
    /// A 500 error body is sent instead of the real response.
    InternalError,
    /// Headers go out, then the connection is cut mid-body.
    Reset,
    /// The real response is held back this long (longer than the client's
    /// timeout, so the client gives up first).
    Hang(Duration),
}

/// The Mux REST operations, as fault triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MuxOp {
    CreateLiveStream,
    GetLiveStream,
    ListLiveStreams,
    CompleteLiveStream,
    DisableLiveStream,
    EnableLiveStream,
    DeleteLiveStream,
    CreateAsset,
    GetAsset,
    ListAssets,
    DeleteAsset,
}

/// Request-level Mux faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxRequestFault {
    /// 429 with `retry-after` (whole seconds, rounded up).
    RateLimited { retry_after: Duration },
    /// A 5xx before anything is done.
    ServerError { status: u16 },
    /// A load balancer's HTML 502 page instead of Mux's JSON error body.
    BadGatewayHtml,
    /// The operation is performed, then its response is lost.
    CommitThenLose(ResponseLoss),
}

/// What Mux does with the next encoder connection(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestFault {
    /// The connection is accepted but the stream stays `idle`: no asset, no
    /// events (wrong protocol/port symptoms).
    StuckIdle,
    /// The stream reaches `connected` (asset created, preparing) but never
    /// records or goes `active`.
    OnlyConnected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssetKind {
    /// The asset recorded from a live stream.
    LiveRecording,
    Clip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetFault {
    /// The asset ends `errored` instead of `ready`.
    Errored,
    /// The asset stays `preparing` forever.
    StuckPreparing,
}

/// The Twirp methods of the LiveKit Egress service we simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TwirpMethod {
    StartWebEgress,
    ListEgress,
    StopEgress,
    UpdateStream,
}

impl TwirpMethod {
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "StartWebEgress" => Self::StartWebEgress,
            "ListEgress" => Self::ListEgress,
            "StopEgress" => Self::StopEgress,
            "UpdateStream" => Self::UpdateStream,
            _ => return None,
        })
    }
}

/// Request-level LiveKit faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwirpFault {
    /// Waits, then 503 `unavailable` "no response from servers" (no worker
    /// had capacity; livekit/egress#739 saw ~22 s). Nothing is created.
    SlowThenUnavailable { delay: Duration },
    /// 429 `resource_exhausted` (quota, concurrency cap).
    ResourceExhausted,
    /// A proxy's HTML 502: not Twirp JSON, so SDKs lose the status.
    BadGatewayHtml,
    /// The call takes effect (the egress exists), then the response is lost.
    CommitThenLose(ResponseLoss),
}

/// Lifecycle faults for the next started egress(es).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressFault {
    /// Never leaves STARTING (broken pipeline, livekit/egress#647).
    StuckStarting,
    /// Ends ABORTED "Start signal not received" (error_code 412) instead of
    /// going ACTIVE.
    AbortStartSignal,
    /// Goes ACTIVE, then FAILED this long after.
    FailMidStream { after: Duration },
    /// Goes ACTIVE, then LIMIT_REACHED "Session limit reached" (413).
    LimitReached { after: Duration },
}

/// Delivery faults for the next LiveKit webhook(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFault {
    /// Delivered twice, same event id.
    Duplicate,
    /// Never delivered (queue overflow, 30 s max age).
    Drop,
    /// Right key id, signed with the wrong secret.
    BadSignature,
    /// Signed by a key the receiver does not know (rotation).
    UnknownKey,
    /// The JWT hashes the original body but a re-serialised body is sent,
    /// as a body-parsing proxy would (livekit/protocol#1145).
    BodyHashMismatch,
    /// Signed with `exp` ten minutes ago (beyond any leeway).
    Expired,
}

/// Which call a [`Hold`] stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldOn {
    Mux(MuxOp),
    LiveKit(TwirpMethod),
}

/// The longest a held response waits for [`Hold::release`]: a test that
/// forgets to release (or panics first) must not wedge a server task for
/// ever.
const HOLD_CAP: Duration = Duration::from_secs(120);

/// A stalled request, armed with [`Faults::hold`]. The request is performed
/// (a create creates) and its response is held back until
/// [`Hold::release`]. Cloning shares.
#[derive(Debug, Clone)]
pub struct Hold {
    reached: watch::Sender<bool>,
    released: watch::Sender<bool>,
}

impl Hold {
    fn new() -> Self {
        Self { reached: watch::Sender::new(false), released: watch::Sender::new(false) }
    }

    /// Waits until a request is being held, at most `limit`; false if none
    /// came.
    pub async fn reached(&self, limit: Duration) -> bool {
        let mut rx = self.reached.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|r| *r)).await.is_ok_and(|r| r.is_ok())
    }

    pub fn is_reached(&self) -> bool {
        *self.reached.borrow()
    }

    /// Lets the held response go (also any later request on this hold).
    pub fn release(&self) {
        self.released.send_replace(true);
    }

    /// Called by the simulator with the response ready.
    pub(crate) async fn stall(&self) {
        self.reached.send_replace(true);
        let mut rx = self.released.subscribe();
        let _ = tokio::time::timeout(HOLD_CAP, rx.wait_for(|r| *r)).await;
    }
}

#[derive(Debug)]
struct ArmedHold {
    on: HoldOn,
    /// Matching calls still to let through before this one holds.
    skip: u32,
    hold: Hold,
}

#[derive(Debug)]
struct Armed<K, F> {
    on: K,
    fault: F,
    left: Times,
}

#[derive(Debug, Default)]
struct FaultBook {
    mux_requests: Vec<Armed<MuxOp, MuxRequestFault>>,
    ingest: Vec<Armed<(), IngestFault>>,
    assets: Vec<Armed<AssetKind, AssetFault>>,
    twirp: Vec<Armed<TwirpMethod, TwirpFault>>,
    egress: Vec<Armed<(), EgressFault>>,
    webhooks: Vec<Armed<(), WebhookFault>>,
    holds: Vec<ArmedHold>,
}

fn arm<K, F>(list: &mut Vec<Armed<K, F>>, on: K, fault: F, left: Times) {
    if left != Times::N(0) {
        list.push(Armed { on, fault, left });
    }
}

fn take<K: PartialEq, F: Copy>(list: &mut Vec<Armed<K, F>>, on: &K) -> Option<F> {
    let idx = list.iter().position(|a| &a.on == on)?;
    let fault = list[idx].fault;
    match list[idx].left {
        Times::Always => {}
        Times::Once | Times::N(0 | 1) => {
            list.remove(idx);
        }
        Times::N(n) => list[idx].left = Times::N(n - 1),
    }
    Some(fault)
}

/// Shared handle to the armed faults of a simulator pair. Cloning shares.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    book: Arc<Mutex<FaultBook>>,
}

impl Faults {
    fn book(&self) -> std::sync::MutexGuard<'_, FaultBook> {
        // A panic while holding this lock cannot leave the book inconsistent
        // (every update is a single push/remove), so poisoning is ignored.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn mux_request(&self, op: MuxOp, fault: MuxRequestFault, times: Times) {
        arm(&mut self.book().mux_requests, op, fault, times);
    }

    pub fn mux_ingest(&self, fault: IngestFault, times: Times) {
        arm(&mut self.book().ingest, (), fault, times);
    }

    pub fn mux_asset(&self, kind: AssetKind, fault: AssetFault, times: Times) {
        arm(&mut self.book().assets, kind, fault, times);
    }

    pub fn livekit_request(&self, method: TwirpMethod, fault: TwirpFault, times: Times) {
        arm(&mut self.book().twirp, method, fault, times);
    }

    pub fn egress(&self, fault: EgressFault, times: Times) {
        arm(&mut self.book().egress, (), fault, times);
    }

    pub fn webhook(&self, fault: WebhookFault, times: Times) {
        arm(&mut self.book().webhooks, (), fault, times);
    }

    /// Holds the response of the call after `skip` matching calls went
    /// through (0: the next one). One call is held; see [`Hold`].
    pub fn hold(&self, on: HoldOn, skip: u32) -> Hold {
        let hold = Hold::new();
        self.book().holds.push(ArmedHold { on, skip, hold: hold.clone() });
        hold
    }

    /// Disarms everything, including `Times::Always` faults. Armed holds
    /// are dropped; a request already held stays held until released.
    pub fn clear(&self) {
        *self.book() = FaultBook::default();
    }

    pub(crate) fn take_mux_request(&self, op: MuxOp) -> Option<MuxRequestFault> {
        take(&mut self.book().mux_requests, &op)
    }

    pub(crate) fn take_ingest(&self) -> Option<IngestFault> {
        take(&mut self.book().ingest, &())
    }

    pub(crate) fn take_asset(&self, kind: AssetKind) -> Option<AssetFault> {
        take(&mut self.book().assets, &kind)
    }

    pub(crate) fn take_twirp(&self, method: TwirpMethod) -> Option<TwirpFault> {
        take(&mut self.book().twirp, &method)
    }

    pub(crate) fn take_egress(&self) -> Option<EgressFault> {
        take(&mut self.book().egress, &())
    }

    pub(crate) fn take_webhook(&self) -> Option<WebhookFault> {
        take(&mut self.book().webhooks, &())
    }

    /// The hold this call must stall on, if one is armed and its skips are
    /// used up (every matching call counts down every matching hold).
    pub(crate) fn take_hold(&self, on: HoldOn) -> Option<Hold> {
        let mut book = self.book();
        let mut fired = None;
        book.holds.retain_mut(|armed| {
            if armed.on != on {
                return true;
            }
            if armed.skip > 0 {
                armed.skip -= 1;
                return true;
            }
            if fired.is_some() {
                return true;
            }
            fired = Some(armed.hold.clone());
            false
        });
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_fire_the_armed_number_of_times_in_order() {
        let faults = Faults::default();
        faults.mux_request(MuxOp::GetAsset, MuxRequestFault::ServerError { status: 502 }, Times::N(2));
        faults.mux_request(MuxOp::GetAsset, MuxRequestFault::ServerError { status: 503 }, Times::Once);
        assert_eq!(faults.take_mux_request(MuxOp::CreateAsset), None);
        let s = |f| match f {
            Some(MuxRequestFault::ServerError { status }) => status,
            _ => 0,
        };
        assert_eq!(s(faults.take_mux_request(MuxOp::GetAsset)), 502);
        assert_eq!(s(faults.take_mux_request(MuxOp::GetAsset)), 502);
        assert_eq!(s(faults.take_mux_request(MuxOp::GetAsset)), 503);
        assert_eq!(faults.take_mux_request(MuxOp::GetAsset), None);
    }

    #[test]
    fn persistent_faults_last_until_cleared() {
        let faults = Faults::default();
        faults.webhook(WebhookFault::Drop, Times::Always);
        for _ in 0..5 {
            assert_eq!(faults.take_webhook(), Some(WebhookFault::Drop));
        }
        faults.clear();
        assert_eq!(faults.take_webhook(), None);
    }
}
