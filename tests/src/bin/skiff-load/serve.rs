//! The TCP backends of the connection-rate and latency figures.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    thread,
    time::Duration,
};

use anyhow::{Context, Result};

pub fn run(crr_port: u16, rr_port: u16) -> Result<()> {
    let crr = bind(crr_port)?;
    let rr = bind(rr_port)?;
    thread::spawn(move || {
        for stream in rr.incoming().flatten() {
            thread::spawn(move || echo_until_eof(stream));
        }
    });
    println!("ready");
    // One connection at a time, in this thread: the client connects in a
    // sequential loop, and a thread per connection would add a wakeup (a
    // scheduler delay on a busy machine) to every one.
    for stream in crr.incoming().flatten() {
        answer_and_close(stream);
    }
    Ok(())
}

fn bind(port: u16) -> Result<TcpListener> {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).with_context(|| format!("binding TCP {port}"))
}

/// Answers one request, then waits for the client to end the connection
/// (with a RST, see `crr`), so neither side keeps a TIME_WAIT socket.
fn answer_and_close(mut stream: TcpStream) {
    // A client that never sends must not stall the others.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut request = [0u8; 64];
    if let Ok(n @ 1..) = stream.read(&mut request)
        && stream.write_all(&request[..n]).is_ok()
    {
        while let Ok(1..) = stream.read(&mut request) {}
    }
}

fn echo_until_eof(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buffer = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buffer) {
        if stream.write_all(&buffer[..n]).is_err() {
            return;
        }
    }
}
