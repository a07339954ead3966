//! Wall-clock helpers shared by the clients and simulators. Both services
//! speak Unix time: Mux in seconds, LiveKit egress in nanoseconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) fn since_epoch(at: SystemTime) -> Duration {
    // A clock before 1970 is a broken host; treating it as the epoch keeps the
    // simulators running instead of panicking inside a request handler.
    at.duration_since(UNIX_EPOCH).unwrap_or_default()
}

pub(crate) fn unix_secs(at: SystemTime) -> u64 {
    since_epoch(at).as_secs()
}

pub(crate) fn unix_nanos(at: SystemTime) -> i64 {
    i64::try_from(since_epoch(at).as_nanos()).unwrap_or(i64::MAX)
}

pub(crate) fn now_secs() -> u64 {
    unix_secs(SystemTime::now())
}

pub(crate) fn now_nanos() -> i64 {
    unix_nanos(SystemTime::now())
}
