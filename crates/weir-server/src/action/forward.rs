//! Forward-proxy mode (egress control): a listener with `mode = "forward"` accepts CONNECT
//! tunnels and absolute-form HTTP requests, only to destinations its allow-list matches (deny
//! by default). Each decision is in the access log (`forward`: `allowed` / `denied`, with the
//! destination as `endpoint`).
//!
//! A destination name is resolved here, once, and every address it resolves to is vetted:
//! internal addresses (loopback, link-local such as cloud metadata, RFC 1918, CGNAT, ULA,
//! multicast, reserved, unspecified, and IPv4 embedded in IPv6) are refused unless
//! `forward.allow_private` contains them, and the connection goes to the vetted address only,
//! so no second lookup can be steered elsewhere (DNS rebinding).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::header::HOST;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use tokio::net::TcpStream;
use weir_config::{DestinationPattern, ForwardProxy};
use weir_core::h1_client;
use weir_core::ClientBody;
use weir_core::{ErrorKind, ProxyError, RequestBody, RequestCtx, ResponseBody, UpstreamBody};

use super::tunnel;
use crate::headers;
use crate::pipeline::outcome::Outcome;

/// A forward listener's compiled policy.
#[derive(Debug)]
pub(crate) struct ForwardPolicy {
    allow: Vec<DestinationPattern>,
    allow_private: Vec<ipnet::IpNet>,
    connect_timeout: Duration,
    tunnel_idle: Duration,
}

impl ForwardPolicy {
    pub(crate) fn new(cfg: &ForwardProxy) -> Self {
        Self {
            // Validated by `weir check`; a pattern that does not parse allows nothing.
            allow: cfg
                .allow
                .iter()
                .filter_map(|p| weir_config::parse_destination_pattern(p).ok())
                .collect(),
            allow_private: cfg.allow_private.iter().map(|c| c.0).collect(),
            connect_timeout: cfg.connect_timeout.get(),
            tunnel_idle: cfg.tunnel_idle.get(),
        }
    }

    fn allows(&self, host: &str, port: u16) -> bool {
        self.allow.iter().any(|p| p.matches(host, port))
    }

    /// Whether a resolved address may be connected to.
    fn admits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        !is_internal(ip) || self.allow_private.iter().any(|n| n.contains(&ip))
    }

    /// Resolves `host` once and keeps the addresses this policy admits, in resolver order.
    /// `Ok(empty)` means the name resolved only to refused addresses.
    async fn vetted(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ProxyError> {
        let resolved: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                tokio::time::timeout(self.connect_timeout, tokio::net::lookup_host((host, port)))
                    .await
                    .map_err(|_| ProxyError::new(ErrorKind::UpstreamTimeout))?
                    .map_err(|e| ProxyError::new(ErrorKind::UpstreamConnect).with_source(e))?
                    .collect()
            }
        };
        Ok(resolved
            .into_iter()
            .filter(|a| self.admits(a.ip()))
            .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
            .collect())
    }
}

/// Addresses an egress proxy must not reach by default: everything that is not a global
/// unicast address (RFC 6890 special-purpose registries), with IPv4 embedded in IPv6
/// (mapped, compatible, NAT64, 6to4) judged by the IPv4 address it carries.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || a == 0 // "this network" (0.0.0.0/8)
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254.0.0/16: cloud metadata services
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || ip.is_multicast()
        || a >= 240 // reserved and broadcast
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    let embedded = |hi: usize| Ipv4Addr::from(((seg[hi] as u32) << 16) | seg[hi + 1] as u32);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_internal_v4(v4);
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || (seg[0] & 0xffc0) == 0xfe80 // link-local
        || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (seg[0] & 0xfe00) == 0xfc00 // unique local
        || ip.is_multicast()
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        || (seg[..6] == [0; 6] && is_internal_v4(embedded(6))) // IPv4-compatible (::a.b.c.d)
        || (seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && is_internal_v4(embedded(6))) // NAT64
        || (seg[0] == 0x2002 && is_internal_v4(embedded(1))) // 6to4
}

/// Serves one request on a forward listener.
pub(crate) async fn handle(
    mut req: Request<ClientBody>,
    ctx: &mut RequestCtx,
    policy: &Arc<ForwardPolicy>,
    max_body: u64,
) -> Result<Outcome, ProxyError> {
    let connect = req.method() == Method::CONNECT;
    let (host, port) = destination(req.uri(), connect)?;
    ctx.upstream = Some(Arc::from("forward"));
    ctx.endpoint = Some(Arc::from(format!("{host}:{port}")));
    if !policy.allows(&host, port) {
        ctx.forward = Some(weir_core::ForwardDecision::Denied);
        return Err(ProxyError::new(ErrorKind::ForwardDenied));
    }
    let addrs = policy.vetted(&host, port).await?;
    if addrs.is_empty() {
        ctx.forward = Some(weir_core::ForwardDecision::Denied);
        return Err(ProxyError::new(ErrorKind::ForwardDenied));
    }
    ctx.forward = Some(weir_core::ForwardDecision::Allowed);
    let tcp = tokio::time::timeout(policy.connect_timeout, TcpStream::connect(&addrs[..]))
        .await
        .map_err(|_| ProxyError::new(ErrorKind::UpstreamTimeout))?
        .map_err(|e| ProxyError::new(ErrorKind::UpstreamConnect).with_source(e))?;
    let _ = tcp.set_nodelay(true);

    if connect {
        let idle = policy.tunnel_idle;
        let h2 = req
            .extensions()
            .get::<crate::edge::h2_tunnel::ConnectStream>()
            .cloned();
        if let Some(stream) = h2 {
            // HTTP/2: the stream becomes the tunnel once our 200 is sent on it.
            let ClientBody::Http2(body) = req.into_body() else {
                return Err(ProxyError::new(ErrorKind::Internal));
            };
            tokio::spawn(async move {
                match stream.open(body).await {
                    Some(client) => tunnel::pump(client, tcp, idle).await,
                    None => tracing::debug!("CONNECT stream closed before the tunnel opened"),
                }
            });
        } else {
            // HTTP/1.1: once the connection has sent our 200 and handed itself over.
            let Some(upgrade) = req
                .extensions_mut()
                .remove::<crate::edge::h1::ClientUpgrade>()
            else {
                return Err(ProxyError::new(ErrorKind::Internal));
            };
            tokio::spawn(async move {
                match upgrade.connection().await {
                    Some(client) => tunnel::pump(client, tcp, idle).await,
                    None => tracing::debug!("CONNECT tunnel not handed over"),
                }
            });
        }
        let mut resp = Response::new(ResponseBody::Empty);
        *resp.status_mut() = StatusCode::OK;
        return Ok(Outcome::from(resp));
    }

    // Absolute-form request: one connection, origin-form target, hop-by-hop headers removed.
    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    let authority = if port == 80 {
        host.clone()
    } else {
        format!("{host}:{port}")
    };
    if let Ok(v) = HeaderValue::from_str(&authority) {
        parts.headers.insert(HOST, v);
    }
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    parts.version = http::Version::HTTP_11;
    let body = RequestBody::new(body, max_body, ctx.body.clone());
    // One request on its own connection, closed when the response has been read.
    let conn = h1_client::Conn::new(h1_client::Io::Tcp(tcp));
    let resp = h1_client::send(conn, Request::from_parts(parts, body), None, None)
        .await
        .map_err(|e| ProxyError::new(ErrorKind::UpstreamProtocol).with_source(e.error))?;
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::add_via(&mut parts.headers, parts.version);
    Ok(Outcome::from(Response::from_parts(
        parts,
        ResponseBody::Upstream(UpstreamBody::Http1(body)),
    )))
}

/// Host (lowercase, IPv6 without brackets) and port of a CONNECT or absolute-form target.
fn destination(uri: &Uri, connect: bool) -> Result<(String, u16), ProxyError> {
    let bad = || ProxyError::new(ErrorKind::BadRequest);
    let authority = uri.authority().ok_or_else(bad)?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = match (authority.port_u16(), connect) {
        (Some(p), _) => p,
        // CONNECT needs an explicit port (RFC 9110 §9.3.6).
        (None, true) => return Err(bad()),
        (None, false) if uri.scheme_str() == Some("http") => 80,
        // https in absolute form: clients use CONNECT for that.
        (None, false) => return Err(bad()),
    };
    if !connect && uri.scheme_str() != Some("http") {
        return Err(bad());
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised_in_every_spelling() {
        let internal = [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.100.100.200",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "fe80::1",
            "fd00::1",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ];
        for a in internal {
            assert!(is_internal(a.parse().expect("ip")), "{a} is internal");
        }
        let public = [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ];
        for a in public {
            assert!(!is_internal(a.parse().expect("ip")), "{a} is public");
        }
    }

    #[test]
    fn allow_private_admits_only_what_it_contains() {
        let cfg = ForwardProxy {
            allow: vec!["*:*".into()],
            allow_private: vec!["10.0.0.0/8".parse().expect("cidr")],
            connect_timeout: weir_config::Duration::from_secs(1),
            tunnel_idle: weir_config::Duration::from_secs(1),
        };
        let p = ForwardPolicy::new(&cfg);
        assert!(p.admits("10.9.9.9".parse().expect("ip")));
        assert!(p.admits("::ffff:10.9.9.9".parse().expect("ip")));
        assert!(!p.admits("127.0.0.1".parse().expect("ip")));
        assert!(!p.admits("192.168.0.1".parse().expect("ip")));
        assert!(p.admits("8.8.8.8".parse().expect("ip")));
    }
}
