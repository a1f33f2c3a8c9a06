#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hermes::fuzzing::ndjson_body(data));
