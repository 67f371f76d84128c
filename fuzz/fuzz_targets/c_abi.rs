//! The C ABI called with arbitrary arguments: every call returns a status,
//! none crashes or panics. See `src/c_abi.rs`.
#![no_main]

#[path = "../src/c_abi.rs"]
mod c_abi;
// The C ABI crate (bindings/c) builds only a cdylib and a staticlib (its
// library is named `shmq` too), so its Rust functions are compiled in here
// from its sources; they call the engine as `engine`.
extern crate shmq as engine;
#[allow(dead_code)]
#[path = "../../bindings/c/src/lib.rs"]
mod ffi;
#[path = "../src/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    c_abi::c_abi(data);
});
