//! DNS queries per second and their latency: A queries over UDP, many in
//! flight, messages built and read with hickory-proto.
//!
//! Each thread has its own connected UDP socket and keeps its share of the
//! window in flight: every answer sends the next query at once. A query
//! with no answer for [`LOST_AFTER`] is counted lost and replaced.

use std::{
    io::ErrorKind,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use hickory_proto::{
    op::{Message, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};
use serde_json::{Value, json};

use crate::percentiles;

/// A query not answered within this is lost (an answer arriving later is
/// ignored: its id is no longer outstanding).
const LOST_AFTER: Duration = Duration::from_millis(200);

/// The A query for `name` (absolute or not; searched as given) with `id`.
pub fn query(name: &Name, id: u16) -> Result<Vec<u8>> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name.clone(), RecordType::A));
    message.to_vec().context("encoding a DNS query")
}

/// The IPv4 addresses an answer holds, or why it holds none.
pub fn addresses(answer: &Message) -> Result<Vec<Ipv4Addr>, ResponseCode> {
    if answer.metadata.response_code != ResponseCode::NoError {
        return Err(answer.metadata.response_code);
    }
    Ok(answer
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect())
}

pub fn parse_names(names: &[String]) -> Result<Vec<Name>> {
    if names.is_empty() {
        bail!("no names to query");
    }
    names
        .iter()
        .map(|name| Name::from_ascii(name).with_context(|| format!("{name:?} is not a DNS name")))
        .collect()
}

/// What one thread saw.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    /// Answers that were not NOERROR with an A record.
    failed: u64,
    last_failure: Option<String>,
    lost: u64,
}

pub fn run(
    server: SocketAddr,
    names: &[String],
    seconds: Duration,
    in_flight: usize,
    threads: usize,
) -> Result<Value> {
    let names = parse_names(names)?;
    let threads = threads.clamp(1, in_flight.max(1));
    let window = in_flight.div_ceil(threads);
    let start = Instant::now();
    let deadline = start + seconds;
    let tallies: Vec<Result<Tally>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|index| {
                let names = &names;
                scope.spawn(move || one_socket(server, names, index, window, deadline))
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a query thread panicked"))
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut total = Tally::default();
    for tally in tallies {
        let tally = tally?;
        total.latencies.extend(tally.latencies);
        total.failed += tally.failed;
        total.lost += tally.lost;
        total.last_failure = tally.last_failure.or(total.last_failure);
    }
    let answered = total.latencies.len();
    if answered == 0 {
        bail!(
            "no query to {server} was answered with an address ({} failed, last: {}; {} lost)",
            total.failed,
            total.last_failure.unwrap_or_default(),
            total.lost
        );
    }
    Ok(json!({
        "answered": answered,
        "failed": total.failed,
        "lost": total.lost,
        "seconds": elapsed,
        "per_second": answered as f64 / elapsed,
        "p50_us": percentiles::micros(&mut total.latencies, 50.0),
        "p99_us": percentiles::micros(&mut total.latencies, 99.0),
    }))
}

fn one_socket(
    server: SocketAddr,
    names: &[Name],
    index: usize,
    window: usize,
    deadline: Instant,
) -> Result<Tally> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("binding a UDP socket")?;
    socket
        .connect(server)
        .with_context(|| format!("connecting a UDP socket to {server}"))?;
    socket.set_read_timeout(Some(LOST_AFTER))?;
    // Send times by query id; `None` once answered or given up.
    let mut outstanding: Vec<Option<Instant>> = vec![None; usize::from(u16::MAX) + 1];
    let mut next_id: u16 = 0;
    // Threads start at different names, so they do not query in step.
    let mut next_name = index * names.len() / 8 % names.len();
    let mut send = |outstanding: &mut Vec<Option<Instant>>| -> Result<()> {
        let message = query(&names[next_name], next_id)?;
        next_name = (next_name + 1) % names.len();
        outstanding[usize::from(next_id)] = Some(Instant::now());
        next_id = next_id.wrapping_add(1);
        socket
            .send(&message)
            .with_context(|| format!("sending a query to {server}"))?;
        Ok(())
    };
    let mut tally = Tally::default();
    for _ in 0..window {
        send(&mut outstanding)?;
    }
    let mut buffer = [0u8; 4096];
    let mut last_sweep = Instant::now();
    while Instant::now() < deadline {
        match socket.recv(&mut buffer) {
            Ok(length) => {
                let answered = Instant::now();
                let Ok(answer) = Message::from_vec(&buffer[..length]) else {
                    tally.failed += 1;
                    tally.last_failure = Some("an undecodable answer".into());
                    continue;
                };
                let Some(sent) = outstanding[usize::from(answer.metadata.id)].take() else {
                    continue;
                };
                match addresses(&answer) {
                    Ok(found) if !found.is_empty() => tally.latencies.push(answered - sent),
                    Ok(_) => {
                        tally.failed += 1;
                        tally.last_failure = Some("NOERROR without an A record".into());
                    }
                    Err(code) => {
                        tally.failed += 1;
                        tally.last_failure = Some(code.to_string());
                    }
                }
                send(&mut outstanding)?;
            }
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(error) => {
                return Err(error).with_context(|| format!("receiving an answer from {server}"));
            }
        }
        // Queries lost on the way (a full socket buffer) would shrink the
        // window for good: give them up and send as many new ones.
        if last_sweep.elapsed() >= LOST_AFTER {
            last_sweep = Instant::now();
            let lost = give_up_older_than(&mut outstanding, last_sweep - LOST_AFTER);
            tally.lost += lost as u64;
            for _ in 0..lost {
                send(&mut outstanding)?;
            }
        }
    }
    Ok(tally)
}

/// Clears the queries sent before `cutoff`; returns how many.
fn give_up_older_than(outstanding: &mut [Option<Instant>], cutoff: Instant) -> usize {
    outstanding
        .iter_mut()
        .filter(|sent| sent.is_some_and(|sent| sent < cutoff))
        .map(|sent| *sent = None)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{Record, rdata::A};

    #[test]
    fn answers_give_their_addresses_or_their_code() {
        let name = Name::from_ascii("svc-0.default.svc.cluster.local.").unwrap();
        let request = Message::from_vec(&query(&name, 7).unwrap()).unwrap();
        assert_eq!(request.metadata.id, 7);
        assert_eq!(request.queries[0].query_type(), RecordType::A);

        let mut answer = Message::response(7, request.metadata.op_code);
        answer.add_answer(Record::from_rdata(name, 30, RData::A(A::new(10, 96, 1, 0))));
        assert_eq!(addresses(&answer), Ok(vec![Ipv4Addr::new(10, 96, 1, 0)]));
        let missing = Message::error_msg(7, request.metadata.op_code, ResponseCode::NXDomain);
        assert_eq!(addresses(&missing), Err(ResponseCode::NXDomain));
    }
}
