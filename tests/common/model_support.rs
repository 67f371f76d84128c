//! Helpers shared by the proptest models `tests/model.rs` (the slot
//! protocol) and `tests/model_keys.rs` (keys and versions): payloads that
//! name their message, the `ensure!` macro of their checks, and the runner
//! configuration.

use proptest::test_runner::Config as RunnerConfig;

/// Largest payload of the models.
pub const MAX_MESSAGE: usize = 32;

/// A unique payload per message id: the id, then a pattern; 8..=32 bytes.
pub fn payload(id: u64) -> Vec<u8> {
    shmq_testkit::model::payload(id, 8 + (id as usize * 7) % (MAX_MESSAGE - 7))
}

/// The message id a payload names (check it with [`payload`]).
pub use shmq_testkit::model::id_of;

/// Returns `Err` with the formatted message from the enclosing check when
/// the condition is false.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// `default_cases` cases, or `PROPTEST_CASES` when set.
pub fn runner_config(default_cases: u32) -> RunnerConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    RunnerConfig {
        cases,
        // Shrunk failures are kept as plain tests instead of in a
        // regressions file.
        failure_persistence: None,
        ..RunnerConfig::default()
    }
}
