//! `shmq bridge out` and `shmq bridge in`: the options handed to the
//! bridge crate, its figures printed at the end.

use crate::cli::{BridgeArgs, BridgeDirection};
use crate::util::{CliError, CmdResult};

/// `shmq bridge`.
pub fn bridge(a: &BridgeArgs) -> CmdResult {
    let (json, figures) = match &a.direction {
        BridgeDirection::Out(o) => {
            let opts = shmq_bridge::OutOptions {
                path: o.path.clone(),
                nats: o.common.nats.clone(),
                stream: o.common.stream.clone(),
                subject: o.subject.clone(),
                window: o.window.max(1),
                idle_exit: o.common.idle_exit,
            };
            let stats =
                shmq_bridge::block_on(
                    |stop| async move { shmq_bridge::out::run(&opts, stop).await },
                )
                .map_err(|e| CliError::new(format!("bridge out: {e}")))?;
            (o.common.json, stats.to_json())
        }
        BridgeDirection::In(i) => {
            let opts = shmq_bridge::InOptions {
                path: i.path.clone(),
                nats: i.common.nats.clone(),
                stream: i.common.stream.clone(),
                subject: i.subject.clone(),
                consumer: i.consumer.clone(),
                batch: i.batch.max(1),
                idle_exit: i.common.idle_exit,
            };
            let stats = shmq_bridge::block_on(|stop| async move {
                shmq_bridge::inbound::run(&opts, stop).await
            })
            .map_err(|e| CliError::new(format!("bridge in: {e}")))?;
            (i.common.json, stats.to_json())
        }
    };
    if json {
        println!("{figures}");
    } else {
        eprintln!("shmq bridge: {figures}");
    }
    Ok(0)
}
