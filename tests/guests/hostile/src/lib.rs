//! A hostile policy for the sandbox tests. The incident's `reason` picks the
//! misbehaviour; every one must be stopped by a host limit with the right error,
//! and the engine must keep serving the next decision.

use std::hint::black_box;

use healer_sdk::*;

/// The policy.
pub struct Hostile;

fn summary(text: String) -> Result<Decision, String> {
    Ok(Decision::new(text))
}

/// Recurses until the stack runs out (the condition is never true at runtime).
fn recurse(n: u64) -> u64 {
    if black_box(n) == u64::MAX {
        return 0;
    }
    black_box(recurse(black_box(n + 1))) + 1
}

/// A decision whose 16 step reasons all alias one 8 MiB buffer: 8 MiB of guest
/// memory that lifting would copy 16 times into the host.
fn alias() -> Result<Decision, String> {
    let len = 8 << 20;
    let buffer = std::mem::ManuallyDrop::new(vec![b'a'; len]);
    let ptr = buffer.as_ptr().cast_mut();
    let mut d = Decision::new("aliased");
    for _ in 0..16 {
        // SAFETY: deliberately not: every String shares one buffer. The guest
        // never frees them before the host has lifted the result; the point is
        // what the host does with the aliased strings.
        let reason = unsafe { String::from_raw_parts(ptr, len, len) };
        d.steps.push(Step {
            action: Action::NoOp,
            reason,
        });
    }
    Ok(d)
}

impl Policy for Hostile {
    fn metadata() -> Metadata {
        Metadata::new("hostile", "0.0.1")
            .handles([IncidentKind::Alarm])
            .proposes([ActionKind::Notify])
    }

    fn decide(incident: &Incident, _ctx: &Context) -> Result<Decision, String> {
        match incident.reason.as_str() {
            "loop" => {
                let mut i: u64 = 0;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            "panic" => panic!("hostile policy panicked on purpose"),
            "unreachable" => std::process::abort(),
            "stack" => summary(format!("{}", recurse(0))),
            "huge" => {
                let mut d = Decision::new("huge");
                for i in 0..2000 {
                    d = d.step(Action::notify("x", "y".repeat(1024)), format!("step {i}"));
                }
                Ok(d)
            }
            "huge-summary" => summary("z".repeat(8 << 20)),
            "err" => Err("hostile policy refuses to decide".to_owned()),
            "log-flood" => {
                log(Level::Warn, &"w".repeat(64 << 10));
                for i in 1..10_000 {
                    log(Level::Warn, &format!("flood {i}"));
                }
                summary("flooded".to_owned())
            }
            "file" => summary(match std::fs::read("/etc/passwd") {
                Ok(b) => format!("read {} bytes", b.len()),
                Err(e) => format!("file denied: {e}"),
            }),
            "dir" => summary(match std::fs::read_dir("/") {
                Ok(_) => "listed /".to_owned(),
                Err(e) => format!("dir denied: {e}"),
            }),
            "env" => summary(format!(
                "env vars: {}, args: {}",
                std::env::vars().count(),
                std::env::args().count()
            )),
            "clock" => {
                let wall = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                let t0 = std::time::Instant::now();
                let spin: u64 = (0..10_000u64).map(black_box).sum();
                let elapsed = t0.elapsed().as_nanos();
                summary(format!(
                    "wall {wall} host-now {} elapsed {elapsed} spin {spin}",
                    now()
                ))
            }
            "random" => {
                // HashMap's RandomState seeds from wasi:random.
                let s = std::collections::hash_map::RandomState::new();
                use std::hash::BuildHasher;
                summary(format!("hash {}", s.hash_one(42u64)))
            }
            "net" => summary(match std::net::TcpStream::connect("127.0.0.1:9") {
                Ok(_) => "connected".to_owned(),
                Err(e) => format!("net denied: {e}"),
            }),
            "stdout" => {
                println!("{}", "o".repeat(1 << 16));
                summary("printed".to_owned())
            }
            // Issue 11: a sleep or poll must not hold the host in real time.
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(30));
                summary("slept".to_owned())
            }
            #[cfg(target_arch = "wasm32")]
            "poll" => {
                let hour = wasip2::clocks::monotonic_clock::subscribe_duration(3_600_000_000_000);
                let ready = wasip2::io::poll::poll(&[&hour]);
                summary(format!("polled {ready:?}"))
            }
            "nap" => {
                // A short sleep inside the deadline moves the virtual clock only.
                let t0 = std::time::Instant::now();
                std::thread::sleep(std::time::Duration::from_millis(5));
                summary(format!("napped {} ms", t0.elapsed().as_millis()))
            }
            // Issue 11: host-side memory is bounded, not only guest memory.
            #[cfg(target_arch = "wasm32")]
            "handles" => loop {
                std::mem::forget(black_box(wasip2::cli::stderr::get_stderr()));
            },
            // Sockets are denied, not trapped: a name lookup and a TCP socket
            // (componentize-py's `_socket` does both) get `access-denied`.
            #[cfg(target_arch = "wasm32")]
            "resolve" => {
                use wasip2::sockets::{
                    instance_network, ip_name_lookup, network, tcp_create_socket,
                };
                let net = instance_network::instance_network();
                let lookup = ip_name_lookup::resolve_addresses(&net, "example.com").err();
                let tcp =
                    tcp_create_socket::create_tcp_socket(network::IpAddressFamily::Ipv4).err();
                summary(format!("resolve {lookup:?}, tcp {tcp:?}"))
            }
            "stderr-flood" => loop {
                eprintln!("{}", "e".repeat(4096));
            },
            "alias" => alias(),
            "exit" => std::process::exit(3),
            other => summary(format!("fine: {other}")),
        }
    }
}

export_policy!(Hostile);
