#![no_main]
//! `eventuall::fuzzing::stored_payload`: the property is stated there.
libfuzzer_sys::fuzz_target!(|data: &[u8]| eventuall::fuzzing::stored_payload(data));
