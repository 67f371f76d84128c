//! The run: which scenarios run (all, or those `--only` names), in what
//! order, with what counts; then the ratios, the table, the JSON and the
//! chart.

use super::{foreign, iceoryx2, memory, svg};

use super::references::{
    arrayqueue_one_to_one, fd_one_to_one, fd_ping_pong, ring_one_to_one, ring_ping_pong,
    rtrb_one_to_one,
};
use super::report::{print_table, ratios};
use super::shmq_runs::{idle_wait, oversubscribed, shmq_one_to_one, shmq_ping_pong, ShmqRun};
use super::{repeat, BenchArgs, Row, Sizes};

type Job<'a> = (
    &'static str,
    Box<dyn FnMut() -> Result<Vec<Row>, String> + 'a>,
);

/// Runs the bench; prints the table; writes JSON and chart on request.
pub fn run(args: &BenchArgs) -> Result<Vec<Row>, String> {
    let s = if args.quick {
        Sizes {
            msgs: 200_000,
            rtts: 5_000,
            runs: 1,
            millis: 300,
        }
    } else {
        Sizes {
            msgs: 5_000_000,
            rtts: 100_000,
            runs: 3,
            millis: 2000,
        }
    };
    let keys = if args.quick { 100_000 } else { 1_000_000 };
    let keyed_msgs = Sizes {
        msgs: if args.quick { 300_000 } else { 3_000_000 },
        ..s
    };
    let single = |payload, metrics| ShmqRun {
        payload,
        batch: 1,
        metrics,
        keys: 0,
    };
    let foreign = foreign::Foreign::new();
    let mut jobs: Vec<Job> = Vec::new();
    for payload in [8usize, 64, 1024] {
        let s = &s;
        jobs.push((
            "one-to-one",
            Box::new(move || {
                Ok(vec![
                    repeat(s.runs, || {
                        shmq_one_to_one(s, &single(payload, true), "one-to-one")
                    })?,
                    repeat(s.runs, || ring_one_to_one(s, payload, "one-to-one"))?,
                    repeat(s.runs, || arrayqueue_one_to_one(s, payload))?,
                    repeat(s.runs, || rtrb_one_to_one(s, payload, 1))?,
                ])
            }),
        ));
    }
    jobs.push((
        "one-to-one",
        Box::new(|| {
            Ok(vec![
                repeat(s.runs, || fd_one_to_one(&s, 64, true))?,
                repeat(s.runs, || fd_one_to_one(&s, 64, false))?,
            ])
        }),
    ));
    jobs.push((
        "batched",
        Box::new(|| {
            let b = ShmqRun {
                payload: 64,
                batch: 32,
                metrics: true,
                keys: 0,
            };
            Ok(vec![
                repeat(s.runs, || shmq_one_to_one(&s, &b, "batched"))?,
                repeat(s.runs, || rtrb_one_to_one(&s, 64, 32))?,
            ])
        }),
    ));
    jobs.push((
        "ping-pong",
        Box::new(|| {
            Ok(vec![
                shmq_ping_pong(&s, 64)?,
                ring_ping_pong(&s, 64)?,
                fd_ping_pong(&s, 64, true)?,
                fd_ping_pong(&s, 64, false)?,
            ])
        }),
    ));
    jobs.push((
        "keyed",
        Box::new(|| {
            let r = ShmqRun {
                payload: 64,
                batch: 1,
                metrics: true,
                keys,
            };
            let mut row = repeat(s.runs, || shmq_one_to_one(&keyed_msgs, &r, "keyed"))?;
            row.note = format!("{keys} distinct keys, cycled");
            Ok(vec![row])
        }),
    ));
    jobs.push((
        "metrics-off",
        Box::new(|| {
            Ok(vec![repeat(s.runs, || {
                shmq_one_to_one(&s, &single(64, false), "metrics-off")
            })?])
        }),
    ));
    jobs.push((
        "c-abi",
        Box::new(|| Ok(vec![repeat(s.runs, || foreign::c_abi(&s, &foreign))?])),
    ));
    jobs.push((
        "python",
        Box::new(|| Ok(vec![repeat(s.runs, || foreign::python(&s, &foreign))?])),
    ));
    jobs.push((
        "memory",
        Box::new(|| {
            Ok(vec![memory::memory(if args.quick {
                1_000_000
            } else {
                100_000_000
            })?])
        }),
    ));
    if !args.quick {
        jobs.push(("iceoryx2", Box::new(|| iceoryx2::rows(&s))));
    }
    jobs.push((
        "oversubscribed",
        Box::new(|| Ok(vec![oversubscribed(&s, 64)?])),
    ));
    jobs.push((
        "idle-wait",
        Box::new(|| {
            let (a, b) = idle_wait(&s)?;
            Ok(vec![a, b])
        }),
    ));

    if let Some(only) = &args.only {
        // A comma-separated list, so that a partial run can keep a row and
        // its reference (`--only one-to-one,c-abi`).
        jobs.retain(|(name, _)| only.split(',').any(|o| name.contains(o.trim())));
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(jobs.len() as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    for (name, mut job) in jobs {
        bar.set_message(name);
        rows.extend(job().map_err(|e| format!("bench {name}: {e}"))?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    ratios(&mut rows);
    print_table(&rows);
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if let Some(p) = &args.chart {
        std::fs::write(p, svg::chart(&rows)).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(rows)
}
