#![no_main]

libfuzzer_sys::fuzz_target!(
    init: hermes::fuzzing::let_parquet_panics_unwind(),
    |data: &[u8]| hermes::fuzzing::corpus_file(data)
);
