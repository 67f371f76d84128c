//! `shmq serve-metrics`: a Prometheus scrape endpoint for one or more queues,
//! served by hyper (HTTP/1.1) on a small tokio runtime.
//!
//! `GET /metrics` answers the OpenMetrics text of every queue (label
//! `queue="PATH"`), encoded by `prometheus-client`; `GET /` a short index;
//! anything else 404 or 405. Each connection is a task, so idle or slow
//! clients hold a few kilobytes each and never delay a scrape; resources
//! stay bounded: at most [`MAX_CONNECTIONS`] connections (more are closed
//! at once), a request head must arrive within [`HEADER_TIMEOUT`], a
//! connection lives at most [`CONNECTION_LIFETIME`], and the scans of the
//! queue files run on at most [`SCRAPE_THREADS`] threads.
//!
//! The queues are opened for inspection only: the server is not a
//! participant and changes nothing in the files. At every scrape each path
//! is checked against the open handle (device and inode): a file replaced
//! under the path (recreated) is reopened, and a file that cannot be read
//! is reported with `shmq_up 0` and counted in `shmq_scrape_errors_total`
//! instead of failing the scrape.

use std::convert::Infallible;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use shmq::{OpenOptions, Queue};

use crate::cli::ServeArgs;
use crate::prometheus::{openmetrics, Scraped, OPENMETRICS_TYPE};
use crate::stats_view::View;
use crate::util::{CliError, CmdResult};

/// Most connections open at once; a connection past it is closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client has to send a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest life of a connection (keep-alive included).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Threads that scan queue files for scrapes (the tokio runtime's
/// blocking pool); the connections themselves run on two workers.
pub const SCRAPE_THREADS: usize = 2;

/// One queue being served: its path, the handle open on it, and the
/// identity (device, inode) of the file the handle has open.
struct Target {
    label: String,
    path: PathBuf,
    queue: Option<Queue>,
    id: Option<(u64, u64)>,
    errors: u64,
}

impl Target {
    fn open(path: &PathBuf, opts: &OpenOptions) -> Result<Target, shmq::Error> {
        let q = Queue::open_with(path, opts)?;
        Ok(Target {
            label: path.display().to_string(),
            path: path.clone(),
            id: q.file_id().ok(),
            queue: Some(q),
            errors: 0,
        })
    }

    /// The queue at this scrape: reopened when the path now names another
    /// file or the mapping broke; `None` (counted as a scrape error) when
    /// the file cannot be read.
    fn current(&mut self, opts: &OpenOptions) -> Option<&Queue> {
        let on_disk = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
        let stale = match (&on_disk, &self.queue) {
            (Err(_), _) => true,
            (Ok(_), None) => true,
            (Ok(id), Some(q)) => Some(*id) != self.id || q.is_broken(),
        };
        if stale {
            // Dropping the old handle first: its file may be gone.
            self.queue = None;
            self.id = None;
            match on_disk
                .map_err(|e| e.to_string())
                .and_then(|_| Queue::open_with(&self.path, opts).map_err(|e| e.to_string()))
            {
                Ok(q) => {
                    eprintln!("shmq: serve-metrics: (re)opened {}", self.label);
                    self.id = q.file_id().ok();
                    self.queue = Some(q);
                }
                Err(e) => {
                    self.errors += 1;
                    eprintln!("shmq: serve-metrics: {}: {e}", self.label);
                    return None;
                }
            }
        }
        self.queue.as_ref()
    }

    fn scrape(&mut self, opts: &OpenOptions) -> Scraped {
        let label = self.label.clone();
        let view = self.current(opts).map(|q| View::take(&label, q));
        Scraped {
            label,
            view,
            errors: self.errors,
        }
    }
}

/// What the connections share: the queues, each behind its own lock (a
/// handle is used by one thread at a time).
struct Served {
    targets: Vec<Mutex<Target>>,
    opts: OpenOptions,
}

impl Served {
    /// One scrape of every queue (a scan of each file: run off the
    /// connection tasks).
    fn scrape(&self) -> String {
        let scraped = self
            .targets
            .iter()
            .map(|t| {
                // A scrape that panicked left the target as it was: go on.
                let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
                t.scrape(&self.opts)
            })
            .collect();
        openmetrics(scraped)
    }

    fn index(&self) -> String {
        let list: String = self
            .targets
            .iter()
            .map(|t| format!("  {}\n", t.lock().unwrap_or_else(|p| p.into_inner()).label))
            .collect();
        format!("shmq metrics for:\n{list}scrape /metrics\n")
    }
}

/// `shmq serve-metrics`.
pub fn serve(a: &ServeArgs) -> CmdResult {
    let opts = a.trust.reading(a.read_only);
    let mut targets = Vec::new();
    for p in &a.paths {
        targets.push(Mutex::new(Target::open(p, &opts)?));
    }
    let listener = std::net::TcpListener::bind(&a.listen)
        .map_err(|e| CliError::new(format!("IO: serve-metrics: listening on {}: {e}", a.listen)))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        eprintln!("shmq: warning: serving metrics on {addr}, reachable from other hosts");
    }
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(SCRAPE_THREADS)
        .enable_io()
        .enable_time()
        .build()?;
    // The address on stdout (port 0 picks one), for scripts and tests.
    println!("http://{addr}/metrics");
    eprintln!(
        "serving the metrics of {} queue{} on http://{addr}/metrics",
        targets.len(),
        if targets.len() == 1 { "" } else { "s" }
    );
    let served = Arc::new(Served { targets, opts });
    rt.block_on(accept_loop(listener, served))?;
    Ok(0)
}

async fn accept_loop(listener: std::net::TcpListener, served: Arc<Served>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors, or a connection reset before accept:
                // wait a little rather than spin.
                eprintln!("shmq: serve-metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over the limit: closed at once (the client sees a reset).
            drop(stream);
            continue;
        };
        let served = served.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| respond(req, served.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                if !e.is_timeout() && !e.is_incomplete_message() {
                    eprintln!("shmq: serve-metrics: connection: {e}");
                }
            }
            drop(permit);
        });
    }
}

fn reply(status: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

async fn respond(
    req: Request<Incoming>,
    served: Arc<Served>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    Ok(match req.uri().path() {
        "/metrics" => {
            let s = served.clone();
            match tokio::task::spawn_blocking(move || s.scrape()).await {
                Ok(body) => reply(
                    StatusCode::OK,
                    OPENMETRICS_TYPE,
                    if head { String::new() } else { body },
                ),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("scrape failed: {e}\n"),
                ),
            }
        }
        "/" => reply(StatusCode::OK, "text/plain; charset=utf-8", served.index()),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /metrics\n".into(),
        ),
    })
}
