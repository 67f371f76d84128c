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
use super::{interleaved, repeat, BenchArgs, Measure, Row, Sizes};

/// Which transports' rows a job is to measure.
type Wants<'w> = &'w dyn Fn(&str) -> bool;

/// A scenario: its name, the transports whose rows it can run alone (for
/// `--only TRANSPORT`; empty: the job runs whole or not at all), and the
/// measurement.
type Job<'a> = (
    &'static str,
    &'static [&'static str],
    Box<dyn FnMut(Wants) -> Result<Vec<Row>, String> + 'a>,
);

/// Keeps the jobs `--only` names: a job whose name contains an item runs
/// whole; otherwise a job that lists a transport named by an item runs
/// that transport's rows alone. Returns each kept job with its transports
/// (`None`: all).
fn select<'a>(jobs: Vec<Job<'a>>, only: Option<&str>) -> Vec<(Job<'a>, Option<Vec<String>>)> {
    let Some(only) = only else {
        return jobs.into_iter().map(|j| (j, None)).collect();
    };
    let items: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .collect();
    jobs.into_iter()
        .filter_map(|job| {
            if items.iter().any(|i| job.0.contains(i)) {
                return Some((job, None));
            }
            let picked: Vec<String> = job
                .1
                .iter()
                .filter(|t| items.contains(t))
                .map(|t| t.to_string())
                .collect();
            (!picked.is_empty()).then_some((job, Some(picked)))
        })
        .collect()
}

/// Runs the bench; prints the table; writes JSON and chart on request.
pub fn run(args: &BenchArgs) -> Result<Vec<Row>, String> {
    if args.instructions {
        let rows = super::instructions::run(args.quick)?;
        write_json(args, &rows)?;
        return Ok(rows);
    }
    let mut s = if args.quick {
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
    if let Some(runs) = args.runs {
        s.runs = runs.max(1);
    }
    let s = s;
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
            &["shmq", "bare-ring", "arrayqueue", "rtrb"],
            Box::new(move |wants| {
                // The four transports take turns, run after run.
                let mut fs: Vec<Measure> = Vec::new();
                if wants("shmq") {
                    fs.push(Box::new(move || {
                        shmq_one_to_one(s, &single(payload, true), "one-to-one")
                    }));
                }
                if wants("bare-ring") {
                    fs.push(Box::new(move || ring_one_to_one(s, payload, "one-to-one")));
                }
                if wants("arrayqueue") {
                    fs.push(Box::new(move || arrayqueue_one_to_one(s, payload)));
                }
                if wants("rtrb") {
                    fs.push(Box::new(move || rtrb_one_to_one(s, payload, 1)));
                }
                interleaved(s.runs, fs)
            }),
        ));
    }
    jobs.push((
        "one-to-one",
        &["unix-socket", "pipe"],
        Box::new(|wants| {
            let mut rows = Vec::new();
            if wants("unix-socket") {
                rows.push(repeat(s.runs, || fd_one_to_one(&s, 64, true))?);
            }
            if wants("pipe") {
                rows.push(repeat(s.runs, || fd_one_to_one(&s, 64, false))?);
            }
            Ok(rows)
        }),
    ));
    jobs.push((
        "batched",
        &["shmq", "rtrb-chunks"],
        Box::new(|wants| {
            let b = ShmqRun {
                payload: 64,
                batch: 32,
                metrics: true,
                keys: 0,
            };
            let mut fs: Vec<Measure> = Vec::new();
            if wants("shmq") {
                fs.push(Box::new(|| shmq_one_to_one(&s, &b, "batched")));
            }
            if wants("rtrb-chunks") {
                fs.push(Box::new(|| rtrb_one_to_one(&s, 64, 32)));
            }
            interleaved(s.runs, fs)
        }),
    ));
    jobs.push((
        "ping-pong",
        &["shmq", "bare-ring", "unix-socket", "pipe"],
        Box::new(|wants| {
            let mut rows = Vec::new();
            if wants("shmq") {
                rows.push(shmq_ping_pong(&s, 64)?);
            }
            if wants("bare-ring") {
                rows.push(ring_ping_pong(&s, 64)?);
            }
            if wants("unix-socket") {
                rows.push(fd_ping_pong(&s, 64, true)?);
            }
            if wants("pipe") {
                rows.push(fd_ping_pong(&s, 64, false)?);
            }
            Ok(rows)
        }),
    ));
    jobs.push((
        "keyed",
        &[],
        Box::new(|_| {
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
        &[],
        Box::new(|_| {
            Ok(vec![repeat(s.runs, || {
                shmq_one_to_one(&s, &single(64, false), "metrics-off")
            })?])
        }),
    ));
    jobs.push((
        "c-abi",
        &[],
        Box::new(|_| Ok(vec![repeat(s.runs, || foreign::c_abi(&s, &foreign))?])),
    ));
    jobs.push((
        "python",
        &[],
        Box::new(|_| Ok(vec![repeat(s.runs, || foreign::python(&s, &foreign))?])),
    ));
    jobs.push((
        "memory",
        &[],
        Box::new(|_| {
            Ok(vec![memory::memory(if args.quick {
                1_000_000
            } else {
                100_000_000
            })?])
        }),
    ));
    if !args.quick {
        jobs.push(("iceoryx2", &[], Box::new(|_| iceoryx2::rows(&s))));
    }
    jobs.push((
        "oversubscribed",
        &[],
        Box::new(|_| Ok(vec![oversubscribed(&s, 64)?])),
    ));
    jobs.push((
        "idle-wait",
        &[],
        Box::new(|_| {
            let (a, b) = idle_wait(&s)?;
            Ok(vec![a, b])
        }),
    ));

    // A comma-separated list, so that a partial run can keep a row and its
    // reference (`--only one-to-one,c-abi`, `--only bare-ring,arrayqueue`).
    let jobs = select(jobs, args.only.as_deref());
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(jobs.len() as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    for ((name, _, mut job), picked) in jobs {
        bar.set_message(name);
        let wants = |t: &str| picked.as_ref().map_or(true, |p| p.iter().any(|x| x == t));
        rows.extend(job(&wants).map_err(|e| format!("bench {name}: {e}"))?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    ratios(&mut rows);
    print_table(&rows);
    write_json(args, &rows)?;
    if let Some(p) = &args.chart {
        std::fs::write(p, svg::chart(&rows)).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(rows)
}

/// Writes the rows to `--json FILE`, if asked.
fn write_json(args: &BenchArgs, rows: &[Row]) -> Result<(), String> {
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(rows).map_err(|e| e.to_string())?;
        std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}
