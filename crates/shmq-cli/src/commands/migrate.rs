//! `shmq migrate OLD NEW`: moves the messages of a queue file of an
//! earlier (or the current) format version into a new file of the current
//! one.
//!
//! OLD is read as bytes by the engine's frozen readers
//! (`shmq::internals::format::legacy`), never mapped or written, and only
//! while nobody has it open (no participant's lock byte is held, before
//! and after the copy, and its bytes did not change in between). NEW is
//! created under a temporary name in its directory, filled, synced, and
//! then linked under its name, which fails if the name was taken
//! meanwhile: an interrupted migration leaves no half queue under NEW.
//!
//! What is carried over: the messages waiting or in flight in ring order
//! (ready, pending, delayed with the rest of their delay, and claimed: a
//! claim of a dead consumer is waiting again), their keys and versions,
//! each key's versions (its last acked version, so a stale version stays
//! stale), each message's delivery count (the public API cannot set it:
//! `shmq::internals::queue::migrate` does, on the new file nobody else
//! has open), the dead letters with their reasons and attempts, and OLD's
//! options unless overridden (its default time to live and what becomes of
//! an expired message too, from format 3).
//!
//! A message's deadline (format 3) is a monotonic time, valid in the boot
//! that wrote it, and is carried as the rest of its time to live, the
//! send's own `SendOptions::ttl` in NEW: its deadline less now when OLD was
//! last used in this boot; else (a reboot since) its whole time to live,
//! its deadline less its commit time, as a delay is treated; else (its
//! commit time is a TSC reading) none of its own, so NEW's default applies.
//! A message already past its deadline is disposed of as OLD says:
//! dead-lettered with the reason "expired", or dropped; counted either
//! way. A message without a deadline gets NEW's default time to live, if
//! any, from the migration on.
//!
//! Not carried over: dead-letter ids (numbered again from 1), enqueue
//! times (a message's age restarts), metrics, and reservations never
//! committed (their producers died before the commit: not messages). A
//! message that was both in a dead-letter record and on its way there in
//! a slot (a mover stopped between the two) is moved twice: at least once,
//! never lost.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use shmq::internals::format::legacy::{self, OldMessage, OldState, Snapshot};
use shmq::internals::queue::migrate::{seed_deliveries, seed_key_versions};
use shmq::internals::sys;
use shmq::{Options, Queue, SendOptions, WaitStrategy};

use crate::cli::MigrateArgs;
use crate::util::{plural, CliError, CmdResult};

use super::print_json;

/// `shmq migrate`.
pub fn migrate(a: &MigrateArgs) -> CmdResult {
    let old_name = a.old.display().to_string();
    let err = |what: String| CliError::new(format!("{old_name}: migrate: {what}"));
    if std::fs::symlink_metadata(&a.new).is_ok() {
        return Err(err(format!(
            "{} exists: migrate writes a new file and never overwrites one",
            a.new.display()
        )));
    }
    let file = open_old(a).map_err(&err)?;
    let bytes = read_all(&file).map_err(|e| err(format!("reading it: {e}")))?;
    let snap = legacy::read(&bytes).map_err(|e| err(crate::util::cli_message(&e)))?;
    refuse_if_open(&file, &snap).map_err(&err)?;
    let opts = new_options(a, &file, &snap).map_err(&err)?;
    let clock = Clock {
        now: sys::monotonic_ns(),
        same_boot: snap.params.boot_id == sys::boot_id(),
    };
    check_room(&snap, &opts, &clock).map_err(&err)?;

    let tmp = temporary_name(&a.new).map_err(&err)?;
    let filled = fill(&tmp, &opts, &snap, &clock).and_then(|moved| {
        // OLD must not have changed while it was copied.
        let same = unchanged(&file, &bytes).map_err(|e| format!("reading it again: {e}"))?;
        if !same {
            return Err(
                "it changed while it was being copied (someone has it open): \
                        nothing was written under the new name"
                    .to_string(),
            );
        }
        refuse_if_open(&file, &snap)?;
        publish(&tmp, &a.new)?;
        Ok(moved)
    });
    let moved = match filled {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(e));
        }
    };
    report(a, &snap, &moved);
    Ok(0)
}

/// Opens OLD for reading: a regular file (not followed through a symbolic
/// link), owned and writable as `shmq`'s other commands accept.
fn open_old(a: &MigrateArgs) -> Result<File, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&a.old)
        .map_err(|e| format!("IO: {e}"))?;
    let m = file.metadata().map_err(|e| format!("IO: {e}"))?;
    if !m.is_file() {
        return Err("not a regular file".into());
    }
    if !a.trust.trust_any_owner {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if m.uid() != me && !a.trust.group_shared {
            return Err(format!(
                "PERMISSION: owned by uid {}, not by this user (accept it with --trust-any-owner)",
                m.uid()
            ));
        }
        if m.mode() & 0o002 != 0 {
            return Err("PERMISSION: writable by others (accept it with --trust-any-owner)".into());
        }
        if m.mode() & 0o020 != 0 && !a.trust.group_shared {
            return Err("PERMISSION: writable by its group (accept it with --group-shared)".into());
        }
    }
    Ok(file)
}

/// The whole file from its start.
fn read_all(file: &File) -> std::io::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Whether the file still holds `bytes` (read again a block at a time).
fn unchanged(file: &File, bytes: &[u8]) -> std::io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::Start(0))?;
    let mut block = vec![0u8; 1 << 20];
    let mut at = 0;
    loop {
        let n = f.read(&mut block)?;
        if n == 0 {
            return Ok(at == bytes.len());
        }
        if bytes.get(at..at + n) != Some(&block[..n]) {
            return Ok(false);
        }
        at += n;
    }
}

/// Refuses while any participant of OLD is alive: one whose lock byte
/// another open file description holds (the lock is the liveness the
/// engine itself uses; the kernel drops it when the process dies). Every
/// entry's byte is probed, free or not, so a participant caught attaching
/// counts too.
fn refuse_if_open(file: &File, snap: &Snapshot) -> Result<(), String> {
    let mut live = Vec::new();
    for i in 0..snap.params.participant_capacity {
        match sys::ofd_locked_by_other(file.as_fd(), snap.lock_base + i) {
            Ok(false) => {}
            Ok(true) => live.push(i),
            Err(e) => return Err(format!("cannot tell who has it open: {e}")),
        }
    }
    if live.is_empty() {
        return Ok(());
    }
    let who: Vec<String> = live
        .iter()
        .map(|i| match snap.participants.iter().find(|p| p.index == *i) {
            Some(p) => format!("pid {}", p.pid),
            None => format!("entry {i}"),
        })
        .collect();
    let (n, verb, them) = match live.len() {
        1 => ("1 participant".to_string(), "is", "it"),
        n => (format!("{n} participants"), "are", "them"),
    };
    Err(format!(
        "BUSY: {n} {verb} attached ({}): stop {them} first; migrate reads only a quiet file",
        who.join(", "),
    ))
}

/// The new file's options: OLD's, with the command line's overrides.
fn new_options(a: &MigrateArgs, file: &File, s: &Snapshot) -> Result<Options, String> {
    let p = &s.params;
    let mode = match a.mode {
        Some(m) => m,
        None => file.metadata().map_err(|e| format!("IO: {e}"))?.mode() & 0o777,
    };
    let group = a
        .group
        .as_deref()
        .map(shmq::internals::permissions::group_id)
        .transpose()
        .map_err(|e| e.to_string())?;
    let latest_only = a.latest_only || p.flags & 1 != 0;
    let keys = a.keys.unwrap_or(p.key_capacity);
    if latest_only && keys == 0 {
        return Err("a latest-only queue needs a key table (--keys N)".into());
    }
    Ok(Options {
        capacity: a.capacity.unwrap_or(p.capacity),
        max_message_size: a
            .max_message_size
            .unwrap_or(p.max_message_size.min(u32::MAX as u64) as u32),
        key_capacity: keys,
        dlq_capacity: a.dead_letters.unwrap_or(p.dlq_capacity),
        participant_capacity: a
            .participants
            .unwrap_or(p.participant_capacity.min(u32::MAX as u64) as u32),
        lease: a.lease.unwrap_or(Duration::from_nanos(p.lease_ns.max(1))),
        max_deliveries: a
            .max_deliveries
            .unwrap_or(p.max_deliveries.min(u32::MAX as u64) as u32),
        reservation_timeout: Duration::from_nanos(p.reservation_timeout_ns.max(1)),
        latest_only,
        mode,
        group,
        wait_strategy: WaitStrategy::from_u64(p.wait_strategy),
        sparse: a.sparse,
        // Versions 1 and 2 had no time to live: 0 and dead letters.
        message_ttl: a
            .message_ttl
            .unwrap_or(Duration::from_nanos(p.message_ttl_ns)),
        on_expiry: match a.on_expiry {
            Some(e) => e.into(),
            None if p.expiry_drop => shmq::Expiry::Drop,
            None => shmq::Expiry::DeadLetter,
        },
    })
}

/// The time a migration reads deadlines and delays at.
struct Clock {
    /// The monotonic clock, once for the whole migration.
    now: u64,
    /// Whether OLD was last used in this boot (its monotonic times are
    /// this clock's).
    same_boot: bool,
}

/// What becomes of one of OLD's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Sent to NEW, with the rest of its time to live when it has one
    /// (else NEW's default applies).
    Waiting(Option<Duration>),
    /// Written to NEW's dead letters with `reason`.
    DeadLetter(&'static str),
    /// Past its deadline, and OLD drops expired messages: not moved.
    Dropped,
}

/// The reason of an expired message's dead letter (as the engine's).
const EXPIRED: &str = "expired";

/// What becomes of message `m` of `s`, read at `c`.
fn fate(s: &Snapshot, m: &OldMessage, c: &Clock) -> Fate {
    if m.state == OldState::DeadLettering {
        return Fate::DeadLetter("on its way to the dead letters when migrated");
    }
    match time_to_live_left(m, c) {
        Some(0) if s.params.expiry_drop => Fate::Dropped,
        Some(0) => Fate::DeadLetter(EXPIRED),
        left => Fate::Waiting(left.map(Duration::from_nanos)),
    }
}

/// How much of message `m`'s time to live is left (`Some(0)`: it expired),
/// `None` when it has no deadline or its time to live cannot be told: its
/// deadline less now when the file was last used in this boot (the
/// monotonic clock is the same); else (a reboot since) its whole time to
/// live, when its enqueue time is the commit's monotonic time it was
/// computed from; else none.
fn time_to_live_left(m: &OldMessage, c: &Clock) -> Option<u64> {
    let deadline = m.expires_ns?;
    if c.same_boot {
        Some(deadline.saturating_sub(c.now))
    } else if !m.sampled {
        Some(deadline.saturating_sub(m.enqueued_ns))
    } else {
        None
    }
}

/// Refuses options too small for what OLD holds, before anything is made.
fn check_room(s: &Snapshot, o: &Options, c: &Clock) -> Result<(), String> {
    let fates: Vec<Fate> = s.messages.iter().map(|m| fate(s, m, c)).collect();
    let waiting = fates
        .iter()
        .filter(|f| matches!(f, Fate::Waiting(_)))
        .count() as u64;
    let dead = s.dead_letters.len() as u64
        + fates
            .iter()
            .filter(|f| matches!(f, Fate::DeadLetter(_)))
            .count() as u64;
    let largest = s
        .messages
        .iter()
        .map(|m| m.payload.len())
        .chain(s.dead_letters.iter().map(|d| d.payload.len()))
        .max()
        .unwrap_or(0);
    let mut keys: Vec<u64> = s.keys.iter().map(|k| k.key).collect();
    keys.extend(s.messages.iter().map(|m| m.key));
    keys.extend(s.dead_letters.iter().map(|d| d.key));
    keys.retain(|k| *k != 0);
    keys.sort_unstable();
    keys.dedup();
    let dlq = if o.dlq_capacity == 0 {
        o.capacity
    } else {
        o.dlq_capacity
    };
    let mut short = Vec::new();
    if waiting > o.capacity {
        short.push(format!(
            "{waiting} messages wait, --capacity is {}",
            o.capacity
        ));
    }
    if dead > dlq {
        short.push(format!("{dead} dead letters, --dead-letters is {dlq}"));
    }
    if largest as u64 > o.max_message_size as u64 {
        short.push(format!(
            "the largest message is {largest} bytes, --max-message-size is {}",
            o.max_message_size
        ));
    }
    if keys.len() as u64 > o.key_capacity {
        short.push(format!(
            "{} keys are in use, --keys is {}",
            keys.len(),
            o.key_capacity
        ));
    }
    if short.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "INVALID_ARGUMENT: the new file would be too small: {}",
            short.join("; ")
        ))
    }
}

/// `.NAME.migrating-PID` beside NEW.
fn temporary_name(new: &Path) -> Result<PathBuf, String> {
    let name = new
        .file_name()
        .ok_or_else(|| format!("{} names no file", new.display()))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".migrating-{}", std::process::id()));
    Ok(new.with_file_name(tmp))
}

/// What was moved into the new file.
#[derive(Default)]
struct Moved {
    messages: u64,
    dead_letters: u64,
    keys: u64,
    delayed: u64,
    reclaimed: u64,
    /// Messages sent with the rest of their own time to live.
    deadlines: u64,
    /// Messages past their deadline (dead-lettered or dropped).
    expired: u64,
    /// Of those, dropped.
    expired_dropped: u64,
}

/// Creates the new file at `tmp` and writes everything of `s` into it,
/// then syncs it to its file system.
fn fill(tmp: &Path, opts: &Options, s: &Snapshot, c: &Clock) -> Result<Moved, String> {
    let e = |what: &str, x: shmq::Error| format!("{what}: {}", crate::util::cli_message(&x));
    let q = Queue::create(tmp, opts).map_err(|x| e("creating the new file", x))?;
    let no_wait = Duration::ZERO;
    let mut moved = Moved::default();
    let fates: Vec<(&OldMessage, Fate)> = s.messages.iter().map(|m| (m, fate(s, m, c))).collect();
    for (_, f) in &fates {
        match f {
            Fate::DeadLetter(EXPIRED) => moved.expired += 1,
            Fate::Dropped => {
                moved.expired += 1;
                moved.expired_dropped += 1;
            }
            _ => {}
        }
    }
    // Dead letters first, while the ring is empty: each is sent, claimed
    // (it is the only message) and rejected with its reason. A message
    // that was on its way to the dead letters goes there too, and one
    // past its deadline when OLD dead-letters expired messages.
    let on_the_way = fates.iter().filter_map(|(m, f)| match f {
        Fate::DeadLetter(reason) => Some((
            m.key,
            m.version,
            m.deliveries,
            m.payload.as_slice(),
            *reason,
        )),
        _ => None,
    });
    let dead = s
        .dead_letters
        .iter()
        .map(|d| {
            (
                d.key,
                d.version,
                d.attempts,
                d.payload.as_slice(),
                d.reason.as_str(),
            )
        })
        .chain(on_the_way);
    for (key, version, attempts, payload, reason) in dead {
        // A time to live of its own that never ends: NEW's default (however
        // short) must not expire it before it is claimed here.
        let so = SendOptions::new()
            .key(key)
            .version(version)
            .ttl(Duration::from_nanos(u64::MAX))
            .timeout(no_wait);
        let sent = q
            .send_with(payload, &so)
            .map_err(|x| e("a dead letter", x))?;
        // Its claim here counts one more: the record keeps its attempts.
        seed_deliveries(&q, sent.position, attempts.saturating_sub(1))
            .map_err(|x| e("a dead letter", x))?;
        let m = q.claim(no_wait).map_err(|x| e("a dead letter", x))?;
        m.reject(reason).map_err(|x| e("a dead letter", x))?;
        moved.dead_letters += 1;
    }
    // The waiting messages, in ring order.
    for (m, f) in &fates {
        let Fate::Waiting(ttl) = f else { continue };
        let mut so = SendOptions::new()
            .key(m.key)
            .version(m.version)
            .timeout(no_wait);
        if m.state == OldState::Delayed {
            so = so.delay(Duration::from_nanos(remaining_delay(m, c)));
            moved.delayed += 1;
        }
        if let Some(ttl) = ttl {
            so = so.ttl(*ttl);
            moved.deadlines += 1;
        }
        if m.state == OldState::Claimed {
            moved.reclaimed += 1;
        }
        let at = || format!("the message at position {}", m.position);
        let sent = q.send_with(&m.payload, &so).map_err(|x| e(&at(), x))?;
        if m.deliveries > 0 {
            seed_deliveries(&q, sent.position, m.deliveries).map_err(|x| e(&at(), x))?;
        }
        moved.messages += 1;
    }
    // Each key's versions, after its messages (a message's own version is
    // newer than its key's last acked one, else it was stale already).
    if opts.key_capacity > 0 {
        for k in &s.keys {
            seed_key_versions(&q, k.key, k.last_acked, k.last_committed, k.next_version)
                .map_err(|x| e(&format!("key {}", k.key), x))?;
            moved.keys += 1;
        }
    }
    q.flush().map_err(|x| e("flushing the new file", x))?;
    q.close().map_err(|x| e("closing the new file", x))?;
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|x| format!("syncing the new file: IO: {x}"))?;
    Ok(moved)
}

/// How much of a delayed message's delay is left: its not-before time less
/// now, when the file was last used in this boot (the monotonic clock is
/// the same); else (a reboot since) the whole delay it was sent with, when
/// its enqueue time says it; else none.
fn remaining_delay(m: &OldMessage, c: &Clock) -> u64 {
    match m.not_before_ns {
        Some(nb) if c.same_boot => nb.saturating_sub(c.now),
        Some(nb) if !m.sampled => nb.saturating_sub(m.enqueued_ns),
        _ => 0,
    }
}

/// Links the filled temporary file under NEW (refused if NEW exists by
/// now: a link never replaces), removes the temporary name, and syncs the
/// directory so the new name survives a crash.
fn publish(tmp: &Path, new: &Path) -> Result<(), String> {
    std::fs::hard_link(tmp, new).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!(
                "{} was created meanwhile: migrate never overwrites a file",
                new.display()
            )
        } else {
            format!("naming the new file {}: IO: {e}", new.display())
        }
    })?;
    let _ = std::fs::remove_file(tmp);
    let dir = match new.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Ok(d) = File::open(&dir) {
        // A directory that cannot be synced (some file systems) still has
        // the name; the file itself was synced.
        let _ = d.sync_all();
    }
    Ok(())
}

fn report(a: &MigrateArgs, s: &Snapshot, m: &Moved) {
    if a.json {
        print_json(&json!({
            "old": a.old.display().to_string(),
            "new": a.new.display().to_string(),
            "old_format_version": s.params.version,
            "messages": m.messages,
            "delayed": m.delayed,
            "reclaimed": m.reclaimed,
            "dead_letters": m.dead_letters,
            "keys": m.keys,
            "deadlines": m.deadlines,
            "expired": m.expired,
            "expired_dropped": m.expired_dropped,
            "uncommitted_dropped": s.uncommitted.len(),
            "damaged": s.damaged,
        }));
        return;
    }
    println!(
        "migrated {} (format version {}) to {}: {}{}, {}, {}",
        a.old.display(),
        s.params.version,
        a.new.display(),
        plural(m.messages, "message"),
        if m.delayed + m.reclaimed > 0 {
            format!(
                " ({} delayed, {} claimed by a dead consumer, waiting again)",
                m.delayed, m.reclaimed
            )
        } else {
            String::new()
        },
        plural(m.dead_letters, "dead letter"),
        plural(m.keys, "key"),
    );
    if m.expired > 0 {
        let what = if m.expired_dropped > 0 {
            "dropped, as the old queue says"
        } else {
            "dead-lettered with the reason \"expired\""
        };
        println!(
            "{} past {} deadline: {what}",
            plural(m.expired, "message"),
            if m.expired == 1 { "its" } else { "their" },
        );
    }
    if !s.uncommitted.is_empty() {
        eprintln!(
            "note: {} never committed (their producers stopped before the commit) not moved",
            plural(s.uncommitted.len() as u64, "reservation")
        );
    }
    for d in &s.damaged {
        eprintln!("warning: skipped, damaged: {d}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmq::internals::format::legacy::OldParams;

    fn message(
        state: OldState,
        enqueued_ns: u64,
        sampled: bool,
        expires: Option<u64>,
    ) -> OldMessage {
        OldMessage {
            slot: 0,
            position: 0,
            state,
            key: 0,
            version: 0,
            enqueued_ns,
            sampled,
            not_before_ns: None,
            deliveries: 0,
            expires_ns: expires,
            payload: Vec::new(),
        }
    }

    fn snapshot(expiry_drop: bool) -> Snapshot {
        Snapshot {
            params: OldParams {
                version: 3,
                capacity: 4,
                max_message_size: 8,
                key_capacity: 0,
                dlq_capacity: 1,
                participant_capacity: 1,
                lease_ns: 1,
                max_deliveries: 0,
                flags: 0,
                message_ttl_ns: 0,
                expiry_drop,
                wait_strategy: 1,
                reservation_timeout_ns: 1,
                created_unix_ns: 0,
                boot_id: [0, 0],
            },
            messages: Vec::new(),
            keys: Vec::new(),
            dead_letters: Vec::new(),
            participants: Vec::new(),
            lock_base: 0,
            uncommitted: Vec::new(),
            damaged: Vec::new(),
        }
    }

    #[test]
    fn the_rest_of_a_time_to_live_in_this_boot_and_the_whole_after_a_reboot() {
        let here = Clock {
            now: 1_000,
            same_boot: true,
        };
        let rebooted = Clock {
            now: 5,
            same_boot: false,
        };
        let m = message(OldState::Ready, 400, false, Some(1_500));
        assert_eq!(time_to_live_left(&m, &here), Some(500));
        // Another boot's clock: the whole time to live, from the commit.
        assert_eq!(time_to_live_left(&m, &rebooted), Some(1_100));
        // A TSC enqueue time says nothing of it: none of its own.
        let tsc = message(OldState::Ready, 400, true, Some(1_500));
        assert_eq!(time_to_live_left(&tsc, &rebooted), None);
        assert_eq!(time_to_live_left(&tsc, &here), Some(500));
        // No deadline; one past (or a damaged one before its commit).
        assert_eq!(
            time_to_live_left(&message(OldState::Ready, 0, false, None), &here),
            None
        );
        let past = message(OldState::Claimed, 400, false, Some(1_000));
        assert_eq!(time_to_live_left(&past, &here), Some(0));
        let before = message(OldState::Ready, 400, false, Some(300));
        assert_eq!(time_to_live_left(&before, &rebooted), Some(0));
    }

    #[test]
    fn an_expired_message_goes_as_the_old_queue_says() {
        let c = Clock {
            now: 1_000,
            same_boot: true,
        };
        let past = message(OldState::Delayed, 0, false, Some(10));
        assert_eq!(fate(&snapshot(false), &past, &c), Fate::DeadLetter(EXPIRED));
        assert_eq!(fate(&snapshot(true), &past, &c), Fate::Dropped);
        let live = message(OldState::Ready, 0, false, Some(1_010));
        assert_eq!(
            fate(&snapshot(true), &live, &c),
            Fate::Waiting(Some(Duration::from_nanos(10)))
        );
        // On its way to the dead letters: there whatever its deadline.
        let moving = message(OldState::DeadLettering, 0, false, Some(10));
        assert!(matches!(fate(&snapshot(true), &moving, &c), Fate::DeadLetter(r) if r != EXPIRED));
    }
}
