//! Random operation sequences on a queue file through the `Queue` API,
//! checked step by step against a reference model. See `src/model_ops.rs`.
#![no_main]

#[path = "../src/harness.rs"]
mod harness;
#[path = "../src/model_ops.rs"]
mod model_ops;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    model_ops::model_ops(data);
});
