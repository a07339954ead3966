#![no_main]
//! `eventuall::fuzzing::interview_frame`: the property is stated there.
libfuzzer_sys::fuzz_target!(|data: &[u8]| eventuall::fuzzing::interview_frame(data));
