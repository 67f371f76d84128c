//! `bridge out`: claims from the local queue, publishes to JetStream, and
//! acks each message locally only once JetStream acked its publish.
//!
//! Publishes are pipelined: up to a window of messages are claimed and in
//! flight at once, each acked locally as its publish ack comes back. A
//! queue holds one claim per key at a time (per-key exclusivity), so two
//! versions of a key are never in flight together, and the stream stores
//! a key's versions in the order the queue gave them.
//!
//! A publish that fails (refused, timed out, connection lost) stops
//! claiming for a back-off and gives the message back (a nack with that
//! delay); what else is in flight follows the same way. Every publish
//! carries a `Nats-Msg-Id` that is the same however many times the
//! message is claimed again ([`crate::ids`]), so JetStream stores it once.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::publish::PublishAck;
use futures_util::stream::{FuturesUnordered, StreamExt};

use shmq::Queue;

use crate::figures::Figures;
use crate::ids;
use crate::local::{self, Claimed, Claimer, Outcome};
use crate::setup;
use crate::{BridgeError, Shutdown};

/// The options of `bridge out`.
#[derive(Clone, Debug)]
pub struct OutOptions {
    /// The queue file.
    pub path: PathBuf,
    /// The NATS server(s), e.g. `nats://127.0.0.1:4222`.
    pub nats: String,
    /// The stream's name.
    pub stream: String,
    /// The subject prefix: keyed messages go to `SUBJECT.<key>`.
    pub subject: String,
    /// Most messages claimed and unacknowledged at once.
    pub window: usize,
    /// Stop after this long with nothing to publish (None: run until
    /// SIGINT or SIGTERM).
    pub idle_exit: Option<Duration>,
}

type InFlight = Pin<Box<dyn Future<Output = (u64, Result<PublishAck, PublishError>)> + Send>>;

/// The back-off after a failed publish: doubles up to a limit.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Runs `bridge out` until `shutdown` fires or the queue stays idle for
/// `idle_exit`.
/// `figs` is updated as it goes.
pub async fn run(
    opts: &OutOptions,
    shutdown: Shutdown,
    figs: Arc<Figures>,
) -> Result<(), BridgeError> {
    let facts = local::facts(&opts.path)?;
    if facts.file_id == 0 {
        return Err(BridgeError::Refused(format!(
            "{}: the file has no file id (it was made by a version of shmq before file ids existed), so its messages cannot be given stable de-duplication ids; create a new queue file and move the messages to it",
            opts.path.display()
        )));
    }
    let mut shutdown = shutdown;
    let Some(client) = setup::connect(&opts.nats, &mut shutdown).await? else {
        return Ok(());
    };
    let js = async_nats::jetstream::new(client);
    let Some((_stream, conflated)) =
        setup::until_reached("setting up the stream", &mut shutdown, || {
            setup::ensure_stream(&js, &opts.stream, Some(&opts.subject), &facts)
        })
        .await?
    else {
        return Ok(());
    };

    let mut claimer = Claimer::start(opts.path.clone(), opts.window)?;
    // The queue's depth, for the lag.
    let watch = Queue::inspect(&opts.path).map_err(|e| BridgeError::Local(e.to_string()))?;
    let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut backoff = BACKOFF_MIN;
    // No publish before this instant (a back-off after a refusal).
    let mut hold_until = Instant::now();
    let mut last_activity = Instant::now();
    let mut stopping = false;
    // One timer for the idle check (a sleep made anew at every turn of
    // the loop would cost a timer registration per batch).
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

    loop {
        if stopping && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            _ = shutdown.fired(), if !stopping => {
                stopping = true;
                claimer.pause(Duration::from_secs(3600));
            }
            Some((token, r)) = in_flight.next(), if !in_flight.is_empty() => {
                last_activity = Instant::now();
                match r {
                    Ok(ack) => {
                        Figures::add(&figs.published, 1);
                        if ack.duplicate {
                            Figures::add(&figs.deduplicated, 1);
                        }
                        outcomes.push(Outcome::Ack(token));
                        Figures::add(&figs.acked, 1);
                        backoff = BACKOFF_MIN;
                    }
                    Err(e) => {
                        Figures::add(&figs.refused, 1);
                        if Figures::get(&figs.refused).is_power_of_two() {
                            eprintln!("shmq bridge out: publish failed ({e}); backing off {backoff:?}");
                        }
                        outcomes.push(Outcome::Nack(token, backoff));
                        claimer.pause(backoff);
                        hold_until = Instant::now() + backoff;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
                // Everything that is ready, then one message to the queue's thread.
                while let Some(Some((token, r))) = futures_util::FutureExt::now_or_never(in_flight.next()) {
                    match r {
                        Ok(ack) => {
                            Figures::add(&figs.published, 1);
                            if ack.duplicate {
                                Figures::add(&figs.deduplicated, 1);
                            }
                            outcomes.push(Outcome::Ack(token));
                            Figures::add(&figs.acked, 1);
                        }
                        Err(_) => {
                            Figures::add(&figs.refused, 1);
                            outcomes.push(Outcome::Nack(token, backoff));
                        }
                    }
                }
                claimer.settle(std::mem::take(&mut outcomes));
            }
            batch = claimer.rx.recv(), if !stopping => {
                let Some(batch) = batch else {
                    // The queue's thread stopped: its error says why.
                    claimer.finish()?;
                    return Err(BridgeError::Local("the queue's thread stopped".into()));
                };
                last_activity = Instant::now();
                for m in batch {
                    Figures::add(&figs.claimed, 1);
                    if m.deliveries > 1 {
                        Figures::add(&figs.redeliveries, 1);
                    }
                    let token = m.token;
                    // Claimed before a refusal, handed over after it: given
                    // back unpublished until the back-off ends.
                    let now = Instant::now();
                    if now < hold_until {
                        outcomes.push(Outcome::Nack(token, hold_until - now));
                        continue;
                    }
                    match publish(&js, opts, &facts, conflated, m).await {
                        Ok(fut) => in_flight.push(Box::pin(async move { (token, fut.await) })),
                        Err(e) => {
                            Figures::add(&figs.refused, 1);
                            eprintln!("shmq bridge out: publish failed ({e}); backing off {backoff:?}");
                            outcomes.push(Outcome::Nack(token, backoff));
                            claimer.pause(backoff);
                            hold_until = Instant::now() + backoff;
                        }
                    }
                }
                claimer.settle(std::mem::take(&mut outcomes));
            }
            _ = ticker.tick() => {
                let st = watch.stats();
                Figures::set(&figs.lag, st.depth + st.delayed);
                Figures::set(&figs.in_flight, in_flight.len() as u64);
                if let Some(idle) = opts.idle_exit {
                    if in_flight.is_empty() && last_activity.elapsed() >= idle {
                        stopping = true;
                        claimer.pause(Duration::from_secs(3600));
                    }
                }
            }
        }
    }
    claimer.settle(std::mem::take(&mut outcomes));
    let tally = claimer.finish().map_err(BridgeError::Local)?;
    Figures::add(&figs.lease_lost, tally.lease_lost);
    Figures::set(&figs.in_flight, 0);
    Ok(())
}

/// Sends one publish (the ack comes later, through the returned future).
async fn publish(
    js: &async_nats::jetstream::Context,
    opts: &OutOptions,
    facts: &local::QueueFacts,
    conflated: bool,
    m: Claimed,
) -> Result<async_nats::jetstream::context::PublishAckFuture, PublishError> {
    let subject = ids::subject(&opts.subject, facts.file_id, conflated, &m);
    let headers = ids::headers(facts.file_id, &m);
    js.publish_with_headers(subject, headers, m.data).await
}
