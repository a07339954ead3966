//! Webhook delivery for the simulators: one ordered queue per simulator,
//! delivered by a background task to a target URL that can be set (or
//! changed) at any time, with retries, and a log tests can inspect.
//!
//! The real LiveKit server keeps order per resource only and retries failed
//! sends; a single queue is a stricter order, which is still a valid
//! behaviour of the real system.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

/// What happened to one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DeliveryOutcome {
    Pending,
    /// The receiver answered (any status; non-2xx was retried first).
    Delivered {
        status: u16,
    },
    Failed {
        error: String,
    },
    /// Dropped on purpose by a [`WebhookFault::Drop`](super::WebhookFault::Drop).
    Dropped,
    /// No target URL was configured when it was due.
    NoTarget,
}

/// One webhook as the simulator produced it, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentWebhook {
    /// `egress_started`, `participant_joined`, …
    pub event: String,
    /// The event id (`EV_…`); duplicates share it.
    pub id: String,
    pub body: String,
    /// The authenticating header value: LiveKit's `Authorization` (a bare
    /// JWT) or Mux's `mux-signature`.
    pub signature: String,
    pub outcome: DeliveryOutcome,
}

/// How hard delivery tries.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    pub attempts: u32,
    pub retry_delay: Duration,
    pub timeout: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self { attempts: 3, retry_delay: Duration::from_millis(500), timeout: Duration::from_secs(5) }
    }
}

struct Job {
    index: usize,
    headers: Vec<(&'static str, String)>,
    body: String,
}

#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<Job>,
    log: Arc<Mutex<Vec<SentWebhook>>>,
    target: Arc<RwLock<Option<String>>>,
}

impl Outbox {
    /// Must be called inside a tokio runtime: it spawns the delivery task,
    /// which ends when the last `Outbox` clone is dropped.
    pub(crate) fn spawn(target: Option<String>, policy: DeliveryPolicy) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let log: Arc<Mutex<Vec<SentWebhook>>> = Arc::default();
        let target = Arc::new(RwLock::new(target));
        let (task_log, task_target) = (log.clone(), target.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(policy.timeout).build().ok();
            while let Some(job) = rx.recv().await {
                let url = task_target.read().unwrap_or_else(|e| e.into_inner()).clone();
                let outcome = match (&http, url) {
                    (_, None) => DeliveryOutcome::NoTarget,
                    (None, Some(_)) => DeliveryOutcome::Failed { error: "no http client".into() },
                    (Some(http), Some(url)) => deliver(http, &url, &job, policy).await,
                };
                if let Some(entry) = task_log.lock().unwrap_or_else(|e| e.into_inner()).get_mut(job.index) {
                    entry.outcome = outcome;
                }
            }
        });
        Self { tx, log, target }
    }

    pub(crate) fn set_target(&self, url: Option<String>) {
        *self.target.write().unwrap_or_else(|e| e.into_inner()) = url;
    }

    /// Queues one delivery (or only records it, for a dropped webhook).
    pub(crate) fn push(&self, entry: SentWebhook, headers: Vec<(&'static str, String)>, dispatch: Dispatch) {
        let body = entry.body.clone();
        let index = {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            log.push(SentWebhook {
                outcome: match dispatch {
                    Dispatch::Deliver => DeliveryOutcome::Pending,
                    Dispatch::Drop => DeliveryOutcome::Dropped,
                },
                ..entry
            });
            log.len() - 1
        };
        if dispatch == Dispatch::Deliver {
            // The receiver lives as long as any Outbox clone; a send error
            // only happens during runtime shutdown, when nobody listens.
            let _ = self.tx.send(Job { index, headers, body });
        }
    }

    pub(crate) fn log(&self) -> Vec<SentWebhook> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dispatch {
    Deliver,
    Drop,
}

async fn deliver(http: &reqwest::Client, url: &str, job: &Job, policy: DeliveryPolicy) -> DeliveryOutcome {
    let mut last = DeliveryOutcome::Failed { error: "not attempted".into() };
    for attempt in 0..policy.attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(policy.retry_delay).await;
        }
        let mut req = http.post(url).body(job.body.clone());
        for (name, value) in &job.headers {
            req = req.header(*name, value);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                return DeliveryOutcome::Delivered { status: resp.status().as_u16() };
            }
            Ok(resp) => last = DeliveryOutcome::Delivered { status: resp.status().as_u16() },
            Err(e) => last = DeliveryOutcome::Failed { error: e.to_string() },
        }
    }
    last
}
