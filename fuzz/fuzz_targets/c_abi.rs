//! The C ABI called with arbitrary arguments: every call returns a status,
//! none crashes or panics. See `src/c_abi.rs`.
#![no_main]

#[path = "../src/c_abi.rs"]
mod c_abi;
#[path = "../src/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    c_abi::c_abi(data);
});
