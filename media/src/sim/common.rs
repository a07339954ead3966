//! Small pieces both simulators share: id generation, simulated response
//! loss, and poison-tolerant locking.

use std::sync::{Mutex, MutexGuard};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use rand::Rng;

use super::faults::ResponseLoss;

/// A random `[A-Za-z0-9]` string, the alphabet of Mux ids and LiveKit's
/// `EG_…`/`EV_…` suffixes.
pub(crate) fn random_id(len: usize) -> String {
    rand::rng().sample_iter(&rand::distr::Alphanumeric).take(len).map(char::from).collect()
}

/// A simulator state lock. Handlers never panic while holding it on
/// purpose; if one did, the state is still usable for the remaining tests,
/// so poisoning is ignored rather than cascading panics.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Applies a "committed, response lost" fault to a real response.
/// `internal` builds the service's own 500 body.
pub(crate) async fn lose(resp: Response, loss: ResponseLoss, internal: Response) -> Response {
    match loss {
        ResponseLoss::InternalError => internal,
        ResponseLoss::Reset => {
            let (parts, _) = resp.into_parts();
            let broken = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "simulated connection reset",
                ))
            });
            Response::from_parts(parts, Body::from_stream(broken))
        }
        ResponseLoss::Hang(wait) => {
            tokio::time::sleep(wait).await;
            resp
        }
    }
}
