//! `Layout::from_header` on arbitrary header words: it must never panic, and
//! a layout it accepts must describe regions that fit the file.
#![no_main]

#[path = "../src/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::header(data);
});
