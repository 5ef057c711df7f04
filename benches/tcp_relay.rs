//! `tcp-relay`: the plain TCP relay the benchmark compares quarantine against.
//!
//! Every accepted connection gets one upstream connection, and bytes are copied both ways
//! with tokio's `copy_bidirectional` until either side closes. Nothing is parsed, so a
//! Kafka client behind it sees the broker's own advertised address: the benchmark starts
//! the broker advertising the relay's address for that phase.
//!
//! Usage: `tcp-relay LISTEN_ADDR UPSTREAM_ADDR`, e.g. `tcp-relay 127.0.0.1:9092 127.0.0.1:9093`.

use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::net::{TcpListener, TcpStream};

/// Parses the two addresses from the command line.
fn parse_args() -> Result<(SocketAddr, String), String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: tcp-relay LISTEN_ADDR UPSTREAM_ADDR";
    let listen = args.next().ok_or(usage)?;
    let upstream = args.next().ok_or(usage)?;
    if args.next().is_some() {
        return Err(usage.into());
    }
    let listen = listen
        .parse()
        .map_err(|e| format!("LISTEN_ADDR `{listen}` is not an ip:port address: {e}"))?;
    Ok((listen, upstream))
}

/// Relays one client connection to a fresh upstream connection until either side closes.
async fn relay(mut client: TcpStream, upstream: String) {
    let mut server = match TcpStream::connect(&upstream).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tcp-relay: cannot connect to {upstream}: {e}");
            return;
        }
    };
    // Both sides carry small request/response frames: do not let Nagle delay them.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

#[tokio::main]
async fn main() -> ExitCode {
    let (listen, upstream) = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(64);
        }
    };
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tcp-relay: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!("tcp-relay: {listen} -> {upstream}");
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    tokio::spawn(relay(client, upstream.clone()));
                }
                Err(e) => {
                    eprintln!("tcp-relay: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
        }
    }
}
