//! The value forms the options take and their parsers: durations such as
//! `250ms`, waits (a duration or `forever`), octal file modes.

use std::time::Duration;

/// A wait: up to a duration, or forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Up to this long (zero = try once).
    For(Duration),
    /// As long as it takes.
    Forever,
}

impl From<Wait> for shmq::Timeout {
    fn from(w: Wait) -> shmq::Timeout {
        match w {
            Wait::For(d) => shmq::Timeout::from(d),
            Wait::Forever => shmq::Timeout::Forever,
        }
    }
}

/// Parses `30s`, `250ms`, `2m`, `1h`, `10us`, `5ns`, `1.5s`; a bare
/// number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 30s, 250ms, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "`{s}`: unknown unit `{other}` (use ns, us, ms, s, m or h)"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=1e10).contains(&secs) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration, or `forever` / `inf` / `-1`.
pub fn parse_timeout(s: &str) -> Result<Wait, String> {
    match s.trim() {
        "forever" | "inf" | "infinite" | "-1" => Ok(Wait::Forever),
        _ => parse_duration(s).map(Wait::For),
    }
}

/// A count that must be at least 1 (`what` names it in the error).
fn positive(s: &str, what: &str) -> Result<u64, String> {
    match count(s, what)? {
        0 => Err(format!("{what} must be a positive number, not 0")),
        n => Ok(n),
    }
}

/// A count that may be 0; a negative or non-numeric one is refused with a
/// plain sentence (clap would advise `-- -5` for a negative number).
fn count(s: &str, what: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("{what} must be a positive number, not {t}"));
    }
    t.parse()
        .map_err(|_| format!("{what} must be a whole number, not `{t}`"))
}

/// `--capacity`: at least one slot.
pub fn parse_capacity(s: &str) -> Result<u64, String> {
    positive(s, "capacity")
}

/// `--max-message-size`: at least one byte, at most `u32::MAX`.
pub fn parse_max_message_size(s: &str) -> Result<u32, String> {
    let n = positive(s, "max message size")?;
    u32::try_from(n).map_err(|_| format!("max message size {n} is larger than {}", u32::MAX))
}

/// `--participants`: at least one entry.
pub fn parse_participants(s: &str) -> Result<u32, String> {
    let n = positive(s, "participants")?;
    u32::try_from(n).map_err(|_| format!("participants {n} is larger than {}", u32::MAX))
}

/// `--keys`: 0 (no keyed messages) or more.
pub fn parse_keys(s: &str) -> Result<u64, String> {
    count(s, "keys")
}

/// `--dead-letters`: 0 (as many as the capacity) or more.
pub fn parse_dead_letters(s: &str) -> Result<u64, String> {
    count(s, "dead letters")
}

/// `recv --count`: 0 (receive nothing) or more.
pub fn parse_recv_count(s: &str) -> Result<u64, String> {
    count(s, "count")
}

/// `--max-deliveries`: 0 (unlimited) or more.
pub fn parse_max_deliveries(s: &str) -> Result<u32, String> {
    let n = count(s, "max deliveries")?;
    u32::try_from(n).map_err(|_| format!("max deliveries {n} is larger than {}", u32::MAX))
}

/// An octal file mode such as `0600` or `640`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let t = s.trim().trim_start_matches("0o");
    let m = u32::from_str_radix(t, 8).map_err(|_| format!("`{s}` is not an octal mode"))?;
    if m > 0o777 {
        return Err(format!(
            "`{s}`: only permission bits (up to 0777) are allowed"
        ));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_timeout("forever"), Ok(Wait::Forever));
        assert_eq!(parse_mode("0640"), Ok(0o640));
        assert!(parse_mode("0999").is_err());
        assert!(parse_mode("04777").is_err());
        assert_eq!(parse_capacity("16"), Ok(16));
        assert_eq!(
            parse_capacity("-5"),
            Err("capacity must be a positive number, not -5".into())
        );
        assert!(parse_capacity("0").is_err());
        assert!(parse_capacity("ten").is_err());
        assert_eq!(parse_keys("0"), Ok(0));
        assert_eq!(
            parse_recv_count("-1"),
            Err("count must be a positive number, not -1".into())
        );
        assert!(parse_max_message_size("4294967296").is_err());
    }
}
