//! Small pieces shared by the subcommands: the command error (a message and
//! an exit code), human-readable durations and sizes, and a progress bar
//! that appears only on a terminal and only after a second.

use std::fmt;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Exit code of a failed command.
pub const EXIT_ERROR: i32 = 1;
/// Exit code when nothing was received or there was nothing to do.
pub const EXIT_NOTHING: i32 = 3;

/// A failed command: what to print and how to exit.
#[derive(Debug)]
pub struct CliError {
    message: String,
    code: i32,
}

impl CliError {
    /// An error with exit code 1.
    pub fn new(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: EXIT_ERROR,
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        self.code
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<shmq::Error> for CliError {
    /// The engine's messages already name the file and the operation; the
    /// status name is prefixed so scripts can match on it.
    fn from(e: shmq::Error) -> CliError {
        CliError::new(cli_message(&e))
    }
}

/// An engine error as the command line says it: its status name, then its
/// message with the library's option names (`trust_any_owner`,
/// `group_shared`) given as this command line's flags.
pub fn cli_message(e: &shmq::Error) -> String {
    let msg = e
        .message()
        .replace("with trust_any_owner", "with --trust-any-owner")
        .replace("with group_shared", "with --group-shared");
    format!("{}: {msg}", e.status().name())
}

/// `n` and a noun, plural unless `n` is 1: `1 time`, `3 times`.
pub fn plural(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        CliError::new(format!("IO: {e}"))
    }
}

/// What a subcommand returns: its exit code, or an error.
pub type CmdResult = Result<i32, CliError>;

/// A duration in nanoseconds, human-readable with three significant digits:
/// `850ns`, `12.3µs`, `4.50ms`, `1.20s`, `2m03s`.
pub fn human_ns(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{}µs", sig3(f / 1e3))
    } else if ns < 1_000_000_000 {
        format!("{}ms", sig3(f / 1e6))
    } else if ns < 60_000_000_000 {
        format!("{}s", sig3(f / 1e9))
    } else {
        let s = ns / 1_000_000_000;
        if s < 3600 {
            format!("{}m{:02}s", s / 60, s % 60)
        } else {
            format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
        }
    }
}

fn sig3(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A byte count, human-readable (`512 B`, `4.0 KiB`, `1.5 MiB`): the
/// library's own wording, as in its errors.
pub fn human_bytes(n: u64) -> String {
    shmq::internals::space::human(n)
}

/// A rate per second, human-readable.
pub fn human_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2}M/s", per_s / 1e6)
    } else if per_s >= 1e4 {
        format!("{:.1}k/s", per_s / 1e3)
    } else {
        format!("{per_s:.1}/s")
    }
}

/// A progress bar on stderr that stays hidden for the first second, and
/// always when stderr is not a terminal (indicatif hides itself then).
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    shown: bool,
}

impl Progress {
    /// A bar counting to `total` (a spinner when `None`).
    pub fn new(total: Option<u64>, what: &str) -> Progress {
        let bar = match total {
            Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::hidden()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden()),
        };
        let style = if total.is_some() {
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})")
        } else {
            ProgressStyle::with_template("{spinner} {msg} {pos} ({per_sec})")
        };
        if let Ok(style) = style {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        Progress {
            bar,
            started: Instant::now(),
            shown: false,
        }
    }

    /// Advances by `n`.
    pub fn inc(&mut self, n: u64) {
        self.bar.inc(n);
        if !self.shown && self.started.elapsed() > Duration::from_secs(1) {
            self.shown = true;
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// Removes the bar.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human_ns(850), "850ns");
        assert_eq!(human_ns(12_345), "12.3µs");
        assert_eq!(human_ns(4_500_000), "4.50ms");
        assert_eq!(human_ns(1_200_000_000), "1.20s");
        assert_eq!(human_ns(123_000_000_000), "2m03s");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(plural(1u64, "time"), "1 time");
        assert_eq!(plural(0u64, "time"), "0 times");
        assert_eq!(plural(2u64, "time"), "2 times");
        let e = shmq::Error::new(
            shmq::Status::Permission,
            "q: open: mode 0666 lets every user write the file (accept it with trust_any_owner)",
        );
        assert_eq!(
            cli_message(&e),
            "PERMISSION: q: open: mode 0666 lets every user write the file (accept it with --trust-any-owner)"
        );
    }
}
