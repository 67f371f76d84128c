//! The bridge's throughput beside the plain JetStream client at its best,
//! on one NATS server:
//!
//! - reference out: async-nats publishes with acks, pipelined (a window of
//!   publishes awaiting their acks), then
//! - reference in: a durable pull consumer drained in batches, each message
//!   acked;
//! - bridge out: `out::run` from a queue file holding N messages until all
//!   are acked locally;
//! - bridge in: `inbound::run` into an empty queue file until all N are sent.
//!
//! ```sh
//! nats-server -js -p 14222 -sd /tmp/js &
//! cargo run --release -p shmq-bridge --example throughput -- nats://127.0.0.1:14222 100000
//! ```
//!
//! Messages are 64 bytes, keyless. Each phase has a stream of its own.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use shmq::{Options, Queue};
use shmq_bridge::{inbound, out, Figures, InOptions, OutOptions, Shutdown};

const WINDOW: usize = 512;
const BATCH: usize = 256;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let n: usize = args.next().map_or(Ok(100_000), |s| s.parse())?;
    let payload = Bytes::from(vec![b'x'; 64]);
    let client = async_nats::connect(&url).await?;
    let js = jetstream::new(client);
    let tag = std::process::id();

    // Reference: publish with acks, pipelined.
    let name = format!("REF{tag}");
    let subject = format!("ref{tag}");
    let st = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await?;
    let t = Instant::now();
    let mut acks = FuturesUnordered::new();
    for _ in 0..n {
        if acks.len() >= WINDOW {
            acks.next().await.expect("an ack")?;
        }
        acks.push(
            js.publish(subject.clone(), payload.clone())
                .await?
                .into_future(),
        );
    }
    while let Some(a) = acks.next().await {
        a?;
    }
    let ref_out = n as f64 / t.elapsed().as_secs_f64();
    // The same with the headers the bridge sends (a Nats-Msg-Id makes the
    // server check and remember it for de-duplication).
    let t = Instant::now();
    for i in 0..n {
        if acks.len() >= WINDOW {
            acks.next().await.expect("an ack")?;
        }
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("shmq-{tag:016x}-{i}-0").as_str());
        acks.push(
            js.publish_with_headers(subject.clone(), h, payload.clone())
                .await?
                .into_future(),
        );
    }
    while let Some(a) = acks.next().await {
        a?;
    }
    let ref_out_ids = n as f64 / t.elapsed().as_secs_f64();
    // Reference: pull in batches, ack each.
    let consumer: jetstream::consumer::Consumer<pull::Config> = st
        .get_or_create_consumer(
            "ref",
            pull::Config {
                durable_name: Some("ref".into()),
                ..Default::default()
            },
        )
        .await?;
    let t = Instant::now();
    let mut got = 0;
    while got < 2 * n {
        let mut b = consumer
            .batch()
            .max_messages(BATCH)
            .expires(Duration::from_millis(500))
            .messages()
            .await?;
        while let Some(m) = b.next().await {
            m?.ack().await?;
            got += 1;
        }
    }
    let ref_in = 2.0 * n as f64 / t.elapsed().as_secs_f64();
    js.delete_stream(&name).await?;

    // The bridge: out of a queue file holding n messages.
    let dir = std::env::temp_dir();
    let near = dir.join(format!("shmq-bridge-bench-{tag}-near"));
    let far = dir.join(format!("shmq-bridge-bench-{tag}-far"));
    let opts = Options {
        capacity: n as u64,
        max_message_size: 64,
        ..Default::default()
    };
    {
        let q = Queue::create(&near, &opts)?;
        for _ in 0..n {
            q.send(&payload, Duration::ZERO)?;
        }
    }
    Queue::create(&far, &opts)?.close()?;
    let name = format!("BR{tag}");
    let o = OutOptions {
        path: near.clone(),
        nats: url.clone(),
        stream: name.clone(),
        subject: format!("br{tag}"),
        window: WINDOW,
        idle_exit: None,
    };
    // Timed from the start to the moment the near queue is empty (every
    // message acked after its publish ack), watched from beside.
    let (stop_out, stop) = Shutdown::new();
    let t = Instant::now();
    let figs = Figures::new("out", "near", &name);
    let f = figs.clone();
    let task = tokio::spawn(async move { out::run(&o, stop, f).await });
    wait_until(&near, |s| s.depth == 0 && s.in_flight == 0).await;
    let br_out = n as f64 / t.elapsed().as_secs_f64();
    stop_out.fire();
    task.await??;
    assert_eq!(Figures::get(&figs.acked) as usize, n);
    let i = InOptions {
        path: far.clone(),
        nats: url.clone(),
        stream: name.clone(),
        subject: None,
        consumer: "far".into(),
        batch: BATCH,
        idle_exit: None,
    };
    // Timed to the moment all n wait in the far queue.
    let (stop_in, stop) = Shutdown::new();
    let t = Instant::now();
    let figs = Figures::new("in", "far", &name);
    let f = figs.clone();
    let task = tokio::spawn(async move { inbound::run(&i, stop, f).await });
    wait_until(&far, |s| s.depth as usize >= n).await;
    let br_in = n as f64 / t.elapsed().as_secs_f64();
    stop_in.fire();
    task.await??;
    assert_eq!(Figures::get(&figs.sent) as usize, n);
    js.delete_stream(&name).await?;
    let _ = std::fs::remove_file(&near);
    let _ = std::fs::remove_file(&far);

    println!("{n} messages of 64 bytes");
    println!("reference publish+ack (window {WINDOW}): {ref_out:>10.0} msg/s");
    println!("reference with Nats-Msg-Id:            {ref_out_ids:>10.0} msg/s");
    println!(
        "bridge out (window {WINDOW}):             {br_out:>10.0} msg/s  ({:.2}x; {:.2}x of the reference with ids)",
        br_out / ref_out,
        br_out / ref_out_ids
    );
    println!("reference pull+ack (batch {BATCH}):     {ref_in:>10.0} msg/s");
    println!(
        "bridge in (batch {BATCH}):              {br_in:>10.0} msg/s  ({:.2}x)",
        br_in / ref_in
    );
    Ok(())
}

/// Polls the queue's stats every millisecond until `done`.
async fn wait_until(path: &std::path::Path, done: impl Fn(&shmq::Stats) -> bool) {
    let q = Queue::inspect(path).expect("inspect the queue");
    while !done(&q.stats()) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
