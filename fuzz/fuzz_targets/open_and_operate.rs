//! Opens a damaged or hostile queue file and operates on it: nothing may
//! panic, hang or touch memory outside the mapping. See `src/harness.rs` for
//! the input format.
#![no_main]

#[path = "../src/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::open_and_operate(data);
});
