#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hermes::fuzzing::stream_record(data));
