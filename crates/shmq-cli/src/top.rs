//! `shmq top`: a terminal dashboard of one or more queues, drawn with
//! ratatui on crossterm. Per queue: the production and consumption rates
//! of the last minutes as two sparklines side by side, the slots in use
//! against the capacity as a gauge, time in queue and processing time
//! (p50/p99 over the last interval), dead letters, and the participant
//! table with the claims each participant holds now.
//!
//! One rendering serves every output: [`draw`] lays a frame out into any
//! ratatui buffer, the terminal's (double-buffered: only the cells that
//! changed are written, so nothing flickers) or an off-screen one whose
//! text is printed when stdout is not a terminal ([`plain_frame`]), and
//! `stats --watch` on a terminal shows the same dashboard for its queue.

use std::collections::{HashMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Gauge, Paragraph, Row, Sparkline, Table};
use ratatui::{Frame, Terminal};
use shmq::internals::engine::{Engine, SlotState};
use shmq::internals::memory::Loads;
use shmq::{Counter, Histogram, HistogramSnapshot, OpenOptions, Queue, Stats};

use crate::commands::{participants, ParticipantRow};
use crate::stats_view::{Delta, View};
use crate::util::{human_ns, human_rate, CmdResult};

/// The rates kept for the sparklines (one per interval); a terminal wider
/// than this shows them all.
const HISTORY: usize = 512;

/// Participant rows shown per queue (the rest are counted in a last row).
const MAX_PARTICIPANTS: usize = 8;

/// Width of a frame printed as plain text.
pub const PLAIN_WIDTH: u16 = 100;

/// What `shmq top` is asked to do.
#[derive(Debug, Clone)]
pub struct TopOptions {
    /// The queue files.
    pub paths: Vec<PathBuf>,
    /// How they are opened.
    pub open: OpenOptions,
    /// Time between frames.
    pub interval: Duration,
    /// Print one plain frame and stop.
    pub once: bool,
    /// Stop after this many frames (default: until `q` or Ctrl-C).
    pub count: Option<u64>,
    /// The first line of every frame.
    pub title: String,
}

/// A participant as the dashboard shows it.
#[derive(Debug, Clone)]
pub struct Participant {
    /// Registered process.
    pub pid: u32,
    /// Its name, from /proc (empty when gone or elsewhere).
    pub command: String,
    /// Has sent.
    pub producer: bool,
    /// Has claimed.
    pub consumer: bool,
    /// Messages it holds claimed now.
    pub claims: u64,
    /// Whether its process still holds its entry (None: cannot tell).
    pub alive: Option<bool>,
    /// Time since it attached, ns.
    pub attached_for_ns: u64,
}

/// One queue in one frame: gauges now, what happened in the last
/// interval, the rates of the intervals before, and who is attached.
#[derive(Debug)]
pub struct QueueFrame {
    /// The snapshot (label, stats, sleepers).
    pub view: View,
    /// The last interval.
    pub delta: Delta,
    /// Messages sent per second, one per interval, oldest first.
    pub produced: Vec<u64>,
    /// Messages acked per second, one per interval, oldest first.
    pub consumed: Vec<u64>,
    /// The live participant entries with their claims.
    pub participants: Vec<Participant>,
}

/// A queue followed from frame to frame.
pub struct Tracker {
    label: String,
    queue: Queue,
    before: Stats,
    produced: VecDeque<u64>,
    consumed: VecDeque<u64>,
}

impl Tracker {
    /// Starts following `queue`: the first frame's rates are measured from
    /// now.
    pub fn new(label: &str, queue: Queue) -> Tracker {
        Tracker {
            label: label.to_string(),
            before: queue.stats(),
            queue,
            produced: VecDeque::new(),
            consumed: VecDeque::new(),
        }
    }

    /// Takes a snapshot and returns the frame of the interval since the
    /// last one.
    pub fn sample(&mut self) -> QueueFrame {
        let view = View::take(&self.label, &self.queue);
        let delta = Delta::between(&self.before, &view.stats);
        for (h, c) in [
            (&mut self.produced, Counter::Sent),
            (&mut self.consumed, Counter::Acked),
        ] {
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(delta.rate(c).round() as u64);
        }
        self.before = view.stats.clone();
        let claims = claims_by_entry(&self.queue, view.stats.capacity);
        let participants = participants(&self.queue)
            .into_iter()
            .filter(|r| r.state == "live")
            .map(|r: ParticipantRow| Participant {
                pid: r.pid,
                command: r.command,
                producer: r.producer,
                consumer: r.consumer,
                claims: claims.get(&r.index).copied().unwrap_or(0),
                alive: r.alive,
                attached_for_ns: r.attached_for_ns,
            })
            .collect();
        QueueFrame {
            view,
            delta,
            produced: self.produced.iter().copied().collect(),
            consumed: self.consumed.iter().copied().collect(),
            participants,
        }
    }
}

/// Claimed slots by the participant entry that holds them (a racy scan,
/// like every gauge: a claim settled during the scan may still be
/// counted, which a dashboard refreshed every second can afford).
fn claims_by_entry(q: &Queue, capacity: u64) -> HashMap<u64, u64> {
    fn scan<M: Loads>(e: &Engine<M>, capacity: u64) -> HashMap<u64, u64> {
        let mut out = HashMap::new();
        for i in 0..capacity {
            let w = e.slot_word(i);
            if w.state() == SlotState::Claimed {
                *out.entry(w.owner()).or_insert(0) += 1;
            }
        }
        out
    }
    match q.read_only_engine() {
        Some(e) => scan(e, capacity),
        None => scan(q.engine(), capacity),
    }
}

/// Whether colours are wanted: not when `NO_COLOR` is set to anything
/// but the empty string (<https://no-color.org>).
pub fn colour_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The styles of a frame, all plain without colour.
#[derive(Clone, Copy)]
struct Palette {
    colour: bool,
}

impl Palette {
    fn fg(self, c: Color) -> Style {
        if self.colour {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }
    fn title(self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }
    /// The gauge's colour by how full the queue is.
    fn fill(self, ratio: f64) -> Style {
        self.fg(if ratio >= 0.9 {
            Color::Red
        } else if ratio >= 0.6 {
            Color::Yellow
        } else {
            Color::Green
        })
    }
}

fn quantile(h: &HistogramSnapshot, q: f64) -> String {
    if h.count == 0 {
        "-".to_string()
    } else {
        human_ns(h.quantile(q))
    }
}

/// Rows of the participant table of `qf` (header excluded).
fn participant_rows(qf: &QueueFrame) -> usize {
    let n = qf.participants.len();
    if n > MAX_PARTICIPANTS {
        MAX_PARTICIPANTS + 1
    } else {
        n.max(1)
    }
}

/// Height of one queue's panel.
pub fn queue_height(qf: &QueueFrame) -> u16 {
    // Borders 2, gauge 1, sparklines 5, latency and dead letters 3,
    // table header 1, rows.
    (2 + 1 + 5 + 3 + 1 + participant_rows(qf)) as u16
}

/// Height of a whole frame: the title line and every queue.
pub fn frame_height(frames: &[QueueFrame]) -> u16 {
    1 + frames.iter().map(queue_height).sum::<u16>()
}

/// Draws a frame: the title line, then one panel per queue.
pub fn draw(f: &mut Frame, title: &str, frames: &[QueueFrame], colour: bool) {
    let p = Palette { colour };
    let mut rows = vec![Constraint::Length(1)];
    rows.extend(frames.iter().map(|q| Constraint::Length(queue_height(q))));
    rows.push(Constraint::Min(0));
    let areas = Layout::vertical(rows).split(f.area());
    f.render_widget(Paragraph::new(Span::styled(title, p.title())), areas[0]);
    for (qf, area) in frames.iter().zip(&areas[1..]) {
        draw_queue(f, *area, qf, p);
    }
}

/// Draws one queue's panel into `area` (as [`draw`] does for each queue),
/// for views that lay out more than queues (the demo's).
pub fn draw_queue_panel(f: &mut Frame, area: Rect, qf: &QueueFrame, colour: bool) {
    draw_queue(f, area, qf, Palette { colour });
}

fn draw_queue(f: &mut Frame, area: Rect, qf: &QueueFrame, p: Palette) {
    let (v, d, s) = (&qf.view, &qf.delta, &qf.view.stats);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {} ", v.label), p.title()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [gauge, sparks, text, table] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(5),
        Constraint::Length(3),
        Constraint::Min(0),
    ])
    .areas(inner);

    let used = s.depth + s.in_flight + s.delayed + s.reserved;
    let ratio = if s.capacity == 0 {
        0.0
    } else {
        (used as f64 / s.capacity as f64).min(1.0)
    };
    f.render_widget(
        Gauge::default()
            .gauge_style(p.fill(ratio))
            .use_unicode(true)
            .ratio(ratio)
            .label(format!(
                "{used}/{} used: depth {} in flight {} delayed {} reserved {}",
                s.capacity, s.depth, s.in_flight, s.delayed, s.reserved
            )),
        gauge,
    );

    // Both sparklines on one scale, so that their heights compare.
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(sparks);
    let shown =
        |h: &[u64], w: u16| -> Vec<u64> { h[h.len().saturating_sub(w as usize)..].to_vec() };
    let width = left
        .width
        .saturating_sub(2)
        .min(right.width.saturating_sub(2));
    let (prod, cons) = (shown(&qf.produced, width), shown(&qf.consumed, width));
    let max = prod.iter().chain(&cons).copied().max().unwrap_or(0).max(1);
    for (area, name, rate, data, colour) in [
        (left, "produced", d.rate(Counter::Sent), &prod, Color::Cyan),
        (
            right,
            "consumed",
            d.rate(Counter::Acked),
            &cons,
            Color::Magenta,
        ),
    ] {
        f.render_widget(
            Sparkline::default()
                .block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(format!(" {name} {} ", human_rate(rate))),
                )
                .data(data)
                .max(max)
                .style(p.fg(colour)),
            area,
        );
    }

    let lead = d.histogram(Histogram::LeadTime);
    let proc_ = d.histogram(Histogram::Processing);
    let lines = vec![
        Line::from(format!(
            "time in queue p50 {:>7} p99 {:>7}   processing p50 {:>7} p99 {:>7}   (last {:.1}s)",
            quantile(lead, 0.5),
            quantile(lead, 0.99),
            quantile(proc_, 0.5),
            quantile(proc_, 0.99),
            d.secs
        )),
        Line::from(format!(
            "oldest claimable {}   oldest in flight {}   asleep: {} producers, {} consumers",
            human_ns(s.oldest_claimable_age_ns),
            human_ns(s.oldest_in_flight_age_ns),
            v.waiting_producers,
            v.waiting_consumers
        )),
        Line::from(vec![
            Span::styled(
                format!(
                    "dead letters {} (waiting for room {})",
                    s.dead_letters, s.dlq_waiting
                ),
                if s.dead_letters + s.dlq_waiting > 0 {
                    p.fg(Color::Red)
                } else {
                    Style::default()
                },
            ),
            Span::raw(format!(
                "   redelivered {}  stale {}  refused full {}",
                s.counter(Counter::Redelivered),
                s.counter(Counter::Stale),
                s.counter(Counter::Full)
            )),
        ]),
    ];
    f.render_widget(Paragraph::new(lines), text);

    let mut rows: Vec<Row> = qf
        .participants
        .iter()
        .take(MAX_PARTICIPANTS)
        .map(|r| {
            let roles = match (r.producer, r.consumer) {
                (true, true) => "producer+consumer",
                (true, false) => "producer",
                (false, true) => "consumer",
                (false, false) => "attached",
            };
            let alive = match r.alive {
                Some(true) => "alive",
                Some(false) => "dead",
                None => "?",
            };
            Row::new(vec![
                r.pid.to_string(),
                r.command.clone(),
                roles.to_string(),
                r.claims.to_string(),
                alive.to_string(),
                human_ns(r.attached_for_ns),
            ])
        })
        .collect();
    if qf.participants.is_empty() {
        rows.push(Row::new(vec![
            "-".to_string(),
            "nobody attached".to_string(),
        ]));
    } else if qf.participants.len() > MAX_PARTICIPANTS {
        rows.push(Row::new(vec![
            "…".to_string(),
            format!("{} more", qf.participants.len() - MAX_PARTICIPANTS),
        ]));
    }
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(8),
                Constraint::Length(16),
                Constraint::Length(18),
                Constraint::Length(7),
                Constraint::Length(6),
                Constraint::Min(8),
            ],
        )
        .header(
            Row::new(vec![
                "pid", "command", "role", "claims", "state", "attached",
            ])
            .style(p.title()),
        ),
        table,
    );
}

/// The text of a buffer, one line per row, trailing blanks trimmed.
pub fn buffer_text(buf: &Buffer) -> String {
    let mut out = String::new();
    let area = buf.area;
    for y in area.top()..area.bottom() {
        let mut line = String::new();
        for x in area.left()..area.right() {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A frame drawn off screen, `width` columns wide and as tall as it needs,
/// as plain text (no colours, no escape codes).
pub fn plain_frame(title: &str, frames: &[QueueFrame], width: u16) -> String {
    let backend = TestBackend::new(width, frame_height(frames));
    // A TestBackend neither fails nor does input or output.
    let mut term = Terminal::new(backend).expect("a test backend");
    let _ = term.draw(|f| draw(f, title, frames, false));
    buffer_text(term.backend().buffer())
}

fn title(opts: &TopOptions, started: Instant) -> String {
    format!(
        "{}   {} elapsed, every {}",
        opts.title,
        human_ns(started.elapsed().as_nanos() as u64),
        human_ns(opts.interval.as_nanos() as u64)
    )
}

/// Runs the dashboard over already opened queues.
pub fn run(opts: &TopOptions, queues: Vec<(String, Queue)>) -> CmdResult {
    let mut trackers: Vec<Tracker> = queues
        .into_iter()
        .map(|(l, q)| Tracker::new(&l, q))
        .collect();
    let started = Instant::now();
    let tty = std::io::stdout().is_terminal();
    if opts.once || !tty {
        let mut n = 0u64;
        loop {
            std::thread::sleep(opts.interval);
            let frames: Vec<QueueFrame> = trackers.iter_mut().map(Tracker::sample).collect();
            let width = if tty {
                ratatui::crossterm::terminal::size().map_or(PLAIN_WIDTH, |(w, _)| w)
            } else {
                PLAIN_WIDTH
            };
            let mut out = std::io::stdout().lock();
            if n > 0 {
                writeln!(out)?;
            }
            write!(
                out,
                "{}",
                plain_frame(&title(opts, started), &frames, width)
            )?;
            out.flush()?;
            n += 1;
            if opts.once || opts.count.is_some_and(|c| n >= c) {
                return Ok(0);
            }
        }
    }
    let colour = colour_wanted();
    // Raw mode and the alternate screen; ratatui's panic hook restores the
    // terminal before the panic message is printed.
    let mut term = ratatui::try_init()?;
    let result = (|| -> std::io::Result<()> {
        let mut frames: Vec<QueueFrame> = Vec::new();
        let mut n = 0u64;
        let mut next = Instant::now() + opts.interval;
        loop {
            let t = title(opts, started) + "   q to quit";
            term.draw(|f| draw(f, &t, &frames, colour))?;
            // Keys and resizes until the next sample is due.
            let wait = next.saturating_duration_since(Instant::now());
            if event::poll(wait)? {
                match event::read()? {
                    Event::Key(k) if k.kind != KeyEventKind::Release => {
                        let ctrl_c = k.modifiers.contains(KeyModifiers::CONTROL)
                            && k.code == KeyCode::Char('c');
                        if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                            return Ok(());
                        }
                    }
                    _ => {}
                }
                continue;
            }
            frames = trackers.iter_mut().map(Tracker::sample).collect();
            next += opts.interval;
            if next < Instant::now() {
                next = Instant::now() + opts.interval;
            }
            n += 1;
            if opts.count.is_some_and(|c| n > c) {
                return Ok(());
            }
        }
    })();
    ratatui::restore();
    result?;
    Ok(0)
}

/// `shmq top`.
pub fn top(opts: &TopOptions) -> CmdResult {
    let mut queues = Vec::new();
    for p in &opts.paths {
        let q = Queue::open_with(p, &opts.open)?;
        queues.push((p.display().to_string(), q));
    }
    run(opts, queues)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmq::{Options, Timeout};

    fn temp_queue(name: &str) -> (PathBuf, Queue) {
        let dir = std::env::temp_dir().join(format!("shmq-top-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("orders");
        let o = Options {
            capacity: 64,
            ..Options::default()
        };
        (path.clone(), Queue::create(&path, &o).unwrap())
    }

    #[test]
    fn a_frame_of_a_real_queue_shows_its_figures() {
        let (path, q) = temp_queue("frame");
        let label = path.display().to_string();
        let mut t = Tracker::new(&label, Queue::open(&path).unwrap());
        for i in 0..10u8 {
            q.send(&[i; 8], Timeout::TryOnce).unwrap();
        }
        let held = q.claim(Timeout::TryOnce).unwrap();
        let m = q.claim(Timeout::TryOnce).unwrap();
        m.ack().unwrap();
        let frames = vec![t.sample()];
        let backend = TestBackend::new(PLAIN_WIDTH, frame_height(&frames));
        let mut term = Terminal::new(backend).unwrap();
        term.draw(|f| draw(f, "shmq top", &frames, true)).unwrap();
        let text = buffer_text(term.backend().buffer());
        assert!(text.contains(&label), "{text}");
        // 8 waiting and 1 in flight of 64 slots.
        assert!(text.contains("9/64 used: depth 8 in flight 1"), "{text}");
        assert!(text.contains(" produced "), "{text}");
        assert!(text.contains(" consumed "), "{text}");
        assert!(text.contains("time in queue p50"), "{text}");
        assert!(text.contains("dead letters 0"), "{text}");
        // This process is attached (twice: two handles), one holds a claim.
        let me = std::process::id().to_string();
        assert!(
            text.lines()
                .any(|l| l.contains(&me) && l.contains("producer+consumer")),
            "{text}"
        );
        assert_eq!(
            frames[0].participants.iter().map(|p| p.claims).sum::<u64>(),
            1
        );
        // Colour only when asked.
        let coloured = term
            .backend()
            .buffer()
            .content()
            .iter()
            .any(|c| c.fg != Color::Reset);
        assert!(coloured);
        let plain = plain_frame("shmq top", &frames, PLAIN_WIDTH);
        assert_eq!(plain, text);
        held.ack().unwrap();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn without_colour_every_cell_is_default() {
        let (path, q) = temp_queue("nocolour");
        q.send(b"x", Timeout::TryOnce).unwrap();
        let mut t = Tracker::new("q", Queue::open(&path).unwrap());
        let frames = vec![t.sample()];
        let mut term = Terminal::new(TestBackend::new(80, frame_height(&frames))).unwrap();
        term.draw(|f| draw(f, "t", &frames, false)).unwrap();
        for c in term.backend().buffer().content() {
            assert_eq!((c.fg, c.bg), (Color::Reset, Color::Reset));
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
