//! A small authoritative DNS server on UDP loopback for discovery tests: the test sets the
//! records (A, AAAA, SRV) per name, can make a name answer NXDOMAIN or not answer at all
//! (a timeout), and reads when each name was asked. It speaks the real wire format
//! (hickory-proto), so the resolver under test does exactly what it does against any server.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// What a name answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// These records (each with this TTL in seconds).
    Records(Vec<Rec>, u32),
    /// NXDOMAIN.
    NxDomain,
    /// No reply at all: the resolver times out.
    Silent,
}

/// One record.
#[derive(Debug, Clone)]
pub enum Rec {
    /// An address (A or AAAA by its family).
    Ip(IpAddr),
    /// SRV: priority, weight, port, target.
    Srv(u16, u16, u16, String),
}

#[derive(Default)]
struct Zone {
    names: HashMap<String, Answer>,
    asked: HashMap<String, Vec<Instant>>,
}

/// The running server; stops when dropped.
pub struct DnsServer {
    /// Where it listens (UDP).
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    stop: CancellationToken,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    /// Starts a server on `127.0.0.1:0` with no names (everything NXDOMAIN).
    pub async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
        let addr = socket.local_addr().expect("dns addr");
        let zone: Arc<Mutex<Zone>> = Arc::default();
        let stop = CancellationToken::new();
        let (z, s) = (zone.clone(), stop.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, from) = tokio::select! {
                    () = s.cancelled() => return,
                    r = socket.recv_from(&mut buf) => match r { Ok(r) => r, Err(_) => return },
                };
                let Some(reply) = answer(&z, &buf[..n]) else {
                    continue;
                };
                let _ = socket.send_to(&reply, from).await;
            }
        });
        Self { addr, zone, stop }
    }

    /// Sets what `name` answers.
    pub fn set(&self, name: &str, answer: Answer) {
        let mut z = self.zone.lock().unwrap_or_else(|p| p.into_inner());
        z.names.insert(key(name), answer);
    }

    /// When `name` was asked for records of `kind` (`"A"`, `"AAAA"`, `"SRV"`), in order.
    pub fn asked(&self, name: &str, kind: &str) -> Vec<Instant> {
        let z = self.zone.lock().unwrap_or_else(|p| p.into_inner());
        z.asked
            .get(&format!("{}/{kind}", key(name)))
            .cloned()
            .unwrap_or_default()
    }
}

fn answer(zone: &Mutex<Zone>, query: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let q = request.queries.first()?.clone();
    let name = key(&q.name().to_utf8());
    let found = {
        let mut z = zone.lock().unwrap_or_else(|p| p.into_inner());
        let asked = format!("{name}/{}", q.query_type());
        z.asked.entry(asked).or_default().push(Instant::now());
        z.names.get(&name).cloned()
    };
    let mut reply = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(q.clone());
    match found {
        None | Some(Answer::NxDomain) => reply.metadata.response_code = ResponseCode::NXDomain,
        Some(Answer::Silent) => return None,
        Some(Answer::Records(recs, ttl)) => {
            let owner = q.name().clone();
            for r in recs {
                let data = match (r, q.query_type()) {
                    (Rec::Ip(IpAddr::V4(ip)), RecordType::A) => RData::A(A(ip)),
                    (Rec::Ip(IpAddr::V6(ip)), RecordType::AAAA) => RData::AAAA(AAAA(ip)),
                    (Rec::Srv(p, w, port, target), RecordType::SRV) => {
                        let target =
                            Name::from_ascii(format!("{}.", target.trim_end_matches('.'))).ok()?;
                        RData::SRV(SRV::new(p, w, port, target))
                    }
                    _ => continue,
                };
                reply.add_answer(Record::from_rdata(owner.clone(), ttl, data));
            }
        }
    }
    reply.to_vec().ok()
}
