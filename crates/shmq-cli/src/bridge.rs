//! `shmq bridge out` and `shmq bridge in`: the options handed to the
//! bridge crate, its figures printed (and served) as it runs and at the end.

use std::sync::Arc;

use shmq_bridge::{figures, BridgeError, Figures, Shutdown};

use crate::cli::{BridgeArgs, BridgeCommon, BridgeDirection};
use crate::util::{CliError, CmdResult};

/// Starts the reporters the common options ask for.
async fn report(c: &BridgeCommon, figs: &Arc<Figures>) -> Result<(), BridgeError> {
    if let Some(every) = c.stats_every {
        figures::spawn_printer(vec![figs.clone()], every);
    }
    if let Some(addr) = c.metrics {
        let at = figures::serve_metrics(vec![figs.clone()], addr).await?;
        eprintln!("shmq bridge: metrics on http://{at}/metrics");
    }
    Ok(())
}

/// `shmq bridge`.
pub fn bridge(a: &BridgeArgs) -> CmdResult {
    let (common, figs) = match &a.direction {
        BridgeDirection::Out(o) => {
            let opts = shmq_bridge::OutOptions {
                path: o.path.clone(),
                nats: o.common.nats.clone(),
                stream: o.common.stream.clone(),
                subject: o.subject.clone(),
                window: o.window.max(1),
                idle_exit: o.common.idle_exit,
            };
            let figs = Figures::new("out", &o.path.display().to_string(), &o.common.stream);
            let f = figs.clone();
            shmq_bridge::block_on(|stop: Shutdown| async move {
                report(&o.common, &f).await?;
                shmq_bridge::out::run(&opts, stop, f).await
            })
            .map_err(|e| CliError::new(format!("bridge out: {e}")))?;
            (&o.common, figs)
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
            let figs = Figures::new("in", &i.path.display().to_string(), &i.common.stream);
            let f = figs.clone();
            shmq_bridge::block_on(|stop: Shutdown| async move {
                report(&i.common, &f).await?;
                shmq_bridge::inbound::run(&opts, stop, f).await
            })
            .map_err(|e| CliError::new(format!("bridge in: {e}")))?;
            (&i.common, figs)
        }
    };
    if common.json {
        println!("{}", figs.to_json());
    } else {
        eprintln!("shmq bridge: {}", figs.to_json());
    }
    Ok(0)
}
