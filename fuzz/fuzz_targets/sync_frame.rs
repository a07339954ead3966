#![no_main]
//! `eventuall::fuzzing::sync_frame`: the property is stated there.
//!
//! yrs's decoders have debug assertions that malformed updates trip (a
//! client id above 2^53); the queue catches those (`queue::document::
//! guarded`) and answers "malformed". libFuzzer's panic hook aborts on any
//! panic, caught or not, so this target lets panics raised inside yrs reach
//! the queue's guard; any other panic, or a yrs panic the guard does not
//! catch (it unwinds into the fuzzer's own `catch_unwind`), is still a crash.
use std::sync::Once;

static YRS_PANICS_REACH_THE_GUARD: Once = Once::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    YRS_PANICS_REACH_THE_GUARD.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.location().is_some_and(|at| at.file().contains("/yrs-")) {
                fuzzer_hook(info)
            }
        }));
    });
    eventuall::fuzzing::sync_frame(data)
});
