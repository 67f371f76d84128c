//! `shmq bridge run CONFIG`: several queues and both directions in one
//! process, from a TOML file.
//!
//! ```toml
//! nats = "nats://10.0.0.5:4222"     # the default of every bridge below
//!
//! [[out]]
//! path = "/dev/shm/orders"
//! stream = "ORDERS"
//! subject = "orders"
//! window = 512                       # optional
//!
//! [[in]]
//! path = "/dev/shm/invoices"
//! stream = "INVOICES"
//! consumer = "host-a"
//! batch = 256                        # optional
//! nats = "nats://10.0.0.6:4222"      # optional, this bridge only
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::figures::Figures;
use crate::{inbound, out, BridgeError, InOptions, OutOptions, Shutdown};

/// The file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The NATS server of every bridge that names none.
    #[serde(default = "default_nats")]
    pub nats: String,
    /// Queue files to JetStream.
    #[serde(default)]
    pub out: Vec<OutEntry>,
    /// JetStream to queue files.
    #[serde(default, rename = "in")]
    pub inbound: Vec<InEntry>,
}

fn default_nats() -> String {
    "nats://127.0.0.1:4222".into()
}

/// One `[[out]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutEntry {
    /// The queue file.
    pub path: PathBuf,
    /// The stream.
    pub stream: String,
    /// The subject prefix.
    pub subject: String,
    /// Most messages in flight.
    #[serde(default = "default_window")]
    pub window: usize,
    /// This bridge's NATS server.
    pub nats: Option<String>,
}

fn default_window() -> usize {
    512
}

/// One `[[in]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InEntry {
    /// The queue file.
    pub path: PathBuf,
    /// The stream.
    pub stream: String,
    /// The durable consumer.
    pub consumer: String,
    /// The subject prefix, to create the stream when absent.
    pub subject: Option<String>,
    /// Most messages pulled at once.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// This bridge's NATS server.
    pub nats: Option<String>,
}

fn default_batch() -> usize {
    256
}

impl Config {
    /// Reads and checks the file.
    pub fn load(path: &std::path::Path) -> Result<Config, BridgeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| BridgeError::Local(format!("{}: {e}", path.display())))?;
        Config::parse(&text).map_err(|e| BridgeError::Local(format!("{}: {e}", path.display())))
    }

    /// Parses and checks a configuration.
    pub fn parse(text: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        if c.out.is_empty() && c.inbound.is_empty() {
            return Err("no [[out]] or [[in]] bridge".into());
        }
        Ok(c)
    }

    /// The figures of each bridge, in the file's order (outs, then ins).
    pub fn figures(&self) -> Vec<Arc<Figures>> {
        let outs = self
            .out
            .iter()
            .map(|o| Figures::new("out", &o.path.display().to_string(), &o.stream));
        let ins = self
            .inbound
            .iter()
            .map(|i| Figures::new("in", &i.path.display().to_string(), &i.stream));
        outs.chain(ins).collect()
    }

    /// Runs every bridge until `shutdown` (or each is idle for
    /// `idle_exit`); the first error stops them all and is returned.
    pub async fn run(
        &self,
        shutdown: Shutdown,
        figs: &[Arc<Figures>],
        idle_exit: Option<Duration>,
    ) -> Result<(), BridgeError> {
        let (stop_all, stop) = Shutdown::new();
        let mut tasks = tokio::task::JoinSet::new();
        let mut f = figs.iter().cloned();
        for o in &self.out {
            let opts = OutOptions {
                path: o.path.clone(),
                nats: o.nats.clone().unwrap_or_else(|| self.nats.clone()),
                stream: o.stream.clone(),
                subject: o.subject.clone(),
                window: o.window.max(1),
                idle_exit,
            };
            let (stop, figs) = (stop.clone(), f.next().expect("one figures per bridge"));
            tasks.spawn(async move { out::run(&opts, stop, figs).await });
        }
        for i in &self.inbound {
            let opts = InOptions {
                path: i.path.clone(),
                nats: i.nats.clone().unwrap_or_else(|| self.nats.clone()),
                stream: i.stream.clone(),
                // A stream this file also feeds: created with its subject by
                // whichever bridge comes first.
                subject: i.subject.clone().or_else(|| {
                    self.out
                        .iter()
                        .find(|o| o.stream == i.stream)
                        .map(|o| o.subject.clone())
                }),
                consumer: i.consumer.clone(),
                batch: i.batch.max(1),
                idle_exit,
            };
            let (stop, figs) = (stop.clone(), f.next().expect("one figures per bridge"));
            tasks.spawn(async move { inbound::run(&opts, stop, figs).await });
        }
        let mut first_err = None;
        let mut outer = shutdown;
        loop {
            tokio::select! {
                _ = outer.fired() => stop_all.fire(),
                done = tasks.join_next() => match done {
                    None => break,
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(e))) => {
                        first_err.get_or_insert(e);
                        stop_all.fire();
                    }
                    Some(Err(e)) => {
                        first_err.get_or_insert(BridgeError::Local(format!("a bridge task failed: {e}")));
                        stop_all.fire();
                    }
                },
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_directions_with_defaults() {
        let c = Config::parse(
            r#"
nats = "nats://h:4222"
[[out]]
path = "/dev/shm/a"
stream = "A"
subject = "a"
[[in]]
path = "/dev/shm/b"
stream = "B"
consumer = "c"
nats = "nats://other:4222"
"#,
        )
        .unwrap();
        assert_eq!(c.out[0].window, 512);
        assert_eq!(c.inbound[0].batch, 256);
        assert_eq!(c.inbound[0].nats.as_deref(), Some("nats://other:4222"));
        assert_eq!(c.figures().len(), 2);
        assert!(Config::parse("nats = \"x\"").is_err());
        assert!(
            Config::parse("[[out]]\npath = \"a\"\nstream = \"S\"\nsubject = \"s\"\ntypo = 1")
                .is_err()
        );
    }
}
