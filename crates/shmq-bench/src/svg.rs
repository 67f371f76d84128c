//! The bench chart: one SVG with two panels of horizontal bars, throughput
//! (M msgs/s) and round-trip/wake latency (p50 and p99, µs, log scale),
//! one bar per (scenario, transport, payload). Hand-written SVG: no
//! dependency for a few rectangles.

use super::Row;

const W: f64 = 900.0;
const BAR: f64 = 16.0;
const LABEL: f64 = 260.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn color(transport: &str) -> &'static str {
    match transport {
        "shmq" => "#1f77b4",
        "bare-ring" => "#7f7f7f",
        "arrayqueue" => "#2ca02c",
        "rtrb" | "rtrb-chunks" => "#9467bd",
        "unix-socket" => "#d62728",
        "pipe" => "#ff7f0e",
        "iceoryx2" => "#17becf",
        _ => "#8c564b",
    }
}

/// The chart of `rows` as an SVG document.
pub fn chart(rows: &[Row]) -> String {
    let tput: Vec<&Row> = rows.iter().filter(|r| r.msgs_per_s.is_some()).collect();
    let lat: Vec<&Row> = rows.iter().filter(|r| r.rtt_p50_ns.is_some()).collect();
    let h = 80.0 + (tput.len() + lat.len()) as f64 * (BAR + 6.0) + 80.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let mut y = 30.0;
    out += &format!("<text x=\"10\" y=\"{y}\" font-size=\"15\" font-weight=\"bold\">Throughput, M msgs/s (higher is better)</text>\n");
    y += 15.0;
    let max = tput.iter().filter_map(|r| r.msgs_per_s).fold(1.0, f64::max);
    for r in &tput {
        let v = r.msgs_per_s.unwrap_or(0.0);
        let len = (W - LABEL - 90.0) * v / max;
        out += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{} · {} · {} B</text>\n<rect x=\"{LABEL}\" y=\"{y}\" width=\"{len:.1}\" height=\"{BAR}\" fill=\"{}\"/>\n<text x=\"{:.1}\" y=\"{}\">{:.2}</text>\n",
            LABEL - 6.0,
            y + BAR - 4.0,
            esc(r.scenario),
            esc(r.transport),
            r.payload,
            color(r.transport),
            LABEL + len + 4.0,
            y + BAR - 4.0,
            v / 1e6
        );
        y += BAR + 6.0;
    }
    y += 30.0;
    out += &format!("<text x=\"10\" y=\"{y}\" font-size=\"15\" font-weight=\"bold\">Round trip / wake latency, µs, log scale (p50 bar, p99 tick; lower is better)</text>\n");
    y += 15.0;
    let lmax = lat
        .iter()
        .filter_map(|r| r.rtt_p99_ns)
        .fold(1000.0_f64, |a, b| a.max(b as f64))
        .log10();
    let lmin = 2.0; // 100 ns
    let scale =
        |ns: f64| (W - LABEL - 90.0) * ((ns.max(100.0).log10() - lmin) / (lmax - lmin)).max(0.0);
    for r in &lat {
        let p50 = r.rtt_p50_ns.unwrap_or(0) as f64;
        let p99 = r.rtt_p99_ns.unwrap_or(0) as f64;
        out += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{} · {}</text>\n<rect x=\"{LABEL}\" y=\"{y}\" width=\"{:.1}\" height=\"{BAR}\" fill=\"{}\"/>\n<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y}\" y2=\"{}\" stroke=\"black\" stroke-width=\"2\"/>\n<text x=\"{:.1}\" y=\"{}\">{:.2} / {:.2}</text>\n",
            LABEL - 6.0,
            y + BAR - 4.0,
            esc(r.scenario),
            esc(r.transport),
            scale(p50),
            color(r.transport),
            LABEL + scale(p99),
            LABEL + scale(p99),
            y + BAR,
            LABEL + scale(p99) + 6.0,
            y + BAR - 4.0,
            p50 / 1000.0,
            p99 / 1000.0
        );
        y += BAR + 6.0;
    }
    out += "</svg>\n";
    out
}
