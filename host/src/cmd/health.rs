//! `healer health`: probes a running service's `GET /health` and exits 0 when it
//! answers 200. The container health check uses it, so the runtime image needs
//! no shell or curl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

/// Arguments of `health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The service's listen address (the same default as `healer run`); a
    /// wildcard host is probed on loopback.
    #[arg(long, env = "HEALER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3)]
    timeout_seconds: u64,
}

/// Probes `/health`; exit 0 on 200, 1 otherwise.
pub fn run(a: HealthArgs) -> anyhow::Result<ExitCode> {
    let mut addr = a.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let timeout = Duration::from_secs(a.timeout_seconds.max(1));
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.take(64 * 1024).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.split(' ').nth(1).unwrap_or_default();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    println!("{body}");
    Ok(if status == "200" {
        ExitCode::SUCCESS
    } else {
        eprintln!("healer health: {addr} answered {status:?}");
        ExitCode::FAILURE
    })
}
