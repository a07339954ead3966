#![no_main]
//! `eventuall::fuzzing::http_bodies`: the property is stated there.
libfuzzer_sys::fuzz_target!(|data: &[u8]| eventuall::fuzzing::http_bodies(data));
