//! Semantic checks the schema alone cannot express: cross-references, uniqueness, value
//! ranges, and anything that must compile (regexes, header names, host patterns).

use crate::diagnostic::{Diagnostic, KeyPath};
use crate::schema::Config;

mod acme;
mod checks;
mod deploy;
mod discovery;
mod listeners;
pub mod policies;
mod routes;
mod upstreams;

use listeners::{check_listeners, check_tls_files};
use routes::{check_route_options, check_routes};
use upstreams::check_upstreams;

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
    let policy_names = policies::check_policies(config, &mut out);
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

/// Most headers per side the access log carries: each costs a copy per request.
const MAX_LOGGED_HEADERS: usize = 32;

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
    for (side, names) in [
        ("request", &config.access_log.headers.request),
        ("response", &config.access_log.headers.response),
    ] {
        let at = KeyPath::root("access_log").key("headers").key(side);
        if names.len() > MAX_LOGGED_HEADERS {
            out.push(
                Diagnostic::at(
                    at.clone(),
                    format!(
                        "{} headers listed; at most {MAX_LOGGED_HEADERS}",
                        names.len()
                    ),
                )
                .help("log the headers a pipeline queries; the rest belong in a trace"),
            );
        }
        for (i, name) in names.iter().enumerate() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                out.push(
                    Diagnostic::at(at.index(i), format!("`{name}` is not a header name"))
                        .help("e.g. \"x-tenant\" or \"content-type\""),
                );
            }
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
