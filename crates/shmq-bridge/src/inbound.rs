//! `bridge in`: pulls batches from a durable pull consumer, sends each
//! message into the local queue with its key and version, and acks it
//! upstream only once the local send committed.
//!
//! - A local `Stale` (a version not newer than the key's last acked one,
//!   e.g. an older version delivered late by a competing puller or after a
//!   redelivery) is acked upstream and counted: versions stay monotonic.
//! - A local `Full` stops pulling: the message and those after it in the
//!   batch are retried in order until there is room, and JetStream is told
//!   the work is in progress so that their AckWait does not run out.
//! - A message the queue can never take (larger than its largest message,
//!   headers that do not parse) is terminated upstream (`TERM`) and counted.
//!
//! Several `bridge in` processes may pull from one durable consumer: they
//! compete for its messages.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;

use crate::figures::Figures;
use crate::ids;
use crate::local::{self, Incoming, Sender, Sendout};
use crate::setup;
use crate::{BridgeError, Shutdown};

/// The options of `bridge in`.
#[derive(Clone, Debug)]
pub struct InOptions {
    /// The queue file.
    pub path: PathBuf,
    /// The NATS server(s).
    pub nats: String,
    /// The stream's name.
    pub stream: String,
    /// The subject prefix the stream is created with when absent (and is
    /// checked to take, when given).
    pub subject: Option<String>,
    /// The durable consumer's name.
    pub consumer: String,
    /// Most messages pulled at once.
    pub batch: usize,
    /// Stop after this long with nothing pulled (None: run until SIGINT or
    /// SIGTERM).
    pub idle_exit: Option<Duration>,
}

/// How long one pull waits for messages.
const PULL_EXPIRES: Duration = Duration::from_millis(500);
/// How long the loop sleeps between tries while the local queue is full.
const FULL_RETRY: Duration = Duration::from_millis(5);
/// How often the consumer's pending count is asked for (the lag).
const LAG_EVERY: Duration = Duration::from_secs(1);

/// Runs `bridge in` until `shutdown` fires or nothing comes for `idle_exit`.
/// `figs` is updated as it goes.
pub async fn run(
    opts: &InOptions,
    shutdown: Shutdown,
    figs: Arc<Figures>,
) -> Result<(), BridgeError> {
    let mut shutdown = shutdown;
    let facts = local::facts(&opts.path)?;
    let Some(client) = setup::connect(&opts.nats, &mut shutdown).await? else {
        return Ok(());
    };
    let js = jetstream::new(client);
    let Some(mut consumer) = setup::until_reached(
        "setting up the stream and its consumer",
        &mut shutdown,
        || async {
            let (stream, _) =
                setup::ensure_stream(&js, &opts.stream, opts.subject.as_deref(), &facts).await?;
            setup::ensure_consumer(&stream, &opts.consumer, &facts).await
        },
    )
    .await?
    else {
        return Ok(());
    };
    let ack_wait = consumer.cached_info().config.ack_wait;
    let mut sender = Sender::start(opts.path.clone())?;
    let mut lag_at = Instant::now();
    let mut last_activity = Instant::now();

    'pull: loop {
        if shutdown.is_fired() {
            break;
        }
        if let Some(idle) = opts.idle_exit {
            if last_activity.elapsed() >= idle {
                break;
            }
        }
        if lag_at.elapsed() >= LAG_EVERY {
            if let Ok(info) = consumer.info().await {
                Figures::set(&figs.lag, info.num_pending);
            }
            lag_at = Instant::now();
        }
        let batch = tokio::select! {
            _ = shutdown.fired() => break,
            b = consumer
                .batch()
                .max_messages(opts.batch.max(1))
                .expires(PULL_EXPIRES)
                .messages() => b,
        };
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                eprintln!("shmq bridge in: pull failed ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut msgs = Vec::with_capacity(opts.batch);
        while let Some(m) = batch.next().await {
            match m {
                Ok(m) => msgs.push(m),
                Err(e) => {
                    eprintln!("shmq bridge in: pull failed ({e})");
                    break;
                }
            }
        }
        if msgs.is_empty() {
            continue;
        }
        last_activity = Instant::now();
        Figures::add(&figs.pulled, msgs.len() as u64);
        Figures::set(&figs.in_flight, msgs.len() as u64);
        // Parse; what cannot be parsed is terminated at once.
        let mut work: Vec<(jetstream::Message, Incoming)> = Vec::with_capacity(msgs.len());
        for m in msgs {
            if m.info().map(|i| i.delivered > 1).unwrap_or(false) {
                Figures::add(&figs.redeliveries, 1);
            }
            match ids::parse(m.headers.as_ref()) {
                Ok((key, version)) => {
                    let data = m.payload.clone();
                    work.push((m, Incoming { key, version, data }));
                }
                Err(why) => {
                    eprintln!(
                        "shmq bridge in: terminating a message on {}: {why}",
                        m.subject
                    );
                    let _ = m.ack_with(AckKind::Term).await;
                    Figures::add(&figs.terminated, 1);
                }
            }
        }
        let mut start = 0;
        let mut progress_at = Instant::now();
        let mut waited = false;
        while start < work.len() {
            let jobs: Vec<Incoming> = work[start..].iter().map(|(_, i)| i.clone()).collect();
            let results = sender.send(jobs).await.map_err(BridgeError::Local)?;
            for r in results {
                let (m, _) = &work[start];
                match r {
                    Sendout::Sent => {
                        Figures::add(&figs.sent, 1);
                        ack(m, AckKind::Ack).await;
                    }
                    Sendout::Stale => {
                        Figures::add(&figs.stale, 1);
                        ack(m, AckKind::Ack).await;
                    }
                    Sendout::Refused(why) => {
                        eprintln!(
                            "shmq bridge in: terminating a message on {}: {why}",
                            m.subject
                        );
                        Figures::add(&figs.terminated, 1);
                        ack(m, AckKind::Term).await;
                    }
                    Sendout::Full => break,
                }
                start += 1;
            }
            if start < work.len() {
                // Full: no more pulls until it takes this one.
                if !waited {
                    Figures::add(&figs.full_waits, 1);
                    waited = true;
                }
                if progress_at.elapsed() >= ack_wait / 3 {
                    for (m, _) in &work[start..] {
                        ack(m, AckKind::Progress).await;
                    }
                    progress_at = Instant::now();
                }
                tokio::select! {
                    // Unsent messages stay unacked: JetStream redelivers them.
                    _ = shutdown.fired() => break 'pull,
                    _ = tokio::time::sleep(FULL_RETRY) => {}
                }
                last_activity = Instant::now();
            }
        }
        Figures::set(&figs.in_flight, 0);
    }
    Figures::set(&figs.in_flight, 0);
    Ok(())
}

/// Acks upstream; a failure is reported, not fatal (the message comes
/// again and the local queue drops it as stale when it is keyed).
async fn ack(m: &jetstream::Message, kind: AckKind) {
    if let Err(e) = m.ack_with(kind).await {
        eprintln!("shmq bridge in: ack failed ({e})");
    }
}
