//! The grammar of `shmq bench` and of its peer processes.

use std::path::PathBuf;

use clap::Args;

/// `shmq bench`.
#[derive(Args, Debug)]
pub struct BenchCmdArgs {
    /// Small message counts, one run per figure (for CI: no speed is checked).
    #[arg(long)]
    pub quick: bool,
    /// Write every figure as JSON rows to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw throughput and latency per transport as an SVG chart to FILE.
    #[arg(long, value_name = "FILE")]
    pub chart: Option<PathBuf>,
    /// Only the scenarios whose name contains one of these, or only the rows
    /// of these transports, comma-separated (e.g. keyed; one-to-one,c-abi to
    /// keep a row's reference; bare-ring,arrayqueue for those rows alone).
    #[arg(long)]
    pub only: Option<String>,
    /// Runs of each throughput figure, the median kept (default 3; 1 with
    /// --quick). The transports of a scenario take turns, run after run.
    #[arg(long, value_name = "N")]
    pub runs: Option<usize>,
    /// Instead: instructions per message of shmq (C ABI and Rust) and of the
    /// in-process references, counted by callgrind (needs valgrind).
    #[arg(long)]
    pub instructions: bool,
}

/// `shmq __bench-peer ROLE ARGS...`.
#[derive(Args, Debug)]
pub struct BenchPeerArgs {
    /// The role and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `shmq __bench-loop NAME COUNT`.
#[derive(Args, Debug)]
pub struct BenchLoopArgs {
    /// The loop and its message count.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}
