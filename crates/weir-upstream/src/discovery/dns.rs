//! DNS discovery through hickory-resolver: the A and AAAA records of `name` (each address at
//! the name's port), or the SRV records of `srv` (RFC 2782: each target resolved to its
//! addresses, port, weight and priority from the record). Looked up again when the answer's
//! TTL runs out, clamped to `min_ttl`..`max_ttl`. The resolver's cache is off: the TTL
//! schedule here is the cache.
//!
//! NXDOMAIN, SERVFAIL and timeouts are failures (the last good set stays); an answer with
//! no records of the type (NODATA) is an empty answer, which empties the set only after
//! `empty_grace`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use tokio_util::sync::CancellationToken;
use weir_config::DnsDiscovery;

use super::{earliest, wait, Feed};
use crate::member::{Source, Wanted};

/// What a lookup found: the endpoints and until when the answer is valid.
struct Answer {
    endpoints: Vec<Wanted>,
    valid_until: Instant,
}

/// A lookup that failed, by reason.
struct Failure {
    reason: &'static str,
    message: String,
}

impl From<NetError> for Failure {
    fn from(e: NetError) -> Self {
        let reason = if e.is_nx_domain() {
            "nxdomain"
        } else if matches!(e, NetError::Timeout) {
            "timeout"
        } else {
            "lookup"
        };
        Self {
            reason,
            message: e.to_string(),
        }
    }
}

pub(super) async fn run(cfg: DnsDiscovery, mut feed: Feed, token: CancellationToken) {
    let resolver = match resolver(&cfg) {
        Ok(r) => r,
        Err(e) => {
            feed.failure("resolver", e);
            return;
        }
    };
    let (min, max) = (cfg.min_ttl.get(), cfg.max_ttl.get().max(cfg.min_ttl.get()));
    let retry = min.clamp(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        if !feed.alive() {
            return;
        }
        let started = Instant::now();
        let next = match tokio::time::timeout(cfg.timeout.get(), lookup(&resolver, &cfg)).await {
            Ok(Ok(answer)) => {
                let ttl = answer.valid_until.saturating_duration_since(started);
                let recheck = feed.answer(answer.endpoints);
                earliest(Some(started + ttl.clamp(min, max)), recheck)
            }
            Ok(Err(Failure { reason, message })) => {
                feed.failure(reason, message);
                Some(started + retry)
            }
            Err(_) => {
                feed.failure(
                    "timeout",
                    format!("no answer within {:?}", cfg.timeout.get()),
                );
                Some(started + retry)
            }
        };
        if !wait(&token, next).await {
            return;
        }
    }
}

/// The configured resolver, or the system's; with no cache of its own.
fn resolver(cfg: &DnsDiscovery) -> Result<TokioResolver, String> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = match &cfg.resolver {
        Some(addr) => {
            let addr = parse_resolver(addr)?;
            let mut server = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut server.connections {
                c.port = addr.port();
            }
            let config = ResolverConfig::from_parts(None, Vec::new(), vec![server]);
            TokioResolver::builder_with_config(config, provider)
        }
        None => TokioResolver::builder(provider).map_err(|e| e.to_string())?,
    };
    let opts = builder.options_mut();
    opts.cache_size = 0;
    opts.timeout = cfg.timeout.get();
    opts.attempts = 1;
    builder.build().map_err(|e| e.to_string())
}

/// `IP:PORT` or `IP` (port 53).
pub(crate) fn parse_resolver(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("resolver `{s}` is not IP or IP:PORT"))
}

async fn lookup(resolver: &TokioResolver, cfg: &DnsDiscovery) -> Result<Answer, Failure> {
    if let Some(srv) = &cfg.srv {
        return lookup_srv(resolver, srv).await;
    }
    let Some(name) = &cfg.name else {
        return Ok(Answer {
            endpoints: Vec::new(),
            valid_until: Instant::now() + Duration::from_secs(3600),
        });
    };
    let (host, port) = split_host_port(name).ok_or_else(|| Failure {
        reason: "invalid",
        message: format!("`{name}` is not HOST:PORT"),
    })?;
    let (addrs, valid_until) = addresses(resolver, host).await?;
    Ok(Answer {
        endpoints: addrs.into_iter().map(|ip| wanted(ip, port, 1, 0)).collect(),
        valid_until,
    })
}

async fn lookup_srv(resolver: &TokioResolver, name: &str) -> Result<Answer, Failure> {
    let found = match resolver.srv_lookup(name).await {
        Ok(found) => found,
        Err(e) if e.is_no_records_found() && !e.is_nx_domain() => return Ok(empty()),
        Err(e) => return Err(e.into()),
    };
    let mut valid_until = found.valid_until();
    let mut endpoints = Vec::new();
    for record in found.answers() {
        let RData::SRV(srv) = &record.data else {
            continue;
        };
        let target = srv.target.to_utf8();
        let target = target.trim_end_matches('.');
        // A target of "." means the service is decidedly not available here.
        if target.is_empty() {
            continue;
        }
        let ips = match target.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => {
                let (ips, until) = addresses(resolver, &format!("{target}.")).await?;
                valid_until = valid_until.min(until);
                ips
            }
        };
        for ip in ips {
            // Weight 0 means "no preference" (RFC 2782); it still needs a share.
            endpoints.push(wanted(
                ip,
                srv.port,
                u32::from(srv.weight).max(1),
                srv.priority,
            ));
        }
    }
    Ok(Answer {
        endpoints,
        valid_until,
    })
}

/// A host's addresses (A and AAAA); NODATA is an empty list.
async fn addresses(
    resolver: &TokioResolver,
    host: &str,
) -> Result<(Vec<IpAddr>, Instant), Failure> {
    match resolver.lookup_ip(host).await {
        Ok(found) => Ok((found.iter().collect(), found.valid_until())),
        Err(e) if e.is_no_records_found() && !e.is_nx_domain() => {
            Ok((Vec::new(), empty().valid_until))
        }
        Err(e) => Err(e.into()),
    }
}

/// No records: looked at again after `min_ttl`.
fn empty() -> Answer {
    Answer {
        endpoints: Vec::new(),
        valid_until: Instant::now(),
    }
}

fn wanted(ip: IpAddr, port: u16, weight: u32, priority: u16) -> Wanted {
    Wanted {
        address: SocketAddr::new(ip, port).to_string(),
        weight: weight.min(1000),
        priority,
        source: Source::Dns,
    }
}

/// `host:port` (host may be a bracketed IPv6 literal).
pub(crate) fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host, port.parse().ok()?)).filter(|(h, _)| !h.is_empty())
}
