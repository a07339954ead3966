#![no_main]
//! `eventuall::fuzzing::webhook`: the property is stated there.
libfuzzer_sys::fuzz_target!(|data: &[u8]| eventuall::fuzzing::webhook(data));
