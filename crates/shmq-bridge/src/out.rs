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
//! claiming for a back-off and holds the message, its claim kept alive, to
//! publish it again when the back-off ends; what else is in flight follows
//! the same way. An outage of the server is not a failed delivery: the
//! messages wait in the bridge, not in the dead letters. Every publish
//! carries a `Nats-Msg-Id` that is the same however many times the
//! message is claimed again ([`crate::ids`]), so JetStream stores it once.

use std::collections::{HashMap, VecDeque};
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
    let mut flow = Flow {
        in_flight: FuturesUnordered::new(),
        published: HashMap::new(),
        retry: VecDeque::new(),
        outcomes: Vec::new(),
        backoff: BACKOFF_MIN,
        hold_until: Instant::now(),
        stopping: false,
    };
    let mut last_activity = Instant::now();
    let mut shutdown = shutdown;
    // One timer for the idle check and the retries (a sleep made anew at
    // every turn of the loop would cost a timer registration per batch).
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

    loop {
        if flow.stopping && flow.in_flight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            _ = shutdown.fired(), if !flow.stopping => {
                flow.stopping = true;
                claimer.pause(Duration::from_secs(3600));
                flow.give_back_held();
            }
            Some((token, r)) = flow.in_flight.next(), if !flow.in_flight.is_empty() => {
                last_activity = Instant::now();
                flow.answered(token, r, &figs, &claimer);
                // Everything that is ready, then one message to the queue's thread.
                while let Some(Some((token, r))) =
                    futures_util::FutureExt::now_or_never(flow.in_flight.next())
                {
                    flow.answered(token, r, &figs, &claimer);
                }
                claimer.settle(std::mem::take(&mut flow.outcomes));
            }
            batch = claimer.rx.recv(), if !flow.stopping => {
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
                    // Claimed before a refusal, handed over after it: held
                    // (its claim kept alive) until the back-off ends.
                    if Instant::now() < flow.hold_until || !flow.retry.is_empty() {
                        flow.retry.push_back(m);
                        continue;
                    }
                    flow.publish(&js, opts, &facts, conflated, m, &figs, &claimer).await;
                }
                claimer.settle(std::mem::take(&mut flow.outcomes));
            }
            _ = ticker.tick() => {
                let st = watch.stats();
                Figures::set(&figs.lag, st.depth + st.delayed);
                Figures::set(&figs.in_flight, (flow.in_flight.len() + flow.retry.len()) as u64);
                if !flow.stopping && Instant::now() >= flow.hold_until {
                    // Published again in the order they were claimed; a
                    // failure puts the rest back and holds them again.
                    while Instant::now() >= flow.hold_until {
                        let Some(m) = flow.retry.pop_front() else { break };
                        last_activity = Instant::now();
                        flow.publish(&js, opts, &facts, conflated, m, &figs, &claimer).await;
                    }
                    claimer.settle(std::mem::take(&mut flow.outcomes));
                }
                if let Some(idle) = opts.idle_exit {
                    if flow.in_flight.is_empty()
                        && flow.retry.is_empty()
                        && last_activity.elapsed() >= idle
                    {
                        flow.stopping = true;
                        claimer.pause(Duration::from_secs(3600));
                    }
                }
            }
        }
    }
    flow.give_back_held();
    claimer.settle(std::mem::take(&mut flow.outcomes));
    let tally = claimer.finish().map_err(BridgeError::Local)?;
    Figures::add(&figs.lease_lost, tally.lease_lost);
    Figures::set(&figs.in_flight, 0);
    Ok(())
}

/// What `bridge out` holds between the queue and the stream.
struct Flow {
    /// Publishes awaiting their ack.
    in_flight: FuturesUnordered<InFlight>,
    /// The messages of `in_flight`, by claim token: kept to publish again.
    published: HashMap<u64, Claimed>,
    /// Messages whose publish failed (or that came during the back-off),
    /// held with their claims kept alive, to be published again in order.
    /// Holding rather than giving back: an unreachable server is not the
    /// message's fault, and a nack would count a failed delivery (a long
    /// outage would move every message to the dead letters).
    retry: VecDeque<Claimed>,
    /// Outcomes for the queue's thread, sent once per turn.
    outcomes: Vec<Outcome>,
    backoff: Duration,
    /// No publish before this instant (a back-off after a refusal).
    hold_until: Instant,
    stopping: bool,
}

impl Flow {
    /// Starts the publish of `m`; a refusal holds it for a retry.
    #[allow(clippy::too_many_arguments)]
    async fn publish(
        &mut self,
        js: &async_nats::jetstream::Context,
        opts: &OutOptions,
        facts: &local::QueueFacts,
        conflated: bool,
        m: Claimed,
        figs: &Figures,
        claimer: &Claimer,
    ) {
        let token = m.token;
        match publish(js, opts, facts, conflated, m.clone()).await {
            Ok(fut) => {
                self.published.insert(token, m);
                self.in_flight
                    .push(Box::pin(async move { (token, fut.await) }));
            }
            Err(e) => self.failed(m, &e, figs, claimer),
        }
    }

    /// A publish ack (or its failure) came for `token`.
    fn answered(
        &mut self,
        token: u64,
        r: Result<PublishAck, PublishError>,
        figs: &Figures,
        claimer: &Claimer,
    ) {
        let Some(m) = self.published.remove(&token) else {
            return;
        };
        match r {
            Ok(ack) => {
                Figures::add(&figs.published, 1);
                if ack.duplicate {
                    Figures::add(&figs.deduplicated, 1);
                }
                self.outcomes.push(Outcome::Ack(token));
                Figures::add(&figs.acked, 1);
                self.backoff = BACKOFF_MIN;
            }
            Err(e) => self.failed(m, &e, figs, claimer),
        }
    }

    /// A publish of `m` failed: stop claiming for a back-off and hold `m`
    /// for a retry (or give it back when stopping).
    fn failed(&mut self, m: Claimed, e: &PublishError, figs: &Figures, claimer: &Claimer) {
        Figures::add(&figs.refused, 1);
        if self.stopping {
            self.outcomes.push(Outcome::Nack(m.token, Duration::ZERO));
            return;
        }
        let now = Instant::now();
        if now >= self.hold_until {
            // The first failure of a round: back off, doubling.
            if Figures::get(&figs.refused).is_power_of_two() {
                eprintln!(
                    "shmq bridge out: publish failed ({e}); holding {} message(s), trying again in {:?}",
                    self.retry.len() + 1,
                    self.backoff
                );
            }
            self.hold_until = now + self.backoff;
            claimer.pause(self.backoff);
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        }
        self.retry.push_back(m);
    }

    /// Gives back what is held for a retry (stopping: the claims go back
    /// to the queue at once, published again by whoever claims them).
    fn give_back_held(&mut self) {
        for m in self.retry.drain(..) {
            self.outcomes.push(Outcome::Nack(m.token, Duration::ZERO));
        }
    }
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
