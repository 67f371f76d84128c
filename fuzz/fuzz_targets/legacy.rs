//! The readers of old format versions (`format::legacy`, used by `shmq
//! migrate`) on images with a valid header and arbitrary contents: they
//! must never panic, and what they return stays within the parameters.
#![no_main]

#[path = "../src/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::legacy(data);
});
