//! The `shmq` command line: creates, inspects, feeds and drains queue files,
//! exports their metrics (table, JSON, Prometheus, a live view and a scrape
//! endpoint), checks and repairs them, and runs the restaurant demo.
//!
//! This file only dispatches; each concern lives in a module of
//! this crate:
//!
//! - `bridge`: `bridge out` and `bridge in` over the shmq-bridge crate;
//! - `cli`: the grammar (clap) and the parsers of durations and modes;
//! - `commands`: create, info, send, recv, peek, dlq, verify, recover;
//! - `stats_view`: `stats` as a table, JSON and the `--watch` view;
//! - `prometheus`: the exposition (OpenMetrics via prometheus-client, and
//!   the classic text format);
//! - `top`: the terminal dashboard (ratatui), also `stats --watch`'s view;
//! - `serve`: the scrape endpoint of `serve-metrics` (hyper on tokio);
//! - `demo`: the restaurant, its roles and its summary;
//! - `torture`: SIGKILLed producers and consumers checked against a ledger;
//! - `util`: errors with exit codes, human durations, delayed progress.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod bridge;
mod cli;
mod commands;
mod demo;
mod prometheus;
mod serve;
mod stats_view;
mod top;
mod torture;
mod util;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    let code = match run(args.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shmq: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

fn run(cmd: cli::Cmd) -> util::CmdResult {
    use cli::Cmd;
    match cmd {
        Cmd::Create(a) => commands::create(&a),
        Cmd::Info(a) => commands::info(&a),
        Cmd::Stats(a) => stats_view::stats(&a),
        Cmd::Top(a) => top::top(&top::TopOptions {
            paths: a.paths.clone(),
            open: a.trust.reading(a.read_only),
            interval: a.interval,
            once: a.once,
            count: a.count,
            title: "shmq top".to_string(),
        }),
        Cmd::ServeMetrics(a) => serve::serve(&a),
        Cmd::Send(a) => commands::send(&a),
        Cmd::Recv(a) => commands::recv(&a),
        Cmd::Peek(a) => commands::peek(&a),
        Cmd::Dlq(a) => commands::dlq(&a),
        Cmd::Purge(a) => commands::purge(&a),
        Cmd::Verify(a) => commands::verify(&a),
        Cmd::Recover(a) => commands::recover(&a),
        Cmd::Migrate(a) => commands::migrate(&a),
        Cmd::Bridge(a) => bridge::bridge(&a),
        Cmd::Demo(a) => demo::run(&a),
        Cmd::DemoRole(a) => demo::role(&a),
        Cmd::Bench(a) => {
            let args = shmq_bench::BenchArgs {
                quick: a.quick,
                json: a.json,
                chart: a.chart,
                only: a.only,
                runs: a.runs,
                instructions: a.instructions,
            };
            match shmq_bench::run(&args) {
                Ok(_) => Ok(0),
                Err(e) => {
                    eprintln!("shmq bench: {e}");
                    Ok(1)
                }
            }
        }
        Cmd::BenchPeer(a) => Ok(shmq_bench::peer::run(&a.args)),
        Cmd::BenchLoop(a) => Ok(shmq_bench::bench_loop(&a.args)),
        Cmd::Torture(a) => torture::run(&a),
        Cmd::TortureWorker(a) => Ok(torture::worker(&a)),
    }
}
