//! The stream and the durable consumer: created to match the queue when
//! absent, checked when present, refused with the reason when an existing
//! one would break what a message means (drop messages nobody acked, keep
//! fewer versions of a key than the queue does, leave publishes unacked).

use std::time::Duration;

use async_nats::jetstream::consumer::{self, pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::Context;

use crate::local::QueueFacts;
use crate::{BridgeError, Shutdown};

/// The shortest de-duplication window a created stream gets.
const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The stream's configuration for a queue: work-queue retention (a message
/// leaves the stream when a consumer acks it), no limit that discards
/// messages, the subjects `SUBJ` and `SUBJ.>`, one message per subject
/// when the queue is latest-only (a key is a subject), and a
/// de-duplication window that outlasts a lease several times over (a
/// message published before a crash comes again after its claim ends).
pub fn stream_config(name: &str, subject: &str, facts: &QueueFacts) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: vec![subject.to_string(), format!("{subject}.>")],
        retention: RetentionPolicy::WorkQueue,
        discard: DiscardPolicy::Old,
        max_messages_per_subject: if facts.latest_only { 1 } else { -1 },
        max_messages: -1,
        max_bytes: -1,
        duplicate_window: duplicate_window(facts.lease),
        storage: StorageType::File,
        num_replicas: 1,
        ..Default::default()
    }
}

/// The de-duplication window for a lease: four leases, at least two minutes.
pub fn duplicate_window(lease: Duration) -> Duration {
    (lease * 4).max(MIN_DUPLICATE_WINDOW)
}

/// Gets the stream, creating it when absent (with `subject`, which only
/// `out` must name); refuses one that breaks the queue's semantics.
/// Returns whether keys are conflated in the stream (one message per
/// subject).
pub async fn ensure_stream(
    js: &Context,
    name: &str,
    subject: Option<&str>,
    facts: &QueueFacts,
) -> Result<(stream::Stream, bool), BridgeError> {
    let stream = match js.get_stream(name).await {
        Ok(s) => s,
        Err(e) if not_found(&e.kind()) => {
            let Some(subject) = subject else {
                return Err(BridgeError::Refused(format!(
                    "stream {name} does not exist; name its subject (--subject) to create it"
                )));
            };
            js.create_stream(stream_config(name, subject, facts))
                .await
                .map_err(|e| BridgeError::Nats(format!("creating stream {name}: {e}")))?
        }
        Err(e) => return Err(BridgeError::Nats(format!("looking up stream {name}: {e}"))),
    };
    let cfg = &stream.cached_info().config;
    check_stream(cfg, subject, facts).map_err(|why| {
        BridgeError::Refused(format!(
            "stream {name} exists but {why}; fix it or name another stream"
        ))
    })?;
    if cfg.duplicate_window < facts.lease {
        eprintln!(
            "shmq bridge: warning: stream {name} de-duplicates over {:?}, less than the queue's lease {:?}: a message republished after a crash may be stored twice",
            cfg.duplicate_window, facts.lease
        );
    }
    let conflated = cfg.max_messages_per_subject > 0;
    Ok((stream, conflated))
}

fn not_found(kind: &async_nats::jetstream::context::GetStreamErrorKind) -> bool {
    use async_nats::jetstream::context::GetStreamErrorKind;
    use async_nats::jetstream::ErrorCode;
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Why an existing stream's configuration breaks the queue's semantics.
pub fn check_stream(
    cfg: &stream::Config,
    subject: Option<&str>,
    facts: &QueueFacts,
) -> Result<(), String> {
    if cfg.retention == RetentionPolicy::Interest {
        return Err(
            "its retention is interest: a message published while no consumer is bound is dropped"
                .into(),
        );
    }
    if cfg.no_ack {
        return Err(
            "it does not acknowledge publishes (no_ack): nothing could be acked locally".into(),
        );
    }
    let limited = cfg.max_messages > 0 || cfg.max_bytes > 0 || !cfg.max_age.is_zero();
    if limited && cfg.discard == DiscardPolicy::Old {
        return Err("it discards old messages at a limit (max messages, bytes or age) whether or not they were consumed".into());
    }
    if cfg.max_messages_per_subject > 0 && !facts.latest_only {
        return Err(format!(
            "it keeps {} message(s) per subject, and the queue is not latest-only: versions of a key would be dropped",
            cfg.max_messages_per_subject
        ));
    }
    let wanted = subject.map_or(vec![], |s| vec![s.to_string(), format!("{s}.>")]);
    for s in wanted {
        if !cfg.subjects.contains(&s) {
            return Err(format!(
                "it does not take subject {s} (its subjects: {})",
                cfg.subjects.join(", ")
            ));
        }
    }
    Ok(())
}

/// The durable pull consumer's configuration for a queue: explicit acks,
/// AckWait the queue's lease, MaxDeliver its delivery limit, every message.
pub fn consumer_config(name: &str, facts: &QueueFacts) -> pull::Config {
    pull::Config {
        durable_name: Some(name.to_string()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: facts.lease,
        max_deliver: if facts.max_deliveries == 0 {
            -1
        } else {
            i64::from(facts.max_deliveries)
        },
        deliver_policy: DeliverPolicy::All,
        max_ack_pending: 20_000,
        ..Default::default()
    }
}

/// Gets the durable consumer, creating it when absent; refuses one whose
/// acks are not explicit.
pub async fn ensure_consumer(
    stream: &stream::Stream,
    name: &str,
    facts: &QueueFacts,
) -> Result<consumer::Consumer<pull::Config>, BridgeError> {
    let consumer: consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(name, consumer_config(name, facts))
        .await
        .map_err(|e| BridgeError::Nats(format!("getting or creating consumer {name}: {e}")))?;
    let cfg = &consumer.cached_info().config;
    if cfg.ack_policy != AckPolicy::Explicit {
        return Err(BridgeError::Refused(format!(
            "consumer {name} exists but its acks are not explicit ({:?}): a message would leave the stream before the local commit",
            cfg.ack_policy
        )));
    }
    if cfg.ack_wait != facts.lease {
        eprintln!(
            "shmq bridge: note: consumer {name} waits {:?} for an ack, the queue's lease is {:?}",
            cfg.ack_wait, facts.lease
        );
    }
    Ok(consumer)
}

/// The first pause between two tries to reach the server; doubles up to
/// [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Runs `step` until it succeeds, waiting between tries while the server
/// cannot be reached or answers with a passing error (`BridgeError::Nats`):
/// a bridge started before its server, or while the server restarts,
/// waits for it as a client of a broker does. A refusal or a local error
/// is returned at once. `None` when `shutdown` fires first.
pub async fn until_reached<T, F, Fut>(
    what: &str,
    shutdown: &mut Shutdown,
    mut step: F,
) -> Result<Option<T>, BridgeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BridgeError>>,
{
    let mut pause = RETRY_MIN;
    loop {
        if shutdown.is_fired() {
            return Ok(None);
        }
        let err = tokio::select! {
            _ = shutdown.fired() => return Ok(None),
            r = step() => match r {
                Ok(v) => return Ok(Some(v)),
                Err(BridgeError::Nats(m)) => m,
                Err(e) => return Err(e),
            },
        };
        eprintln!("shmq bridge: {what}: {err}; trying again in {pause:?}");
        tokio::select! {
            _ = shutdown.fired() => return Ok(None),
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// Connects to `nats`, waiting for the server while it cannot be reached
/// (see [`until_reached`]). `None` when `shutdown` fires first.
pub async fn connect(
    nats: &str,
    shutdown: &mut Shutdown,
) -> Result<Option<async_nats::Client>, BridgeError> {
    until_reached("connecting", shutdown, || async {
        async_nats::connect(nats)
            .await
            .map_err(|e| BridgeError::Nats(format!("cannot reach {nats}: {e}")))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(latest_only: bool) -> QueueFacts {
        QueueFacts {
            file_id: 1,
            lease: Duration::from_secs(30),
            max_deliveries: 10,
            latest_only,
            max_message_size: 256,
        }
    }

    #[test]
    fn the_created_stream_passes_its_own_check() {
        for lo in [false, true] {
            let cfg = stream_config("S", "s", &facts(lo));
            assert_eq!(check_stream(&cfg, Some("s"), &facts(lo)), Ok(()));
            assert_eq!(cfg.max_messages_per_subject, if lo { 1 } else { -1 });
            assert_eq!(cfg.duplicate_window, Duration::from_secs(120));
        }
    }

    #[test]
    fn streams_that_drop_messages_are_refused() {
        let f = facts(false);
        let base = stream_config("S", "s", &f);
        let refused = |c: stream::Config| check_stream(&c, Some("s"), &f).unwrap_err();
        assert!(refused(stream::Config {
            retention: RetentionPolicy::Interest,
            ..base.clone()
        })
        .contains("interest"));
        assert!(refused(stream::Config {
            max_messages: 100,
            ..base.clone()
        })
        .contains("discards old"));
        assert!(refused(stream::Config {
            max_messages_per_subject: 1,
            ..base.clone()
        })
        .contains("not latest-only"));
        assert!(refused(stream::Config {
            subjects: vec!["s".into()],
            ..base.clone()
        })
        .contains("s.>"));
        assert!(refused(stream::Config {
            no_ack: true,
            ..base.clone()
        })
        .contains("no_ack"));
        // A limit with discard `new` refuses publishes instead: back-pressure.
        let new = stream::Config {
            max_messages: 100,
            discard: DiscardPolicy::New,
            ..base.clone()
        };
        assert_eq!(check_stream(&new, Some("s"), &f), Ok(()));
        // `in` without a subject does not check the subjects.
        assert_eq!(
            check_stream(
                &stream::Config {
                    subjects: vec!["other.>".into()],
                    ..base
                },
                None,
                &f
            ),
            Ok(())
        );
    }

    #[test]
    fn the_consumer_follows_the_queue() {
        let c = consumer_config("far", &facts(false));
        assert_eq!(c.ack_policy, AckPolicy::Explicit);
        assert_eq!(c.ack_wait, Duration::from_secs(30));
        assert_eq!(c.max_deliver, 10);
        let unlimited = QueueFacts {
            max_deliveries: 0,
            ..facts(false)
        };
        assert_eq!(consumer_config("far", &unlimited).max_deliver, -1);
    }
}
