//! Semantic checks the schema alone cannot express: cross-references, uniqueness, value
//! ranges, and anything that must compile (regexes, header names, host patterns).

use std::collections::{HashMap, HashSet};

use crate::diagnostic::{Diagnostic, KeyPath};
use crate::schema::{Balance, Config, HashKey, HashTable, Predicate, Route, RouteMatch, Upstream};

/// hyper refuses read buffers smaller than this; it is also a sane floor for request heads.
pub const MIN_HEADER_SIZE: u64 = 8 * 1024;

/// Every problem in `config`, in a stable order (by section, then position).
pub fn validate(config: &Config) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if config.workers == Some(0) {
        out.push(Diagnostic::at(
            KeyPath::root("workers"),
            "must be at least 1",
        ));
    }
    let limits = &config.server;
    if limits.max_request_header_size.bytes() < MIN_HEADER_SIZE {
        out.push(
            Diagnostic::at(
                KeyPath::root("server").key("max_request_header_size"),
                format!("must be at least 8KiB, found {}", limits.max_request_header_size),
            )
            .help("request heads of browsers and API clients routinely exceed 4KiB; 32KiB is the default"),
        );
    }
    if limits.max_request_headers == 0 {
        out.push(Diagnostic::at(
            KeyPath::root("server").key("max_request_headers"),
            "must be at least 1",
        ));
    }
    if limits.max_connections == 0 {
        out.push(Diagnostic::at(
            KeyPath::root("server").key("max_connections"),
            "must be at least 1",
        ));
    }
    if let Some(admin) = &config.admin {
        let at = KeyPath::root("admin");
        match &admin.token {
            None if !admin.bind.0.ip().is_loopback() => out.push(
                Diagnostic::at(
                    at.key("bind"),
                    format!(
                        "the admin API on non-loopback {} needs a token",
                        admin.bind.0
                    ),
                )
                .help("add token = \"…\" (at least 16 characters), or bind to 127.0.0.1"),
            ),
            Some(t) if t.expose().len() < 16 => out.push(Diagnostic::at(
                at.key("token"),
                "must be at least 16 characters",
            )),
            _ => {}
        }
        if admin.max_connections == 0 {
            out.push(Diagnostic::at(
                at.key("max_connections"),
                "must be at least 1",
            ));
        }
    }
    check_observability(config, &mut out);
    let listener_names = check_listeners(config, &mut out);
    let upstream_names = check_upstreams(config, &mut out);
    let policy_names = crate::validate_policy::check_policies(config, &mut out);
    check_route_options(config, &mut out);
    check_routes(config, &listener_names, &upstream_names, &mut out);
    check_route_policies(config, &policy_names, &mut out);
    out
}

fn check_route_policies(config: &Config, policies: &[&str], out: &mut Vec<Diagnostic>) {
    for (i, route) in config.routes.iter().enumerate() {
        for (j, name) in route.policies.iter().enumerate() {
            if !policies.contains(&name.as_str()) {
                out.push(
                    Diagnostic::at(
                        KeyPath::root("routes").index(i).key("policies").index(j),
                        format!("unknown policy `{name}`"),
                    )
                    .suggest(name, policies.iter().copied()),
                );
            }
        }
    }
}

fn check_observability(config: &Config, out: &mut Vec<Diagnostic>) {
    let format = &config.access_log.format;
    if format != "json" {
        if let Err((at, message)) = crate::log_format::parse_log_format(format) {
            out.push(
                Diagnostic::at(
                    KeyPath::root("access_log").key("format"),
                    format!("at character {}: {message}", at + 1),
                )
                .help("\"json\", or a template such as \"$client_ip $method $path $status $duration_ms\""),
            );
        }
    }
    if let Some(t) = &config.tracing {
        let at = KeyPath::root("tracing");
        let https = t.otlp_endpoint.starts_with("https://");
        let uri_ok = t
            .otlp_endpoint
            .parse::<http::Uri>()
            .is_ok_and(|u| u.authority().is_some());
        if !(https || t.otlp_endpoint.starts_with("http://")) || !uri_ok {
            out.push(
                Diagnostic::at(
                    at.key("otlp_endpoint"),
                    "must be an http:// or https:// URL",
                )
                .help("the OTLP/gRPC port of a collector, e.g. \"http://127.0.0.1:4317\""),
            );
        }
        if let Some(tls) = &t.otlp_tls {
            let tls_at = at.key("otlp_tls");
            if !https {
                out.push(
                    Diagnostic::at(
                        tls_at.clone(),
                        "TLS settings need an https:// `otlp_endpoint`",
                    )
                    .help("use an https:// endpoint, or remove `otlp_tls`"),
                );
            }
            if tls.insecure_skip_verify {
                out.push(Diagnostic::at(
                    tls_at.key("insecure_skip_verify"),
                    "not supported for the OTLP exporter: give the collector's CA in `ca`",
                ));
            }
            check_tls_files(tls, &tls_at, out);
        }
        for (name, value) in &t.otlp_headers {
            let lower = name.to_ascii_lowercase() == *name;
            if !lower
                || name.ends_with("-bin")
                || http::HeaderName::from_bytes(name.as_bytes()).is_err()
            {
                out.push(Diagnostic::at(
                    at.key("otlp_headers").key(name),
                    format!("`{name}` is not a lowercase ASCII gRPC metadata name"),
                ));
            } else if http::HeaderValue::from_str(value.expose()).is_err() {
                out.push(Diagnostic::at(
                    at.key("otlp_headers").key(name),
                    "the value is not a valid header value",
                ));
            }
        }
        if !(0.0..=1.0).contains(&t.sampling_ratio) {
            out.push(Diagnostic::at(
                at.key("sampling_ratio"),
                format!("must be between 0.0 and 1.0, found {}", t.sampling_ratio),
            ));
        }
        for (key, n) in [("batch_size", t.batch_size), ("max_queue", t.max_queue)] {
            if n == 0 {
                out.push(Diagnostic::at(at.key(key), "must be at least 1"));
            }
        }
    }
}

pub(crate) fn unique<'a>(
    section: &str,
    names: impl Iterator<Item = &'a str>,
    out: &mut Vec<Diagnostic>,
) -> Vec<&'a str> {
    let mut seen = HashMap::new();
    let mut all = Vec::new();
    for (i, name) in names.enumerate() {
        let path = KeyPath::root(section).index(i).key("name");
        if name.is_empty() {
            out.push(Diagnostic::at(path, "must not be empty"));
        } else if let Some(first) = seen.insert(name, i) {
            out.push(
                Diagnostic::at(path, format!("duplicate name `{name}`")).help(format!(
                    "{section}[{first}] already uses this name; names must be unique"
                )),
            );
        }
        all.push(name);
    }
    all
}

fn check_listeners<'a>(config: &'a Config, out: &mut Vec<Diagnostic>) -> Vec<&'a str> {
    if config.listeners.is_empty() {
        out.push(
            Diagnostic::at(
                KeyPath::root("listeners"),
                "at least one listener is required",
            )
            .help(
                "add one:\n    [[listeners]]\n    name = \"main\"\n    bind = \"127.0.0.1:8080\"",
            ),
        );
    }
    let names = unique(
        "listeners",
        config.listeners.iter().map(|l| l.name.as_str()),
        out,
    );
    let mut binds = HashMap::new();
    for (i, l) in config.listeners.iter().enumerate() {
        // Port 0 asks the OS for a free port, so several listeners may use it.
        let duplicate = if l.bind.0.port() == 0 {
            None
        } else {
            binds.insert(l.bind.0, i)
        };
        if let Some(first) = duplicate {
            out.push(
                Diagnostic::at(
                    KeyPath::root("listeners").index(i).key("bind"),
                    format!(
                        "address {} is already bound by listeners[{first}]",
                        l.bind.0
                    ),
                )
                .help("give each listener its own address or port"),
            );
        }
        if l.max_connections == Some(0) {
            out.push(Diagnostic::at(
                KeyPath::root("listeners").index(i).key("max_connections"),
                "must be at least 1",
            ));
        }
        check_listener_tls(l, &KeyPath::root("listeners").index(i), out);
        check_forward(l, &KeyPath::root("listeners").index(i), out);
    }
    names
}

fn check_upstreams<'a>(config: &'a Config, out: &mut Vec<Diagnostic>) -> Vec<&'a str> {
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
fn check_upstream_tls(u: &Upstream, path: &KeyPath, out: &mut Vec<Diagnostic>) {
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

/// A TLS client block's files load and its server name is valid.
pub(crate) fn check_tls_files(
    tls: &crate::schema::UpstreamTls,
    at: &KeyPath,
    out: &mut Vec<Diagnostic>,
) {
    if let Some(ca) = &tls.ca {
        if let Err(msg) = crate::pem::check_certs(ca) {
            out.push(Diagnostic::at(at.key("ca"), msg));
        }
    }
    match (&tls.client_cert, &tls.client_key) {
        (Some(c), Some(k)) => {
            if let Err(msg) = crate::pem::check_certs(c) {
                out.push(Diagnostic::at(at.key("client_cert"), msg));
            }
            if let Err(msg) = crate::pem::check_key(k) {
                out.push(Diagnostic::at(at.key("client_key"), msg));
            }
        }
        (Some(_), None) => out.push(Diagnostic::at(at.key("client_cert"), "needs `client_key`")),
        (None, Some(_)) => out.push(Diagnostic::at(at.key("client_key"), "needs `client_cert`")),
        (None, None) => {}
    }
    if let Some(sni) = &tls.sni {
        if rustls_pki_types::ServerName::try_from(sni.as_str()).is_err() {
            out.push(Diagnostic::at(
                at.key("sni"),
                format!("`{sni}` is not a valid server name"),
            ));
        }
    }
}

/// A forward listener has a policy and every pattern parses.
fn check_forward(l: &crate::schema::Listener, path: &KeyPath, out: &mut Vec<Diagnostic>) {
    use crate::schema::ListenerMode;
    match (l.mode, &l.forward) {
        (ListenerMode::Forward, None) => out.push(
            Diagnostic::at(
                path.key("mode"),
                "a forward listener needs a `forward` policy",
            )
            .help("forward = { allow = [\"*.example.com:443\"] }  (everything else is denied)"),
        ),
        (ListenerMode::Reverse, Some(_)) => out.push(Diagnostic::at(
            path.key("forward"),
            "only used with mode = \"forward\"",
        )),
        _ => {}
    }
    if let Some(f) = &l.forward {
        for (j, p) in f.allow.iter().enumerate() {
            if let Err(msg) = crate::schema::parse_destination_pattern(p) {
                out.push(Diagnostic::at(
                    path.key("forward").key("allow").index(j),
                    msg,
                ));
            }
        }
    }
}

/// TLS files exist and hold what they should; TLS-only keys are not on plaintext listeners.
fn check_listener_tls(l: &crate::schema::Listener, path: &KeyPath, out: &mut Vec<Diagnostic>) {
    if l.tls.is_some() && l.redirect_https.is_some() {
        out.push(
            Diagnostic::at(
                path.key("redirect_https"),
                "a TLS listener cannot redirect to https",
            )
            .help("put redirect_https on the plaintext listener"),
        );
    }
    if let Some(h) = &l.hsts {
        if l.tls.is_none() {
            out.push(
                Diagnostic::at(path.key("hsts"), "HSTS is only sent over TLS").help(
                    "browsers ignore Strict-Transport-Security on plain http (RFC 6797 §8.1)",
                ),
            );
        } else if http::HeaderValue::from_str(h).is_err() || !h.contains("max-age=") {
            out.push(
                Diagnostic::at(
                    path.key("hsts"),
                    format!("`{h}` is not a Strict-Transport-Security value"),
                )
                .help("e.g. \"max-age=31536000; includeSubDomains\""),
            );
        }
    }
    let Some(tls) = &l.tls else { return };
    let at = path.key("tls");
    if tls.certificates.is_empty() {
        out.push(
            Diagnostic::at(
                at.key("certificates"),
                "at least one certificate is required",
            )
            .help("certificates = [{ cert = \"site.pem\", key = \"site.key\" }]"),
        );
    }
    for (j, c) in tls.certificates.iter().enumerate() {
        let at = at.key("certificates").index(j);
        if let Err(msg) = crate::pem::check_certs(&c.cert) {
            out.push(Diagnostic::at(at.key("cert"), msg));
        }
        if let Err(msg) = crate::pem::check_key(&c.key) {
            out.push(Diagnostic::at(at.key("key"), msg));
        }
    }
    if let Some(ca) = &tls.client_ca {
        if let Err(msg) = crate::pem::check_certs(ca) {
            out.push(Diagnostic::at(at.key("client_ca"), msg));
        }
    }
    if let Some(h) = &tls.client_subject_header {
        if tls.client_ca.is_none() {
            out.push(Diagnostic::at(
                at.key("client_subject_header"),
                "needs `client_ca`",
            ));
        } else if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            out.push(Diagnostic::at(
                at.key("client_subject_header"),
                format!("`{h}` is not a valid header name"),
            ));
        }
    }
    positive(
        out,
        at.key("reload_interval"),
        tls.reload_interval.is_zero(),
    );
}

/// Balancer, health, breaker and retry settings of one upstream.
fn check_upstream_policies(u: &Upstream, path: &KeyPath, out: &mut Vec<Diagnostic>) {
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

fn positive(out: &mut Vec<Diagnostic>, key: KeyPath, zero: bool) {
    if zero {
        out.push(Diagnostic::at(key, "must be greater than zero"));
    }
}

/// An endpoint is `host:port` with a valid host and a port in 1..=65535.
fn check_endpoint(ep: &str) -> Result<(), String> {
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

fn check_routes(
    config: &Config,
    listeners: &[&str],
    upstreams: &[&str],
    out: &mut Vec<Diagnostic>,
) {
    let mut seen = HashSet::new();
    for (i, route) in config.routes.iter().enumerate() {
        let path = KeyPath::root("routes").index(i);
        if let Some(name) = &route.name {
            if name.is_empty() {
                out.push(Diagnostic::at(path.key("name"), "must not be empty"));
            } else if !seen.insert(name.as_str()) {
                out.push(Diagnostic::at(
                    path.key("name"),
                    format!("duplicate route name `{name}`"),
                ));
            }
        }
        if let Some(ls) = &route.listeners {
            for (j, l) in ls.iter().enumerate() {
                if !listeners.contains(&l.as_str()) {
                    out.push(
                        Diagnostic::at(
                            path.key("listeners").index(j),
                            format!("unknown listener `{l}`"),
                        )
                        .suggest(l, listeners.iter().copied()),
                    );
                }
            }
        }
        check_match(&route.matches, &path.key("match"), out);
        check_action(route, &path, upstreams, out);
    }
}

fn check_match(m: &RouteMatch, path: &KeyPath, out: &mut Vec<Diagnostic>) {
    for (j, h) in m.hosts.iter().enumerate() {
        let body = h.strip_prefix("*.").unwrap_or(h);
        let ok = !body.is_empty()
            && !body.contains('*')
            && body.split('.').all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !ok {
            out.push(
                Diagnostic::at(path.key("hosts").index(j), format!("invalid host pattern `{h}`"))
                    .help("use an exact name (`example.com`) or a leading wildcard (`*.example.com`); no port"),
            );
        }
    }
    let path_kinds: Vec<&str> = [
        ("path", m.path.is_some()),
        ("path_prefix", m.path_prefix.is_some()),
        ("path_regex", m.path_regex.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(k, _)| k)
    .collect();
    if path_kinds.len() > 1 {
        out.push(
            Diagnostic::at_key(
                path.key(path_kinds[1]),
                format!(
                    "`{}` and `{}` cannot be combined",
                    path_kinds[0], path_kinds[1]
                ),
            )
            .help("a route matches the path one way; split it into two routes"),
        );
    }
    for (key, p) in [("path", &m.path), ("path_prefix", &m.path_prefix)] {
        if let Some(p) = p {
            if !p.starts_with('/') {
                out.push(
                    Diagnostic::at(path.key(key), format!("`{p}` must start with `/`"))
                        .help(format!("write \"/{p}\"")),
                );
            }
        }
    }
    if let Some(re) = &m.path_regex {
        if let Err(e) = regex::Regex::new(re) {
            out.push(Diagnostic::at(
                path.key("path_regex"),
                format!("invalid regex: {}", one_line(&e.to_string())),
            ));
        }
    }
    for (j, method) in m.methods.iter().enumerate() {
        if http::Method::from_bytes(method.as_bytes()).is_err() {
            out.push(Diagnostic::at(
                path.key("methods").index(j),
                format!("`{method}` is not an HTTP method"),
            ));
        }
    }
    check_predicates(&m.headers, &path.key("headers"), true, out);
    check_predicates(&m.query, &path.key("query"), false, out);
}

fn check_predicates(preds: &[Predicate], path: &KeyPath, header: bool, out: &mut Vec<Diagnostic>) {
    for (j, p) in preds.iter().enumerate() {
        let path = path.index(j);
        if header && http::HeaderName::from_bytes(p.name.as_bytes()).is_err() {
            out.push(Diagnostic::at(
                path.key("name"),
                format!("`{}` is not a valid header name", p.name),
            ));
        }
        if p.value.is_some() && p.regex.is_some() {
            out.push(
                Diagnostic::at_key(path.key("regex"), "`value` and `regex` cannot be combined")
                    .help("use `value` for an exact match or `regex` for a pattern"),
            );
        }
        if let Some(re) = &p.regex {
            if let Err(e) = regex::Regex::new(re) {
                out.push(Diagnostic::at(
                    path.key("regex"),
                    format!("invalid regex: {}", one_line(&e.to_string())),
                ));
            }
        }
    }
}

fn check_action(route: &Route, path: &KeyPath, upstreams: &[&str], out: &mut Vec<Diagnostic>) {
    let actions: Vec<&str> = [
        ("proxy", route.proxy.is_some()),
        ("respond", route.respond.is_some()),
        ("redirect", route.redirect.is_some()),
        ("static", route.static_files.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(k, _)| k)
    .collect();
    match actions.as_slice() {
        [] => out.push(
            Diagnostic::at(path.clone(), "route has no action")
                .help("add exactly one of `proxy`, `respond`, `redirect` or `static`"),
        ),
        [_] => {}
        [first, second, ..] => out.push(
            Diagnostic::at_key(
                path.key(second),
                format!("route has both `{first}` and `{second}`"),
            )
            .help("a route has exactly one action; split it into two routes"),
        ),
    }
    if let Some(p) = &route.proxy {
        if !upstreams.contains(&p.upstream.as_str()) {
            let d = Diagnostic::at(
                path.key("proxy").key("upstream"),
                format!("unknown upstream `{}`", p.upstream),
            )
            .suggest(&p.upstream, upstreams.iter().copied());
            let d = if d.help.is_none() {
                if upstreams.is_empty() {
                    d.help("no upstreams are defined; add an [[upstreams]] table")
                } else {
                    d.help(format!("defined upstreams: {}", upstreams.join(", ")))
                }
            } else {
                d
            };
            out.push(d);
        }
    }
    if let Some(r) = &route.respond {
        if !(200..=599).contains(&r.status) {
            out.push(Diagnostic::at(
                path.key("respond").key("status"),
                format!("status {} is out of range: expected 200 to 599", r.status),
            ));
        }
        for (name, value) in &r.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                out.push(Diagnostic::at_key(
                    path.key("respond").key("headers").key(name),
                    format!("`{name}` is not a valid header name"),
                ));
            } else if http::HeaderValue::from_str(value).is_err() {
                out.push(Diagnostic::at(
                    path.key("respond").key("headers").key(name),
                    "header value contains characters not allowed in HTTP headers",
                ));
            }
        }
    }
    if let Some(r) = &route.redirect {
        if ![301, 302, 303, 307, 308].contains(&r.status) {
            out.push(
                Diagnostic::at(
                    path.key("redirect").key("status"),
                    format!("status {} is not a redirect", r.status),
                )
                .help("use 301, 302, 303, 307 or 308"),
            );
        }
        if r.location.is_empty() || http::HeaderValue::from_str(&r.location).is_err() {
            out.push(Diagnostic::at(
                path.key("redirect").key("location"),
                "location must be a non-empty URL without control characters",
            ));
        }
    }
    if let Some(s) = &route.static_files {
        if !s.root.is_dir() {
            out.push(
                Diagnostic::at(
                    path.key("static").key("root"),
                    format!("directory `{}` does not exist", s.root.display()),
                )
                .help("relative roots are resolved against the directory Weir is started from"),
            );
        }
        if s.index.is_empty() || s.index.contains('/') || s.index == ".." {
            out.push(Diagnostic::at(
                path.key("static").key("index"),
                "index must be a plain file name like \"index.html\"",
            ));
        }
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Route options beyond matching and actions: `cache` (and the `[[caches]]` it names),
/// `compress`, `rewrite`.
fn check_route_options(config: &Config, out: &mut Vec<Diagnostic>) {
    let caches = unique("caches", config.caches.iter().map(|c| c.name.as_str()), out);
    for (i, c) in config.caches.iter().enumerate() {
        let at = KeyPath::root("caches").index(i);
        crate::validate_policy::check_headers(&c.key_headers, &at.key("key_headers"), out);
        crate::validate_policy::check_headers(&c.targeted_fields, &at.key("targeted_fields"), out);
        crate::validate_policy::check_headers(&c.tag_headers, &at.key("tag_headers"), out);
        match &c.disk {
            None if c.max_object_size.bytes() > c.max_memory.bytes() => {
                out.push(
                    Diagnostic::at(at.key("max_object_size"), "must not exceed max_memory").help(
                        "larger objects need a disk tier: `disk = { path = …, max_size = … }`",
                    ),
                );
            }
            Some(d) if c.max_object_size.bytes() > d.max_size.bytes() => {
                out.push(Diagnostic::at(
                    at.key("max_object_size"),
                    "must not exceed disk.max_size",
                ));
            }
            _ => {}
        }
        // An empty allow-list means "everyone" for IP rules elsewhere; for PURGE that would
        // hand cache deletion to the internet, so it must name who may purge.
        if let Some(p) = &c.purge_method {
            if p.allow.is_empty() {
                out.push(
                    Diagnostic::at(at.key("purge_method"), "names no address allowed to PURGE")
                        .help("purge_method = { allow = [\"10.0.0.0/8\"] }  (an empty allow-list would let anyone purge)"),
                );
            }
        }
        if let Some(d) = &c.disk {
            if d.path.trim().is_empty() {
                out.push(Diagnostic::at(
                    at.key("disk").key("path"),
                    "must not be empty",
                ));
            }
            let shared = config.caches[..i]
                .iter()
                .any(|o| o.disk.as_ref().is_some_and(|od| od.path == d.path));
            if shared {
                out.push(Diagnostic::at(
                    at.key("disk").key("path"),
                    format!("`{}` is already another cache's disk tier", d.path),
                ));
            }
        }
    }
    for (i, r) in config.routes.iter().enumerate() {
        if let Some(name) = &r.cache {
            let at = KeyPath::root("routes").index(i).key("cache");
            if !caches.contains(&name.as_str()) {
                out.push(
                    Diagnostic::at(at.clone(), format!("unknown cache `{name}`"))
                        .suggest(name, caches.iter().copied()),
                );
            }
            if r.proxy.is_none() {
                out.push(Diagnostic::at(at, "`cache` applies to `proxy` routes only"));
            }
        }
        if let Some(c) = &r.compress {
            let at = KeyPath::root("routes").index(i).key("compress");
            if c.algorithms.is_empty() {
                out.push(Diagnostic::at(
                    at.key("algorithms"),
                    "must name at least one coding",
                ));
            }
            for (j, a) in c.algorithms.iter().enumerate() {
                if !["zstd", "br", "gzip"].contains(&a.as_str()) {
                    out.push(
                        Diagnostic::at(
                            at.key("algorithms").index(j),
                            format!("unknown coding `{a}`"),
                        )
                        .suggest(a, ["zstd", "br", "gzip"]),
                    );
                }
            }
            for (j, t) in c.content_types.iter().enumerate() {
                let ok = t
                    .split_once('/')
                    .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !a.contains('*'));
                if !ok {
                    out.push(
                        Diagnostic::at(
                            at.key("content_types").index(j),
                            format!("`{t}` is not a media type"),
                        )
                        .help("e.g. \"text/*\" or \"application/json\""),
                    );
                }
            }
        }
        let Some(rw) = &r.rewrite else { continue };
        let at = KeyPath::root("routes").index(i).key("rewrite");
        if r.proxy.is_none() {
            out.push(
                Diagnostic::at(at.clone(), "`rewrite` applies to `proxy` routes only")
                    .help("a static route has `static.strip_prefix`"),
            );
        }
        for (key, v) in [
            ("strip_prefix", &rw.strip_prefix),
            ("add_prefix", &rw.add_prefix),
        ] {
            if v.as_ref().is_some_and(|p| !p.starts_with('/')) {
                out.push(Diagnostic::at(at.key(key), "must start with `/`"));
            }
        }
        match (&rw.regex, &rw.replace) {
            (Some(re), Some(_)) => {
                if let Err(e) = regex::Regex::new(re) {
                    out.push(Diagnostic::at(
                        at.key("regex"),
                        format!("invalid regex: {e}"),
                    ));
                }
            }
            (None, None) => {}
            _ => out.push(Diagnostic::at(at, "`regex` and `replace` go together")),
        }
    }
}
