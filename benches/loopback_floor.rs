//! What the kernel alone needs to hand one small message to 101 WebSocket-like clients on
//! loopback: one thread writes 80 bytes to each of 101 connected TCP sockets (Nagle off),
//! another reads them in the same order, 300 times. Then the same writes again with nobody
//! waiting to read (the reader drains afterwards), which is the cost of the writes alone,
//! with no wake-ups. No WebSocket, no async runtime: the floor under `gate_latency`'s
//! "100 browsers connected" on this machine.
//!
//!     cargo bench --bench loopback_floor
//!     SOCKETS=11 cargo bench --bench loopback_floor

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MESSAGE: [u8; 80] = [b'x'; 80];
const ROUNDS: usize = 300;

fn micros(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e6
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sockets: usize = std::env::var("SOCKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(101);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let (mut readers, mut writers) = (Vec::new(), Vec::new());
    for _ in 0..sockets {
        let reader = TcpStream::connect(address).expect("connect");
        let (writer, _) = listener.accept().expect("accept");
        reader.set_nodelay(true).expect("nodelay");
        writer.set_nodelay(true).expect("nodelay");
        readers.push(reader);
        writers.push(writer);
    }
    let (round_start, rounds) = mpsc::channel::<Instant>();
    let (arrivals, arrived) = mpsc::channel::<(f64, f64)>();
    let reading = std::thread::spawn(move || {
        let mut buf = [0u8; MESSAGE.len()];
        for started in rounds {
            let mut first = 0.0;
            for (i, reader) in readers.iter_mut().enumerate() {
                reader.read_exact(&mut buf).expect("read");
                if i == 0 {
                    first = micros(started);
                }
            }
            arrivals.send((first, micros(started))).expect("report");
        }
        readers
    });
    let (mut written, mut first, mut last) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(3));
        let started = Instant::now();
        round_start.send(started).expect("start");
        for writer in &mut writers {
            writer.write_all(&MESSAGE).expect("write");
        }
        written.push(micros(started));
        let (to_first, to_last) = arrived.recv().expect("arrivals");
        first.push(to_first);
        last.push(to_last);
    }
    drop(round_start);
    let mut readers = reading.join().expect("reader");
    let mut alone = Vec::new();
    let mut buf = [0u8; MESSAGE.len()];
    for _ in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(3));
        let started = Instant::now();
        for writer in &mut writers {
            writer.write_all(&MESSAGE).expect("write");
        }
        alone.push(micros(started));
        for reader in &mut readers {
            reader.read_exact(&mut buf).expect("read");
        }
    }
    for (what, values) in [
        ("every socket written, nobody waiting to read", &mut alone),
        ("every socket written", &mut written),
        ("the first socket read", &mut first),
        ("the last socket read", &mut last),
    ] {
        values.sort_by(f64::total_cmp);
        println!(
            "loopback_floor/{sockets}_sockets: {what}: p50 {:.0} µs, p99 {:.0} µs",
            values[values.len() / 2],
            values[values.len() * 99 / 100]
        );
    }
}
