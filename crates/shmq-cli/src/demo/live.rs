//! The live view of the demo: the three queues' metrics, the story so far
//! and the last notes.
//!
//! On a terminal it is `shmq top`'s rendering ([`crate::top`]): per queue
//! the production and consumption rates as sparklines, the slots in use
//! against the capacity, time in queue and processing time, dead letters,
//! and who is attached with the claims each holds; above them the orders
//! so far, below them the menu cache and the story. It is drawn on the
//! alternate screen with ratatui (double-buffered: only the cells that
//! changed are written, so nothing flickers), in colour unless `NO_COLOR`
//! is set, and its last frame is printed as plain text when the demo ends,
//! so it stays in the scrollback above the summary. The terminal is not put
//! in raw mode, so Ctrl-C still interrupts the whole process group; only
//! the echo of typed keys is off while the dashboard shows.
//!
//! Without a terminal it prints one plain line per refresh, as before, so
//! that logs stay readable.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use ratatui::backend::{CrosstermBackend, TestBackend};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::{Frame, Terminal};
use shmq::{Counter, Queue};

use crate::stats_view::View;

use super::story::Story;
use super::{dish, read_cache};
use crate::cli::DemoArgs;
use crate::stats_view::Delta;
use crate::top::{self, QueueFrame, Tracker};
use crate::util::{human_ns, plural};

/// Where the live view goes, and whether that is a terminal.
pub(super) struct Screen {
    pub(super) out: Box<dyn Write>,
    pub(super) tty: bool,
    /// The dashboard, on a terminal once started.
    live: Option<Live>,
}

impl Screen {
    /// The live view on stderr (`--json`: stdout has the summary) or stdout.
    pub(super) fn new(json: bool) -> Screen {
        use std::io::IsTerminal;
        let (out, tty): (Box<dyn Write>, bool) = if json {
            (Box::new(std::io::stderr()), std::io::stderr().is_terminal())
        } else {
            (Box::new(std::io::stdout()), std::io::stdout().is_terminal())
        };
        Screen {
            out,
            tty,
            live: None,
        }
    }

    /// On a terminal, starts the dashboard of the queues `names` in `dir`
    /// (each followed by an inspection handle of its own, which attaches
    /// no participant). If it cannot start, the view stays plain lines.
    pub(super) fn start(&mut self, json: bool, dir: &Path, names: &[&str]) {
        if !self.tty {
            return;
        }
        match Live::start(json, dir, names) {
            Ok(l) => self.live = Some(l),
            Err(e) => {
                self.tty = false;
                let _ = writeln!(self.out, "(the live view cannot draw: {e}; plain lines)");
            }
        }
    }

    /// Leaves the dashboard and prints its last frame as plain text.
    pub(super) fn finish(&mut self) {
        if let Some(mut l) = self.live.take() {
            l.finish(&mut self.out);
        }
    }
}

/// Everything one frame of the dashboard shows.
struct DemoFrame {
    /// The lines above the queues.
    header: Vec<String>,
    /// The queues.
    queues: Vec<QueueFrame>,
    /// The lines below them: the menu cache, then the story.
    below: Vec<String>,
}

/// The dashboard on a terminal.
struct Live {
    term: Terminal<CrosstermBackend<Box<dyn Write>>>,
    trackers: Vec<Tracker>,
    colour: bool,
    last: Option<DemoFrame>,
    left: bool,
    /// The terminal's settings before echo was turned off (stdin's), to
    /// put back.
    echo: Option<libc::termios>,
}

/// Turns off the echo of typed characters on stdin's terminal, which would
/// otherwise print over the dashboard (the terminal is not in raw mode:
/// Ctrl-C must still reach the process group). Returns the settings to
/// restore; `None` when stdin is no terminal.
fn echo_off() -> Option<libc::termios> {
    // SAFETY: an all-zero termios is a valid value to be overwritten.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 and a valid termios to fill; fails harmlessly when
    // stdin is no terminal.
    if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
        return None;
    }
    let saved = t;
    t.c_lflag &= !libc::ECHO;
    // SAFETY: fd 0 and a valid termios read from it.
    (unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) } == 0).then_some(saved)
}

impl Live {
    fn start(json: bool, dir: &Path, names: &[&str]) -> std::io::Result<Live> {
        use ratatui::crossterm::{cursor::Hide, execute, terminal::EnterAlternateScreen};
        let mut trackers = Vec::new();
        for n in names {
            let q = Queue::inspect(dir.join(n)).map_err(std::io::Error::other)?;
            trackers.push(Tracker::new(n, q));
        }
        let mut out: Box<dyn Write> = if json {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        };
        execute!(out, EnterAlternateScreen, Hide)?;
        let term = Terminal::new(CrosstermBackend::new(out))?;
        Ok(Live {
            term,
            trackers,
            colour: top::colour_wanted(),
            last: None,
            left: false,
            echo: echo_off(),
        })
    }

    fn show(&mut self, header: Vec<String>, below: Vec<String>) {
        let frame = DemoFrame {
            header,
            queues: self.trackers.iter_mut().map(Tracker::sample).collect(),
            below,
        };
        let colour = self.colour;
        let _ = self.term.draw(|f| render(f, &frame, colour));
        self.last = Some(frame);
    }

    fn leave(&mut self) {
        use ratatui::crossterm::{cursor::Show, execute, terminal::LeaveAlternateScreen};
        if !self.left {
            self.left = true;
            let _ = execute!(self.term.backend_mut(), LeaveAlternateScreen, Show);
            if let Some(t) = self.echo.take() {
                // SAFETY: fd 0 and the settings read from it at the start.
                unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
            }
        }
    }

    fn finish(&mut self, out: &mut Box<dyn Write>) {
        self.leave();
        if let Some(frame) = &self.last {
            let width = self.term.size().map_or(top::PLAIN_WIDTH, |s| s.width);
            let _ = write!(out, "{}", plain(frame, width));
            let _ = out.flush();
        }
    }
}

impl Drop for Live {
    /// An early return (an interrupt, an error) leaves the terminal as it
    /// found it.
    fn drop(&mut self) {
        self.leave();
    }
}

/// Height of a frame with all of its lines.
fn height(frame: &DemoFrame) -> u16 {
    let queues: u16 = frame.queues.iter().map(top::queue_height).sum();
    frame.header.len() as u16 + queues + frame.below.len() as u16
}

/// Lays a frame out: the header lines, a panel per queue, the lines below
/// (the newest story lines, as many as fit).
fn render(f: &mut Frame, frame: &DemoFrame, colour: bool) {
    let mut rows = vec![Constraint::Length(frame.header.len() as u16)];
    rows.extend(
        frame
            .queues
            .iter()
            .map(|q| Constraint::Length(top::queue_height(q))),
    );
    rows.push(Constraint::Min(0));
    let areas = Layout::vertical(rows).split(f.area());
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let header: Vec<Line> = frame
        .header
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                Line::from(Span::styled(l.clone(), bold))
            } else {
                Line::from(l.clone())
            }
        })
        .collect();
    f.render_widget(Paragraph::new(header), areas[0]);
    for (qf, area) in frame.queues.iter().zip(&areas[1..]) {
        top::draw_queue_panel(f, *area, qf, colour);
    }
    let rest = areas[areas.len() - 1];
    // The story grows: keep its newest lines when the screen is short.
    let skip = frame.below.len().saturating_sub(rest.height as usize);
    let below: Vec<Line> = frame
        .below
        .iter()
        .skip(skip)
        .map(|l| Line::from(l.clone()))
        .collect();
    f.render_widget(Paragraph::new(below), rest);
}

/// A frame as plain text, `width` columns wide and as tall as it needs.
fn plain(frame: &DemoFrame, width: u16) -> String {
    // A TestBackend neither fails nor does input or output.
    let mut term = Terminal::new(TestBackend::new(width, height(frame))).expect("a test backend");
    let _ = term.draw(|f| render(f, frame, false));
    top::buffer_text(term.backend().buffer())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn draw(
    screen: &mut Screen,
    a: &DemoArgs,
    st: &Story,
    now: &[View],
    deltas: &[Delta],
    started: Instant,
    dir: &Path,
    menu_items: u32,
) {
    let t = human_ns(started.elapsed().as_nanos() as u64);
    let killed = if st.killed.is_some() {
        " (1 killed)"
    } else {
        ""
    };
    let Some(live) = screen.live.as_mut().filter(|_| screen.tty) else {
        let k = &now[0].stats;
        let _ = writeln!(
            screen.out,
            "[{t}] placed {}/{} served {} | kitchen {}/{} used (waiting {}, cooking {}) produced {} consumed {} | refused full {} producers asleep {} redelivered {} | menu stale {}",
            st.placed.len(),
            a.orders,
            st.served.len(),
            k.depth + k.in_flight + k.reserved + k.delayed,
            k.capacity,
            k.depth,
            k.in_flight,
            crate::util::human_rate(deltas[0].rate(Counter::Sent)),
            crate::util::human_rate(deltas[0].rate(Counter::Acked)),
            k.counter(Counter::Full),
            now[0].waiting_producers,
            k.counter(Counter::Redelivered),
            now.get(2).map_or(0, |m| m.stats.counter(Counter::Stale)),
        );
        let _ = screen.out.flush();
        return;
    };
    let header = vec![
        format!(
            "shmq demo: the restaurant   {t}   {} waiters, {} cooks{killed}   {}",
            a.waiters,
            a.cooks,
            dir.display()
        ),
        format!(
            "orders placed {}/{}   cooked {}   served {}   kitchen found full {}",
            st.placed.len(),
            a.orders,
            st.cooked.len(),
            st.served.len(),
            plural(st.full_events, "time")
        ),
    ];
    let mut below = Vec::new();
    if menu_items > 0 {
        let cache = read_cache(dir, menu_items);
        below.push(format!(
            "menu cache (published {}, refused stale at send {}, applied {}):",
            st.published_count, st.refused, st.applied
        ));
        let row: Vec<String> = cache
            .iter()
            .enumerate()
            .map(|(i, (v, _))| format!("{:>9} v{v:<3}", dish(i as u64)))
            .collect();
        for chunk in row.chunks(6) {
            below.push(format!(" {}", chunk.join("")));
        }
    }
    below.push("story:".to_string());
    below.extend(st.log.iter().map(|l| format!("  {l}")));
    live.show(header, below);
}
