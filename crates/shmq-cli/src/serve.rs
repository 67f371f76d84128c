//! `shmq serve-metrics`: a Prometheus scrape endpoint for one or more queues,
//! a tiny HTTP/1.0 responder over `std::net::TcpListener` (no HTTP crate).
//!
//! `GET /metrics` answers the text exposition format of every queue (label
//! `queue="PATH"`); `GET /` a short index; anything else 404 or 405. One
//! connection is served at a time, each with a read and write timeout, so a
//! stuck client delays a scrape by at most a few seconds and cannot pile up
//! threads. The queues are opened for inspection only: the server is not a
//! participant and changes nothing in the files.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use shmq::Queue;

use crate::cli::ServeArgs;
use crate::util::{CliError, CmdResult};

/// Longest request head read.
const MAX_REQUEST: usize = 8192;
/// Read and write timeout of a connection.
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// `shmq serve-metrics`.
pub fn serve(a: &ServeArgs) -> CmdResult {
    let mut queues = Vec::new();
    for p in &a.paths {
        queues.push((
            p.display().to_string(),
            Queue::open_with(p, &a.trust.reading(a.read_only))?,
        ));
    }
    let listener = TcpListener::bind(&a.listen)
        .map_err(|e| CliError::new(format!("IO: serve-metrics: listening on {}: {e}", a.listen)))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        eprintln!("shmq: warning: serving metrics on {addr}, reachable from other hosts");
    }
    // The address on stdout (port 0 picks one), for scripts and tests.
    println!("http://{addr}/metrics");
    eprintln!(
        "serving the metrics of {} queue{} on http://{addr}/metrics",
        queues.len(),
        if queues.len() == 1 { "" } else { "s" }
    );
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                if let Err(e) = handle(stream, &queues) {
                    eprintln!("shmq: serve-metrics: connection: {e}");
                }
            }
            Err(e) => eprintln!("shmq: serve-metrics: accept: {e}"),
        }
    }
    Ok(0)
}

/// Reads the request head (up to the blank line).
fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST {
            break;
        }
    }
    Ok(head)
}

fn respond(stream: &mut TcpStream, status: &str, ctype: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

fn handle(mut stream: TcpStream, queues: &[(String, Queue)]) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n",
        );
    }
    match path {
        "/metrics" => {
            let stats: Vec<crate::stats_view::View> = queues
                .iter()
                .map(|(label, q)| crate::stats_view::View::take(label, q))
                .collect();
            let body = crate::prometheus::render(&stats);
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                if method == "HEAD" { "" } else { &body },
            )
        }
        "/" => {
            let list: String = queues.iter().map(|(l, _)| format!("  {l}\n")).collect();
            respond(
                &mut stream,
                "200 OK",
                "text/plain; charset=utf-8",
                &format!("shmq metrics for:\n{list}scrape /metrics\n"),
            )
        }
        _ => respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            "not found; try /metrics\n",
        ),
    }
}
