//! A small authoritative DNS server of our own on a free loopback port, for the DNS discovery
//! tests: the test changes its records while the gateway runs and counts how often each name was
//! asked, so a test can wait on "the gateway asked again" instead of sleeping.
//!
//! It answers A, AAAA and SRV from a table (each record set with its own TTL), NODATA for a known
//! name without records of the asked type, CNAME chains (the alias, then the target's records),
//! and NXDOMAIN for unknown names. SRV answers carry the
//! targets' A/AAAA records in the additional section when the table has them, once per SRV record
//! naming the target (a target named twice has its addresses there twice, as some servers send
//! them). It listens on UDP
//! and on TCP with the same port number: a UDP answer longer than 512 bytes is sent truncated
//! (header and question, TC set), as RFC 1035 says, so the client asks again over TCP.
//!
//! The wire format is written here by hand (header, one question, answer and additional
//! records; names are never compressed in what it sends, and compressed names in a question are
//! read defensively). The server stops on drop.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;
const RCODE_FORMERR: u8 = 1;
const RCODE_NXDOMAIN: u8 = 3;
/// The largest UDP answer without EDNS (RFC 1035 §4.2.1); longer ones are sent truncated.
const UDP_LIMIT: usize = 512;
/// How often the server threads look at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// One SRV record: `(priority, weight, port, target)`.
pub type Srv = (u16, u16, u16, String);

#[derive(Default, Clone)]
struct Entry {
    a: Option<(Vec<Ipv4Addr>, u32)>,
    aaaa: Option<(Vec<Ipv6Addr>, u32)>,
    srv: Option<(Vec<Srv>, u32)>,
    cname: Option<(String, u32)>,
}

#[derive(Default)]
struct Shared {
    table: Mutex<HashMap<String, Entry>>,
    queries: Mutex<HashMap<(String, u16), u64>>,
    tcp_queries: AtomicU64,
}

/// The running server; stops on drop.
pub struct DnsServer {
    /// Where it listens (UDP and TCP on this loopback address and port).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// Starts a server with an empty table on a free loopback port (UDP and TCP).
    pub fn start() -> DnsServer {
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().expect("local address of a bound socket");
        udp.set_read_timeout(Some(POLL))
            .expect("set a read timeout");
        tcp.set_nonblocking(true).expect("non-blocking listener");
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let threads = vec![
            {
                let (shared, stop) = (shared.clone(), stop.clone());
                std::thread::spawn(move || serve_udp(udp, &shared, &stop))
            },
            {
                let (shared, stop) = (shared.clone(), stop.clone());
                std::thread::spawn(move || serve_tcp(tcp, &shared, &stop))
            },
        ];
        DnsServer {
            addr,
            shared,
            stop,
            threads,
        }
    }

    /// `name`'s A records are now `addrs` with `ttl` seconds (other record types stay).
    pub fn set_a(&self, name: &str, addrs: Vec<Ipv4Addr>, ttl: u32) {
        self.edit(name, |e| e.a = Some((addrs, ttl)));
    }

    /// `name`'s AAAA records are now `addrs` with `ttl` seconds.
    pub fn set_aaaa(&self, name: &str, addrs: Vec<Ipv6Addr>, ttl: u32) {
        self.edit(name, |e| e.aaaa = Some((addrs, ttl)));
    }

    /// `name`'s SRV records are now `records` (`(priority, weight, port, target)`) with `ttl`.
    pub fn set_srv(&self, name: &str, records: Vec<Srv>, ttl: u32) {
        self.edit(name, |e| e.srv = Some((records, ttl)));
    }

    /// `name` is an alias of `target` (its own records of other types are not answered while it
    /// is); answers carry the CNAME record and then `target`'s records of the asked type.
    pub fn set_cname(&self, name: &str, target: &str, ttl: u32) {
        self.edit(name, |e| e.cname = Some((target.to_string(), ttl)));
    }

    /// Forgets `name`: it answers NXDOMAIN from now on.
    pub fn remove(&self, name: &str) {
        self.shared
            .table
            .lock()
            .expect("dns table lock")
            .remove(&key(name));
    }

    /// How many queries (any type, UDP and TCP) have asked for `name`.
    pub fn queries(&self, name: &str) -> u64 {
        let name = key(name);
        let counts = self.shared.queries.lock().expect("dns counter lock");
        counts
            .iter()
            .filter(|((n, _), _)| *n == name)
            .map(|(_, c)| *c)
            .sum()
    }

    /// How many queries of type `qtype` (1 = A, 28 = AAAA, 33 = SRV) have asked for `name`.
    pub fn queries_of(&self, name: &str, qtype: u16) -> u64 {
        let counts = self.shared.queries.lock().expect("dns counter lock");
        counts.get(&(key(name), qtype)).copied().unwrap_or(0)
    }

    /// How many queries came over TCP (after a truncated UDP answer, for instance).
    pub fn tcp_queries(&self) -> u64 {
        self.shared.tcp_queries.load(Ordering::Relaxed)
    }

    /// Stops answering (both threads end; the ports are released).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    fn edit(&self, name: &str, f: impl FnOnce(&mut Entry)) {
        let mut table = self.shared.table.lock().expect("dns table lock");
        f(table.entry(key(name)).or_default());
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Names are compared without case and without the root's trailing dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A UDP socket and a TCP listener on the same free loopback port.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback UDP port");
        let addr = udp.local_addr().expect("local address of a bound socket");
        if let Ok(tcp) = TcpListener::bind(addr) {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

fn serve_udp(sock: UdpSocket, shared: &Shared, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if let Some(mut reply) = respond(&buf[..n], shared) {
            if reply.len() > UDP_LIMIT {
                reply = truncated(&buf[..n]).unwrap_or(reply);
            }
            let _ = sock.send_to(&reply, peer);
        }
    }
}

fn serve_tcp(listener: TcpListener, shared: &Arc<Shared>, stop: &Arc<AtomicBool>) {
    let mut conns = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, _)) => {
                let (shared, stop) = (shared.clone(), stop.clone());
                conns.push(std::thread::spawn(move || serve_conn(conn, &shared, &stop)));
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

/// One TCP connection: length-prefixed queries until the client closes or the server stops.
fn serve_conn(mut conn: TcpStream, shared: &Shared, stop: &AtomicBool) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(POLL));
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match conn.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        while pending.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([pending[0], pending[1]]));
            if pending.len() < 2 + len {
                break;
            }
            let query: Vec<u8> = pending.drain(..2 + len).skip(2).collect();
            shared.tcp_queries.fetch_add(1, Ordering::Relaxed);
            if let Some(reply) = respond(&query, shared) {
                let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&reply);
                if conn.write_all(&framed).is_err() {
                    return;
                }
            }
        }
    }
}

/// The parts of a query the server uses.
struct Question<'a> {
    id: [u8; 2],
    /// The opcode and RD bits of the query's flags, copied into the answer.
    flags: u8,
    name: String,
    qtype: u16,
    /// The question as the client wrote it (echoed back byte for byte).
    raw: &'a [u8],
}

/// Reads the header and the one question; `None` for what is not a query we can answer.
fn parse(msg: &[u8]) -> Option<Question<'_>> {
    if msg.len() < 12 || msg[2] & 0x80 != 0 {
        return None;
    }
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    if qdcount != 1 {
        return None;
    }
    let (labels, end) = read_name(msg, 12)?;
    let fixed = msg.get(end..end + 4)?;
    let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    Some(Question {
        id: [msg[0], msg[1]],
        flags: msg[2] & 0x79,
        name: key(&labels.join(".")),
        qtype,
        raw: &msg[12..end + 4],
    })
}

/// Reads a possibly compressed name at `at`: its labels and where the name ends in the message
/// (after the first pointer when there is one). Loops and overlong names are refused.
fn read_name(msg: &[u8], mut at: usize) -> Option<(Vec<String>, usize)> {
    let mut labels = Vec::new();
    let mut end = None;
    let mut total = 0usize;
    for _ in 0..128 {
        let len = *msg.get(at)?;
        match len & 0xC0 {
            0x00 if len == 0 => return Some((labels, end.unwrap_or(at + 1))),
            0x00 => {
                let label = msg.get(at + 1..at + 1 + usize::from(len))?;
                total += label.len() + 1;
                if total > 255 {
                    return None;
                }
                labels.push(String::from_utf8_lossy(label).into_owned());
                at += 1 + usize::from(len);
            }
            0xC0 => {
                let low = *msg.get(at + 1)?;
                end.get_or_insert(at + 2);
                at = usize::from(u16::from_be_bytes([len & 0x3F, low]));
            }
            _ => return None,
        }
    }
    None
}

/// The answer to one query message (`None`: not a query, drop it).
fn respond(msg: &[u8], shared: &Shared) -> Option<Vec<u8>> {
    let Some(q) = parse(msg) else {
        // A query we cannot read gets FORMERR when it at least has a header.
        if msg.len() >= 12 && msg[2] & 0x80 == 0 {
            return Some(header(
                [msg[0], msg[1]],
                msg[2] & 0x79,
                RCODE_FORMERR,
                [0; 4],
            ));
        }
        return None;
    };
    *shared
        .queries
        .lock()
        .expect("dns counter lock")
        .entry((q.name.clone(), q.qtype))
        .or_default() += 1;
    let table = shared.table.lock().expect("dns table lock");
    let Some(entry) = table.get(&q.name) else {
        let mut out = header(q.id, q.flags, RCODE_NXDOMAIN, [1, 0, 0, 0]);
        out.extend_from_slice(q.raw);
        return Some(out);
    };
    let (answers, additional) = records(&q.name, q.qtype, entry, &table, 0);
    let counts = [1, answers.len() as u16, 0, additional.len() as u16];
    let mut out = header(q.id, q.flags, 0, counts);
    out.extend_from_slice(q.raw);
    for r in answers.iter().chain(&additional) {
        out.extend_from_slice(r);
    }
    Some(out)
}

/// The answer and additional records for `qtype` at `name`, each encoded.
fn records(
    name: &str,
    qtype: u16,
    entry: &Entry,
    table: &HashMap<String, Entry>,
    depth: usize,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut answers = Vec::new();
    let mut additional = Vec::new();
    if let Some((target, ttl)) = &entry.cname {
        answers.push(record(name, TYPE_CNAME, *ttl, &encode_name(target)));
        // A chain is followed a few steps at most (a loop in the table ends there).
        if let Some(next) = table.get(&key(target)).filter(|_| depth < 8) {
            let (more, extra) = records(&key(target), qtype, next, table, depth + 1);
            answers.extend(more);
            additional.extend(extra);
        }
        return (answers, additional);
    }
    match qtype {
        TYPE_A | TYPE_AAAA => answers = addresses(name, qtype, entry),
        TYPE_SRV => {
            if let Some((srvs, ttl)) = &entry.srv {
                for (prio, weight, port, target) in srvs {
                    let mut rdata = Vec::new();
                    for v in [prio, weight, port] {
                        rdata.extend_from_slice(&v.to_be_bytes());
                    }
                    rdata.extend_from_slice(&encode_name(target));
                    answers.push(record(name, TYPE_SRV, *ttl, &rdata));
                    if let Some(t) = table.get(&key(target)) {
                        additional.extend(addresses(&key(target), TYPE_A, t));
                        additional.extend(addresses(&key(target), TYPE_AAAA, t));
                    }
                }
            }
        }
        _ => {}
    }
    (answers, additional)
}

/// `entry`'s A or AAAA records, encoded with owner `name`.
fn addresses(name: &str, qtype: u16, entry: &Entry) -> Vec<Vec<u8>> {
    match (qtype, &entry.a, &entry.aaaa) {
        (TYPE_A, Some((ips, ttl)), _) => ips
            .iter()
            .map(|ip| record(name, TYPE_A, *ttl, &ip.octets()))
            .collect(),
        (TYPE_AAAA, _, Some((ips, ttl))) => ips
            .iter()
            .map(|ip| record(name, TYPE_AAAA, *ttl, &ip.octets()))
            .collect(),
        _ => Vec::new(),
    }
}

/// A response header: QR and AA set, the query's opcode and RD echoed.
fn header(id: [u8; 2], flags: u8, rcode: u8, counts: [u16; 4]) -> Vec<u8> {
    let mut out = vec![id[0], id[1], 0x80 | 0x04 | flags, rcode];
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
    out
}

/// The header and question of `query`'s answer with TC set and no records.
fn truncated(query: &[u8]) -> Option<Vec<u8>> {
    let q = parse(query)?;
    let mut out = header(q.id, q.flags | 0x02, 0, [1, 0, 0, 0]);
    out.extend_from_slice(q.raw);
    Some(out)
}

fn record(name: &str, rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut out = encode_name(name);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
    out
}

/// A name as uncompressed labels (a trailing dot or none; the root is added).
fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(&encode_name(name));
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    #[test]
    fn answers_a_nodata_and_nxdomain_over_udp() {
        let dns = DnsServer::start();
        dns.set_a("api.test", vec![Ipv4Addr::new(127, 0, 0, 7)], 30);
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let ask = |name: &str, qtype: u16| {
            sock.send_to(&query(name, qtype), dns.addr).expect("send");
            let mut buf = [0u8; 1024];
            let (n, _) = sock.recv_from(&mut buf).expect("answer");
            buf[..n].to_vec()
        };
        let a = ask("API.test.", TYPE_A);
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(a[3] & 0x0F, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1, "one answer");
        assert_eq!(&a[a.len() - 4..], &[127, 0, 0, 7]);
        let nodata = ask("api.test", TYPE_AAAA);
        assert_eq!(nodata[3] & 0x0F, 0);
        assert_eq!(u16::from_be_bytes([nodata[6], nodata[7]]), 0);
        let nx = ask("other.test", TYPE_A);
        assert_eq!(nx[3] & 0x0F, RCODE_NXDOMAIN);
        assert_eq!(dns.queries("api.test"), 2);
        assert_eq!(dns.queries_of("api.test", TYPE_A), 1);
    }

    #[test]
    fn reads_compressed_question_names_and_refuses_loops() {
        // "a.b" then a pointer back to it.
        let msg = [0u8; 12]
            .iter()
            .copied()
            .chain([1, b'a', 1, b'b', 0, 0xC0, 12])
            .collect::<Vec<u8>>();
        let (labels, end) = read_name(&msg, 17).expect("pointer");
        assert_eq!(labels, ["a", "b"]);
        assert_eq!(end, 19);
        let looped = [0u8; 12]
            .iter()
            .copied()
            .chain([0xC0, 12])
            .collect::<Vec<u8>>();
        assert!(read_name(&looped, 12).is_none());
    }
}
