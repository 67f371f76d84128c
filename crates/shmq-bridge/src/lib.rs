//! The NATS JetStream bridge of shmq: moves messages from a queue file to a
//! JetStream stream (`out`) and from a durable pull consumer into a queue
//! file (`in`), keeping what a message means: its key and version, at least
//! once across the boundary, once into the stream by de-duplication, and
//! versions monotonic on the far side. docs/BRIDGE.md maps each guarantee
//! of the queue onto JetStream.
//!
//! Modules: `local` (the one adapter to the blocking queue API: a thread
//! per queue and channels), `ids` (subjects, headers, de-duplication ids),
//! `setup` (creating and checking the stream and the consumer), `out` and
//! `inbound` (the two directions), `config` (`bridge run`: several
//! bridges from a TOML file), `figures` (counters and gauges, JSON
//! lines and a Prometheus endpoint).

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod config;
pub mod figures;
pub mod ids;
pub mod inbound;
pub mod local;
pub mod out;
pub mod setup;

pub use figures::Figures;
pub use inbound::InOptions;
pub use out::OutOptions;

use std::fmt;

/// Why a bridge stopped.
#[derive(Debug, Clone)]
pub enum BridgeError {
    /// The local queue failed (the message names the file and the cause).
    Local(String),
    /// NATS or JetStream failed.
    Nats(String),
    /// A stream, consumer or file that would break the semantics.
    Refused(String),
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeError::Local(m) => write!(f, "local queue: {m}"),
            BridgeError::Nats(m) => write!(f, "nats: {m}"),
            BridgeError::Refused(m) => write!(f, "refused: {m}"),
        }
    }
}

impl std::error::Error for BridgeError {}

impl From<String> for BridgeError {
    fn from(m: String) -> Self {
        BridgeError::Local(m)
    }
}

/// A stop request shared by the tasks of a run (SIGINT, SIGTERM, or a
/// caller's own).
#[derive(Clone, Debug)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

/// The trigger of a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger(tokio::sync::watch::Sender<bool>);

impl ShutdownTrigger {
    /// Asks every holder of the paired [`Shutdown`] to stop.
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// A new stop request and its trigger.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Whether the stop was asked for.
    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once the stop is asked for (never, if the trigger is
    /// dropped unfired).
    pub async fn fired(&mut self) {
        if self.0.wait_for(|v| *v).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Runs `f` on a new multi-threaded tokio runtime, with SIGINT and SIGTERM
/// firing the shutdown it is given: for the command line.
pub fn block_on<T, F, Fut>(f: F) -> Result<T, BridgeError>
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: std::future::Future<Output = Result<T, BridgeError>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| BridgeError::Local(format!("cannot start the runtime: {e}")))?;
    rt.block_on(async move {
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            trigger.fire();
        });
        f(shutdown).await
    })
}
