//! The adapter between the async bridge and the local queue: one thread
//! owns the [`Queue`] handle (a handle is used by one thread at a time, and
//! its calls block) and talks to the async side over channels.
//!
//! This is the one place that calls the queue: when the engine offers
//! futures (`claim_async`, `send_async`), only this file changes, and the
//! bridge's directions (`out`, `in`) keep their shape: [`Claimer`] hands
//! out claimed messages in batches and takes their outcomes back;
//! [`Sender`] takes batches to send and answers with one [`Sendout`] each.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shmq::{Queue, SendOptions, Status};
use tokio::sync::{mpsc, oneshot};

/// How long the queue's thread blocks in one claim when nothing waits:
/// also the longest an outcome waits before the thread sees it.
const CLAIM_POLL: Duration = Duration::from_millis(2);
/// Most messages claimed in one call.
const CLAIM_BATCH: usize = 256;

/// What describes a queue to the bridge: read once, at the start.
#[derive(Clone, Copy, Debug)]
pub struct QueueFacts {
    /// The file's random id (0 in files made before it existed).
    pub file_id: u64,
    /// The default lease of a claim.
    pub lease: Duration,
    /// Failed deliveries before dead-lettering (0 = unlimited).
    pub max_deliveries: u32,
    /// Whether the queue keeps only the newest message of a key.
    pub latest_only: bool,
    /// The largest payload the queue takes.
    pub max_message_size: usize,
}

fn facts_of(q: &Queue) -> QueueFacts {
    let info = q.info();
    QueueFacts {
        file_id: info.file_id,
        lease: q.lease(),
        max_deliveries: q.max_deliveries(),
        latest_only: q.latest_only(),
        max_message_size: info.layout.params.max_message_size as usize,
    }
}

/// One claimed message, copied out of the queue.
#[derive(Clone, Debug)]
pub struct Claimed {
    /// The claim's fencing token: names it in [`Outcome`]s.
    pub token: u64,
    /// Key (0 = none).
    pub key: u64,
    /// Version.
    pub version: u64,
    /// Ring position: unique for the file's life.
    pub position: u64,
    /// 1 on the first delivery.
    pub deliveries: u32,
    /// The payload.
    pub data: Bytes,
}

/// The outcome of a claim, given back to the queue's thread.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    /// Done: the message is in the stream.
    Ack(u64),
    /// Give it back, claimable again after the delay.
    Nack(u64, Duration),
}

enum ClaimCmd {
    Settle(Vec<Outcome>),
    /// Claim nothing before this instant.
    Pause(Instant),
}

/// What the queue's thread reports besides messages.
#[derive(Debug, Default, Clone, Copy)]
pub struct SettleTally {
    /// Outcomes that found their claim gone (lease ran out: the message
    /// comes again, and the stream drops it as a duplicate).
    pub lease_lost: u64,
}

/// The claiming side of the adapter (`bridge out`).
///
/// A claim is kept alive while it is held: the queue's thread extends the
/// lease of every held claim when a third of it is left, so a publish that
/// waits for its ack, or is held back while the server is unreachable,
/// never loses its claim (nor counts a failed delivery) as long as the
/// bridge lives; a bridge that dies stops extending, and its claims end
/// with it.
pub struct Claimer {
    /// Batches of claimed messages; closed when the thread stops (its
    /// error, if any, comes from [`Claimer::finish`]).
    pub rx: mpsc::Receiver<Vec<Claimed>>,
    cmd: std_mpsc::Sender<ClaimCmd>,
    thread: Option<JoinHandle<Result<SettleTally, String>>>,
    /// The queue's parameters.
    pub facts: QueueFacts,
}

impl Claimer {
    /// Opens the queue at `path` on a thread of its own, which claims while
    /// fewer than `window` claims are held.
    pub fn start(path: PathBuf, window: usize) -> Result<Claimer, String> {
        let (facts_tx, facts_rx) = std_mpsc::channel();
        let (tx, rx) = mpsc::channel(window.max(1));
        let (cmd_tx, cmd_rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("shmq-claim".into())
            .spawn(move || claim_loop(path, window.max(1), tx, cmd_rx, facts_tx))
            .map_err(|e| format!("cannot start the queue's thread: {e}"))?;
        match facts_rx.recv() {
            Ok(facts) => Ok(Claimer {
                rx,
                cmd: cmd_tx,
                thread: Some(thread),
                facts,
            }),
            Err(_) => Err(thread
                .join()
                .map_err(|_| "the queue's thread panicked".to_string())
                .and_then(|r| r.map(|_| ()))
                .err()
                .unwrap_or_else(|| "the queue's thread stopped".into())),
        }
    }

    /// Gives outcomes back.
    pub fn settle(&self, outcomes: Vec<Outcome>) {
        if !outcomes.is_empty() {
            let _ = self.cmd.send(ClaimCmd::Settle(outcomes));
        }
    }

    /// Claims nothing more for `d`.
    pub fn pause(&self, d: Duration) {
        let _ = self.cmd.send(ClaimCmd::Pause(Instant::now() + d));
    }

    /// Stops the thread: what it still holds is given back at once.
    pub fn finish(mut self) -> Result<SettleTally, String> {
        drop(self.cmd);
        self.rx.close();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("the queue's thread panicked".into()),
            None => Ok(SettleTally::default()),
        }
    }
}

fn claim_loop(
    path: PathBuf,
    window: usize,
    tx: mpsc::Sender<Vec<Claimed>>,
    cmd_rx: std_mpsc::Receiver<ClaimCmd>,
    facts_tx: std_mpsc::Sender<QueueFacts>,
) -> Result<SettleTally, String> {
    let q = Queue::open(&path).map_err(|e| e.to_string())?;
    let facts = facts_of(&q);
    let _ = facts_tx.send(facts);
    drop(facts_tx);
    let mut held: HashMap<u64, shmq::Message<'_>> = HashMap::new();
    // Every held claim is extended to a full lease this often: a third of
    // the lease, so that a late turn of the loop still comes in time.
    let renew_every = facts.lease / 3;
    let mut renewed_at = Instant::now();
    let mut tally = SettleTally::default();
    let mut paused_until = Instant::now();
    let mut open = true;
    let settle = |held: &mut HashMap<u64, shmq::Message<'_>>,
                  tally: &mut SettleTally,
                  outcomes: Vec<Outcome>|
     -> Result<(), String> {
        for o in outcomes {
            let (token, r) = match o {
                Outcome::Ack(t) => (t, held.remove(&t).map(|m| m.ack())),
                Outcome::Nack(t, d) => (t, held.remove(&t).map(|m| m.nack(d))),
            };
            match r {
                Some(Ok(())) | None => {}
                Some(Err(e)) if e.status() == Status::LeaseLost => tally.lease_lost += 1,
                Some(Err(e)) => return Err(format!("settling claim {token}: {e}")),
            }
        }
        Ok(())
    };
    let result = loop {
        // Outcomes first: they make room in the window.
        loop {
            match cmd_rx.try_recv() {
                Ok(ClaimCmd::Settle(o)) => settle(&mut held, &mut tally, o)?,
                Ok(ClaimCmd::Pause(until)) => paused_until = until,
                Err(std_mpsc::TryRecvError::Empty) => break,
                Err(std_mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if !open {
            break Ok(tally);
        }
        let now = Instant::now();
        if !held.is_empty() && now.duration_since(renewed_at) >= renew_every {
            for m in held.values() {
                // A claim lost already is answered `LeaseLost` at its
                // outcome, and counted there.
                let _ = m.extend(facts.lease);
            }
            renewed_at = now;
        }
        if held.len() >= window || now < paused_until {
            let wait = if now < paused_until {
                (paused_until - now).min(CLAIM_POLL)
            } else {
                CLAIM_POLL
            };
            match cmd_rx.recv_timeout(wait) {
                Ok(ClaimCmd::Settle(o)) => settle(&mut held, &mut tally, o)?,
                Ok(ClaimCmd::Pause(until)) => paused_until = until,
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break Ok(tally),
            }
            continue;
        }
        let want = (window - held.len()).min(CLAIM_BATCH);
        match q.claim_batch(want, CLAIM_POLL) {
            Ok(msgs) => {
                let mut batch = Vec::with_capacity(msgs.len());
                for m in msgs {
                    let data = match m.data() {
                        Ok(d) => d,
                        // Lost while copying: it comes again.
                        Err(e) if e.status() == Status::LeaseLost => continue,
                        Err(_) => {
                            let _ = m.nack(Duration::ZERO);
                            continue;
                        }
                    };
                    batch.push(Claimed {
                        token: m.token(),
                        key: m.key(),
                        version: m.version(),
                        position: m.position(),
                        deliveries: m.deliveries(),
                        data: Bytes::from(data),
                    });
                    held.insert(m.token(), m);
                }
                if !batch.is_empty() && tx.blocking_send(batch).is_err() {
                    break Ok(tally);
                }
            }
            Err(e) if matches!(e.status(), Status::Empty | Status::Timeout) => {}
            Err(e) => break Err(e.to_string()),
        }
    };
    // What is still held goes back at once (no delivery is lost; the stream
    // drops the copies it already has).
    for (_, m) in held.drain() {
        let _ = m.nack(Duration::ZERO);
    }
    result
}

/// One message to send into the local queue.
#[derive(Clone, Debug)]
pub struct Incoming {
    /// Key (0 = none).
    pub key: u64,
    /// Version (keyed messages: the version it had on the far side).
    pub version: u64,
    /// The payload.
    pub data: Bytes,
}

/// What became of one [`Incoming`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sendout {
    /// Committed to the local queue.
    Sent,
    /// Not newer than the key's last acked version: dropped.
    Stale,
    /// No room (or no free key entry): not sent, try again later.
    Full,
    /// Can never be sent (too large, a bad argument): the reason.
    Refused(String),
}

type SendJob = (Vec<Incoming>, oneshot::Sender<Vec<Sendout>>);

/// The sending side of the adapter (`bridge in`).
pub struct Sender {
    tx: Option<std_mpsc::Sender<SendJob>>,
    thread: Option<JoinHandle<Result<(), String>>>,
    /// The queue's parameters.
    pub facts: QueueFacts,
}

impl Sender {
    /// Opens the queue at `path` on a thread of its own.
    pub fn start(path: PathBuf) -> Result<Sender, String> {
        let (facts_tx, facts_rx) = std_mpsc::channel();
        let (tx, rx) = std_mpsc::channel::<SendJob>();
        let thread = std::thread::Builder::new()
            .name("shmq-send".into())
            .spawn(move || {
                let q = Queue::open(&path).map_err(|e| e.to_string())?;
                let _ = facts_tx.send(facts_of(&q));
                drop(facts_tx);
                while let Ok((batch, reply)) = rx.recv() {
                    let mut out = Vec::with_capacity(batch.len());
                    for m in &batch {
                        let opts = SendOptions::new().key(m.key).version(m.version);
                        let r = match q.send_with(&m.data, &opts) {
                            Ok(_) => Sendout::Sent,
                            Err(e) => match e.status() {
                                Status::Stale => Sendout::Stale,
                                Status::Full | Status::KeysFull | Status::Abandoned => {
                                    Sendout::Full
                                }
                                Status::TooLarge | Status::InvalidArgument => {
                                    Sendout::Refused(e.to_string())
                                }
                                _ => return Err(e.to_string()),
                            },
                        };
                        let full = r == Sendout::Full;
                        out.push(r);
                        // Order per key: nothing after a message that waits.
                        if full {
                            break;
                        }
                    }
                    let _ = reply.send(out);
                }
                Ok(())
            })
            .map_err(|e| format!("cannot start the queue's thread: {e}"))?;
        match facts_rx.recv() {
            Ok(facts) => Ok(Sender {
                tx: Some(tx),
                thread: Some(thread),
                facts,
            }),
            Err(_) => Err(thread
                .join()
                .map_err(|_| "the queue's thread panicked".to_string())
                .and_then(|r| r.map(|_| ()))
                .err()
                .unwrap_or_else(|| "the queue's thread stopped".into())),
        }
    }

    /// Sends a batch in order; the answer has one entry per message up to
    /// and including the first `Full` (the rest were not tried).
    pub async fn send(&mut self, batch: Vec<Incoming>) -> Result<Vec<Sendout>, String> {
        let (reply, answer) = oneshot::channel();
        let sent = self.tx.as_ref().map(|tx| tx.send((batch, reply)).is_ok());
        if sent == Some(true) {
            if let Ok(out) = answer.await {
                return Ok(out);
            }
        }
        // The thread stopped: its error says why.
        self.tx = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err("the queue's thread panicked".into()),
            _ => Err("the queue's thread stopped".into()),
        }
    }
}

/// Reads the queue's parameters through an inspection handle (no
/// participant is attached, nothing is claimed).
pub fn facts(path: &std::path::Path) -> Result<QueueFacts, crate::BridgeError> {
    let q = Queue::inspect(path).map_err(|e| crate::BridgeError::Local(e.to_string()))?;
    Ok(facts_of(&q))
}
