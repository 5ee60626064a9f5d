//! The shipper's envelope reader: see `bitville_fuzz::envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bitville_fuzz::envelope(data);
});
