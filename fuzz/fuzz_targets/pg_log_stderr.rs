//! The stderr parser: see `bitville_fuzz::pg_log` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bitville_fuzz::pg_log(bitville_schemas::records::LogFormat::Stderr, data);
});
