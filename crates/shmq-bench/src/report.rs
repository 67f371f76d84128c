//! The report of a run: the ratios between shmq and the references, whether
//! each figure meets its target, and the table.

use super::Row;

fn find<'a>(rows: &'a [Row], scenario: &str, transport: &str, payload: usize) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.scenario == scenario && r.transport == transport && r.payload == payload)
}

/// A target "ratio >= bound" against `reference`.
fn at_least(
    reference: &str,
    bound: f64,
    ratio: Option<f64>,
) -> (String, String, Option<f64>, Option<bool>) {
    (
        reference.into(),
        format!(">= {bound}"),
        ratio,
        ratio.map(|x| x >= bound),
    )
}

/// A target "ratio <= bound" against `reference`.
fn at_most(
    reference: &str,
    bound: f64,
    ratio: Option<f64>,
) -> (String, String, Option<f64>, Option<bool>) {
    (
        reference.into(),
        format!("<= {bound}"),
        ratio,
        ratio.map(|x| x <= bound),
    )
}

/// Fills in the ratios of docs/PERFORMANCE.md.
pub(super) fn ratios(rows: &mut [Row]) {
    let rate =
        |rows: &[Row], sc: &str, t: &str, p: usize| find(rows, sc, t, p).and_then(|r| r.msgs_per_s);
    let p50 =
        |rows: &[Row], sc: &str, t: &str, p: usize| find(rows, sc, t, p).and_then(|r| r.rtt_p50_ns);
    let snapshot: Vec<Row> = rows.to_vec();
    let r = &snapshot[..];
    let keyless64 = rate(r, "one-to-one", "shmq", 64);
    for row in rows.iter_mut() {
        let (reference, target, ratio, meets): (String, String, Option<f64>, Option<bool>) =
            match (row.scenario, row.transport) {
                ("one-to-one", "shmq") => {
                    let bare = rate(r, "one-to-one", "bare-ring", row.payload);
                    let ratio = row.msgs_per_s.zip(bare).map(|(a, b)| a / b);
                    let aq = rate(r, "one-to-one", "arrayqueue", row.payload)
                        .zip(row.msgs_per_s)
                        .map(|(b, a)| a / b);
                    row.note = format!(
                        "{:.2}x arrayqueue (target >= 1.2x){}",
                        aq.unwrap_or(f64::NAN),
                        if row.payload == 64 {
                            let vs: Vec<String> = ["unix-socket", "pipe", "iceoryx2"]
                                .into_iter()
                                .filter_map(|t| {
                                    let x = row.msgs_per_s? / rate(r, "one-to-one", t, 64)?;
                                    Some(format!("{x:.0}x {t}"))
                                })
                                .collect();
                            if vs.is_empty() {
                                String::new()
                            } else {
                                format!("; {} (target >= 20x)", vs.join(", "))
                            }
                        } else {
                            String::new()
                        }
                    );
                    at_least("bare-ring", 0.9, ratio)
                }
                ("batched", "shmq") => {
                    let ratio = row
                        .msgs_per_s
                        .zip(rate(r, "batched", "rtrb-chunks", 64))
                        .map(|(a, b)| a / b);
                    at_least("rtrb-chunks", 0.75, ratio)
                }
                ("ping-pong", "shmq") => {
                    let ratio = row
                        .rtt_p50_ns
                        .zip(p50(r, "ping-pong", "bare-ring", 64))
                        .map(|(a, b)| a as f64 / b as f64);
                    at_most("bare-ring p50", 1.2, ratio)
                }
                ("keyed", "shmq") => {
                    let ratio = row.msgs_per_s.zip(keyless64).map(|(a, b)| a / b);
                    at_least("one-to-one shmq 64 B", 0.5, ratio)
                }
                ("metrics-off", "shmq") => {
                    // metrics on / metrics off
                    let ratio = keyless64.zip(row.msgs_per_s).map(|(on, off)| on / off);
                    at_least("metrics on / off", 0.9, ratio)
                }
                ("oversubscribed", "shmq") => {
                    let ratio = row.msgs_per_s.zip(keyless64).map(|(a, b)| a / b);
                    at_least("one-to-one shmq 64 B", 0.5, ratio)
                }
                ("c-abi", "shmq") => {
                    let ratio = row.msgs_per_s.zip(keyless64).map(|(a, b)| a / b);
                    at_least("one-to-one shmq 64 B", 0.9, ratio)
                }
                ("python", "shmq") => {
                    if let Some((py, rust)) = row.msgs_per_s.zip(rate(r, "batched", "shmq", 64)) {
                        row.note += &format!("; {:.2}x the Rust batched row", py / rust);
                    }
                    at_least(
                        "2 M msgs/s (absolute)",
                        1.0,
                        row.msgs_per_s.map(|x| x / 2e6),
                    )
                }
                ("memory", "shmq") => {
                    let Some(m) = &row.memory else { continue };
                    let growth = m.growth();
                    let fixed = m.file_bytes_end == m.file_bytes;
                    (
                        "anon RSS end / after 1%".into(),
                        "<= 1.05, file size fixed".into(),
                        Some(growth),
                        Some(growth <= 1.05 && fixed),
                    )
                }
                ("one-to-one", "unix-socket" | "pipe" | "iceoryx2") => {
                    let ratio = keyless64.zip(row.msgs_per_s).map(|(a, b)| a / b);
                    at_least("shmq one-to-one 64 B / this", 20.0, ratio)
                }
                ("idle-wait", "shmq") => {
                    let ratio = row
                        .rtt_p50_ns
                        .zip(p50(r, "idle-wait", "bare-ring", 8))
                        .map(|(a, b)| a as f64 / b as f64);
                    at_most("bare futex hop p50", 1.2, ratio)
                }
                _ => continue,
            };
        row.reference = Some(reference);
        row.target = Some(target);
        row.ratio = ratio;
        row.meets_target = meets;
    }
}

fn fmt_rate(r: Option<f64>) -> String {
    r.map_or("-".into(), |x| format!("{:.2} M", x / 1e6))
}

fn fmt_ns(n: Option<u64>) -> String {
    n.map_or("-".into(), |x| {
        if x >= 10_000 {
            format!("{:.1} µs", x as f64 / 1000.0)
        } else {
            format!("{x} ns")
        }
    })
}

pub(super) fn print_table(rows: &[Row]) {
    println!(
        "{:<15} {:<12} {:>6} {:>11} {:>10} {:>10} {:>8} {:<22} {:<7} note",
        "scenario", "transport", "bytes", "msgs/s", "rtt p50", "rtt p99", "ratio", "vs", "target",
    );
    for r in rows {
        println!(
            "{:<15} {:<12} {:>6} {:>11} {:>10} {:>10} {:>8} {:<22} {:<7} {}{}",
            r.scenario,
            r.transport,
            r.payload,
            fmt_rate(r.msgs_per_s),
            fmt_ns(r.rtt_p50_ns),
            fmt_ns(r.rtt_p99_ns),
            r.ratio.map_or("-".into(), |x| format!("{x:.2}")),
            r.reference.clone().unwrap_or_default(),
            r.target.clone().unwrap_or_default(),
            match r.meets_target {
                Some(true) => "met. ",
                Some(false) => "MISSED. ",
                None => "",
            },
            r.note
        );
    }
}
