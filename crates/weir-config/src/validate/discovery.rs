//! Endpoint discovery: one provider per upstream, and each provider's settings.

use super::listeners::check_tls_files;
use crate::diagnostic::{Diagnostic, KeyPath};
use crate::schema::{Discovery, DnsDiscovery, EtcdDiscovery};

pub(super) fn check_discovery(d: &Discovery, path: &KeyPath, out: &mut Vec<Diagnostic>) {
    let set = [d.dns.is_some(), d.etcd.is_some(), d.file.is_some()];
    match set.iter().filter(|s| **s).count() {
        0 => out.push(
            Diagnostic::at_key(path.clone(), "names no provider")
                .help("add one of `dns`, `etcd` or `file`, e.g. discovery = { dns = { name = \"api.internal:8080\" } }"),
        ),
        1 => {}
        _ => out.push(
            Diagnostic::at_key(path.clone(), "has more than one provider")
                .help("an upstream takes its endpoints from one of `dns`, `etcd` or `file`; split it into two upstreams"),
        ),
    }
    if let Some(dns) = &d.dns {
        check_dns(dns, &path.key("dns"), out);
    }
    if let Some(etcd) = &d.etcd {
        check_etcd(etcd, &path.key("etcd"), out);
    }
    if let Some(file) = &d.file {
        if file.interval.is_zero() {
            out.push(Diagnostic::at(
                path.key("file").key("interval"),
                "must be greater than zero",
            ));
        }
    }
}

fn check_dns(d: &DnsDiscovery, path: &KeyPath, out: &mut Vec<Diagnostic>) {
    match (&d.name, &d.srv) {
        (None, None) => out.push(
            Diagnostic::at_key(path.clone(), "needs `name` (A/AAAA) or `srv`")
                .help("name = \"api.internal:8080\", or srv = \"_http._tcp.api.default.svc.cluster.local\""),
        ),
        (Some(_), Some(_)) => out.push(
            Diagnostic::at(path.key("srv"), "`name` and `srv` cannot both be set")
                .help("SRV records carry their own targets and ports; keep one"),
        ),
        (Some(name), None) => {
            // The same HOST:PORT rule as static `endpoints`.
            let ok = super::upstreams::check_endpoint(name).is_ok();
            if !ok {
                out.push(
                    Diagnostic::at(path.key("name"), format!("`{name}` is not HOST:PORT"))
                        .help("the port is where every address of HOST is reached, e.g. \"api.internal:8080\""),
                );
            }
        }
        (None, Some(srv)) => {
            if srv.is_empty() || srv.contains(':') {
                out.push(
                    Diagnostic::at(path.key("srv"), format!("`{srv}` is not an SRV record name"))
                        .help("e.g. \"_http._tcp.api.default.svc.cluster.local\" (no port: records carry it)"),
                );
            }
        }
    }
    if let Some(r) = &d.resolver {
        let ok = r.parse::<std::net::SocketAddr>().is_ok() || r.parse::<std::net::IpAddr>().is_ok();
        if !ok {
            out.push(
                Diagnostic::at(path.key("resolver"), format!("`{r}` is not IP or IP:PORT"))
                    .help("e.g. \"10.96.0.10:53\"; leave it out to use the system's resolver"),
            );
        }
    }
    if d.min_ttl > d.max_ttl {
        out.push(Diagnostic::at(
            path.key("max_ttl"),
            "must not be shorter than `min_ttl`",
        ));
    }
    if d.timeout.is_zero() {
        out.push(Diagnostic::at(
            path.key("timeout"),
            "must be greater than zero",
        ));
    }
}

fn check_etcd(e: &EtcdDiscovery, path: &KeyPath, out: &mut Vec<Diagnostic>) {
    if e.endpoints.is_empty() {
        out.push(
            Diagnostic::at(path.key("endpoints"), "lists no etcd member")
                .help("e.g. endpoints = [\"http://10.0.0.1:2379\"]"),
        );
    }
    for (i, url) in e.endpoints.iter().enumerate() {
        let ok = url
            .parse::<http::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")))
            .is_some_and(|u| u.host().is_some_and(|h| !h.is_empty()));
        if !ok {
            out.push(
                Diagnostic::at(
                    path.key("endpoints").index(i),
                    format!("`{url}` is not an http:// or https:// URL"),
                )
                .help("etcd's client URL, e.g. \"http://10.0.0.1:2379\""),
            );
        }
    }
    if e.prefix.is_empty() {
        out.push(
            Diagnostic::at(path.key("prefix"), "must not be empty")
                .help("the key prefix services register under, e.g. \"/services/api/\""),
        );
    }
    if e.password.is_some() != e.username.is_some() {
        out.push(Diagnostic::at_key(
            path.clone(),
            "`username` and `password` go together",
        ));
    }
    if let Some(tls) = &e.tls {
        check_tls_files(tls, &path.key("tls"), out);
    }
    if e.timeout.is_zero() {
        out.push(Diagnostic::at(
            path.key("timeout"),
            "must be greater than zero",
        ));
    }
}
