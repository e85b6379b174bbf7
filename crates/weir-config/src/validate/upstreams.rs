//! Upstreams: endpoints, protocol and TLS, balancers, health checks, breakers and retries.

use super::checks::{positive, unique};
use super::listeners::check_tls_files;
use crate::diagnostic::{Diagnostic, KeyPath};
use crate::schema::{Balance, Config, HashKey, HashTable, Upstream};

pub(super) fn check_upstreams<'a>(config: &'a Config, out: &mut Vec<Diagnostic>) -> Vec<&'a str> {
    let names = unique(
        "upstreams",
        config.upstreams.iter().map(|u| u.name.as_str()),
        out,
    );
    for (i, u) in config.upstreams.iter().enumerate() {
        let path = KeyPath::root("upstreams").index(i);
        for (j, ep) in u.endpoints.iter().enumerate() {
            let at = path.key("endpoints").index(j);
            if let Err(msg) = check_endpoint(&ep.address) {
                out.push(Diagnostic::at(at.clone(), msg).help(
                    "write HOST:PORT, e.g. \"10.0.0.5:8080\", \"[::1]:8080\" or \"api.internal:80\"",
                ));
            }
            if !(1..=1000).contains(&ep.weight) {
                out.push(Diagnostic::at(
                    at.key("weight"),
                    format!("must be between 1 and 1000, found {}", ep.weight),
                ));
            }
        }
        if let Some(d) = &u.discovery {
            super::discovery::check_discovery(d, &path.key("discovery"), out);
        }
        check_upstream_policies(u, &path, out);
        check_upstream_tls(u, &path, out);
        if let Some(h) = &u.host_header {
            if http::HeaderValue::from_str(h).is_err() || h.is_empty() {
                out.push(Diagnostic::at(
                    path.key("host_header"),
                    format!("`{h}` is not a valid Host header value"),
                ));
            }
        }
        let t = &u.timeouts;
        for (key, d) in [
            ("connect", t.connect),
            ("response_header", t.response_header),
        ] {
            if d.is_zero() {
                out.push(Diagnostic::at(
                    path.key("timeouts").key(key),
                    "must be greater than zero",
                ));
            }
        }
    }
    names
}

/// Upstream protocol and TLS settings agree, and their files load.
pub(super) fn check_upstream_tls(u: &Upstream, path: &KeyPath, out: &mut Vec<Diagnostic>) {
    use crate::schema::UpstreamProtocol;
    match (u.protocol, &u.tls) {
        (UpstreamProtocol::H2, None) => out.push(
            Diagnostic::at(path.key("protocol"), "`h2` needs `tls`")
                .help("for HTTP/2 without TLS use protocol = \"h2c\"; or add tls = {}"),
        ),
        (UpstreamProtocol::H2c, Some(_)) => out.push(
            Diagnostic::at(
                path.key("protocol"),
                "`h2c` is cleartext and cannot use `tls`",
            )
            .help("use protocol = \"h2\" for HTTP/2 over TLS"),
        ),
        _ => {}
    }
    if let Some(tls) = &u.tls {
        check_tls_files(tls, &path.key("tls"), out);
    }
}

/// Balancer, health, breaker and retry settings of one upstream.
pub(super) fn check_upstream_policies(u: &Upstream, path: &KeyPath, out: &mut Vec<Diagnostic>) {
    let hashing = u.balance == Balance::ConsistentHash;
    if !hashing && (u.hash != HashTable::default() || u.hash_key != HashKey::default()) {
        let key = if u.hash == HashTable::default() {
            "hash_key"
        } else {
            "hash"
        };
        out.push(
            Diagnostic::at(
                path.key(key),
                "only used by `balance = \"consistent_hash\"`",
            )
            .help("set balance = \"consistent_hash\", or remove this key"),
        );
    }
    if let HashKey::Header(name) = &u.hash_key {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            out.push(Diagnostic::at(
                path.key("hash_key"),
                format!("`{name}` is not a valid header name"),
            ));
        }
    }
    let mut percent = |key: KeyPath, v: u8| {
        if v > 100 {
            out.push(Diagnostic::at(
                key,
                format!("must be a percentage 0-100, found {v}"),
            ));
        }
    };
    percent(path.key("panic_threshold"), u.panic_threshold);
    percent(
        path.key("health")
            .key("passive")
            .key("max_ejection_percent"),
        u.health.passive.max_ejection_percent,
    );
    if let Some(b) = &u.circuit_breaker {
        percent(
            path.key("circuit_breaker").key("failure_rate"),
            b.failure_rate,
        );
    }
    if let Some(a) = &u.health.active {
        let at = path.key("health").key("active");
        positive(out, at.key("interval"), a.interval.is_zero());
        positive(out, at.key("timeout"), a.timeout.is_zero());
        positive(out, at.key("healthy_threshold"), a.healthy_threshold == 0);
        positive(
            out,
            at.key("unhealthy_threshold"),
            a.unhealthy_threshold == 0,
        );
        positive(out, at.key("expect_status"), a.expect_status.is_empty());
        if http::Method::from_bytes(a.method.as_bytes()).is_err() {
            out.push(Diagnostic::at(
                at.key("method"),
                format!("`{}` is not an HTTP method", a.method),
            ));
        }
        if !a.path.starts_with('/') || a.path.parse::<http::uri::PathAndQuery>().is_err() {
            out.push(
                Diagnostic::at(
                    at.key("path"),
                    format!("`{}` is not a request path", a.path),
                )
                .help("write a path starting with `/`, e.g. \"/healthz\""),
            );
        }
        if let Some(h) = &a.host {
            if h.is_empty() || http::HeaderValue::from_str(h).is_err() {
                out.push(Diagnostic::at(
                    at.key("host"),
                    format!("`{h}` is not a valid Host header value"),
                ));
            }
        }
    }
    let passive = &u.health.passive;
    if passive.consecutive_5xx > 0 || passive.consecutive_failures > 0 {
        let at = path.key("health").key("passive");
        positive(
            out,
            at.key("base_ejection_time"),
            passive.base_ejection_time.is_zero(),
        );
        if passive.max_ejection_time < passive.base_ejection_time {
            out.push(Diagnostic::at(
                at.key("max_ejection_time"),
                format!(
                    "must be at least base_ejection_time ({})",
                    passive.base_ejection_time
                ),
            ));
        }
    }
    if let Some(b) = &u.circuit_breaker {
        let at = path.key("circuit_breaker");
        positive(out, at.key("window"), b.window.is_zero());
        positive(out, at.key("open_for"), b.open_for.is_zero());
        positive(out, at.key("half_open_requests"), b.half_open_requests == 0);
        positive(out, at.key("failure_rate"), b.failure_rate == 0);
    }
    if u.queue.size > 0 {
        positive(
            out,
            path.key("queue").key("timeout"),
            u.queue.timeout.is_zero(),
        );
        if u.max_in_flight == 0 {
            out.push(
                Diagnostic::at(
                    path.key("queue").key("size"),
                    "a queue needs `max_in_flight`",
                )
                .help("requests queue only when max_in_flight requests are already in flight"),
            );
        }
    }
    let r = &u.retry;
    let at = path.key("retry");
    positive(
        out,
        at.key("budget").key("window"),
        r.budget.window.is_zero(),
    );
    if r.backoff.max < r.backoff.base {
        out.push(Diagnostic::at(
            at.key("backoff").key("max"),
            format!("must be at least backoff.base ({})", r.backoff.base),
        ));
    }
    if let Some(s) = &u.sticky {
        let at = path.key("sticky");
        if s.cookie.is_empty()
            || !s
                .cookie
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            out.push(Diagnostic::at(
                at.key("cookie"),
                format!("`{}` is not a valid cookie name", s.cookie),
            ));
        }
        if s.secret.as_ref().is_some_and(|k| k.len() < 16) {
            out.push(
                Diagnostic::at(at.key("secret"), "must be at least 16 bytes")
                    .help("a short key lets clients forge cookies that pick a backend"),
            );
        }
        if hashing || u.balance == Balance::IpHash {
            out.push(Diagnostic::at(
                at.clone(),
                "sticky sessions do not combine with hashing balancers",
            ).help("hashing already sends a key to the same endpoint; remove `sticky` or pick another balancer"));
        }
    }
}

/// An endpoint is `host:port` with a valid host and a port in 1..=65535.
pub(super) fn check_endpoint(ep: &str) -> Result<(), String> {
    if ep.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = || format!("invalid endpoint `{ep}`");
    let (host, port) = ep
        .rsplit_once(':')
        .ok_or_else(|| format!("{}: missing :PORT", bad()))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(format!("{}: `{port}` is not a port number", bad())),
    }
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if host_ok {
        Ok(())
    } else {
        Err(format!(
            "{}: `{host}` is not a host name or IP address",
            bad()
        ))
    }
}
