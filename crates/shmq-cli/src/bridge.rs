//! `shmq bridge out` and `shmq bridge in`: the options handed to the
//! bridge crate, its figures printed (and served) as it runs and at the end.

use std::sync::Arc;

use shmq_bridge::{figures, BridgeError, Figures, Shutdown};

use crate::cli::{BridgeArgs, BridgeCommon, BridgeDirection};
use crate::util::{CliError, CmdResult};

/// Starts the reporters the common options ask for.
async fn report(c: &BridgeCommon, figs: &Arc<Figures>) -> Result<(), BridgeError> {
    reporters(c.stats_every, c.metrics, vec![figs.clone()]).await
}

async fn reporters(
    every: Option<std::time::Duration>,
    metrics: Option<std::net::SocketAddr>,
    figs: Vec<Arc<Figures>>,
) -> Result<(), BridgeError> {
    if let Some(every) = every {
        figures::spawn_printer(figs.clone(), every);
    }
    if let Some(addr) = metrics {
        let at = figures::serve_metrics(figs, addr).await?;
        eprintln!("shmq bridge: metrics on http://{at}/metrics");
    }
    Ok(())
}

/// `shmq bridge`.
pub fn bridge(a: &BridgeArgs) -> CmdResult {
    let (json, figs) = match &a.direction {
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
            (o.common.json, vec![figs])
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
            (i.common.json, vec![figs])
        }
        BridgeDirection::Run(r) => {
            let config = shmq_bridge::config::Config::load(&r.config)
                .map_err(|e| CliError::new(format!("bridge run: {e}")))?;
            let figs = config.figures();
            let f = figs.clone();
            shmq_bridge::block_on(|stop: Shutdown| async move {
                reporters(r.stats_every, r.metrics, f.clone()).await?;
                config.run(stop, &f, r.idle_exit).await
            })
            .map_err(|e| CliError::new(format!("bridge run: {e}")))?;
            (r.json, figs)
        }
    };
    for f in figs {
        if json {
            println!("{}", f.to_json());
        } else {
            eprintln!("shmq bridge: {}", f.to_json());
        }
    }
    Ok(0)
}
