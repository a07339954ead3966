#![no_main]
//! `eventuall::fuzzing::jwt`: the property is stated there.
libfuzzer_sys::fuzz_target!(|data: &[u8]| eventuall::fuzzing::jwt(data));
