#![no_main]
//! `eventuall::fuzzing::room_frame`: the property is stated there.
libfuzzer_sys::fuzz_target!(|data: &[u8]| eventuall::fuzzing::room_frame(data));
