//! Routes: matches and predicates, actions and their upstreams, and route options (`cache`,
//! `compress`, `rewrite`).

use std::collections::HashSet;

use super::checks::{one_line, unique};
use crate::diagnostic::{Diagnostic, KeyPath};
use crate::schema::{Config, Predicate, Route, RouteMatch};

pub(super) fn check_routes(
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

pub(super) fn check_match(m: &RouteMatch, path: &KeyPath, out: &mut Vec<Diagnostic>) {
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

pub(super) fn check_predicates(
    preds: &[Predicate],
    path: &KeyPath,
    header: bool,
    out: &mut Vec<Diagnostic>,
) {
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

pub(super) fn check_action(
    route: &Route,
    path: &KeyPath,
    upstreams: &[&str],
    out: &mut Vec<Diagnostic>,
) {
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
        super::deploy::check_proxy(p, &path.key("proxy"), upstreams, out);
    }
    if let Some(m) = &route.mirror {
        super::deploy::check_mirror(route, m, &path.key("mirror"), upstreams, out);
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

/// Route options beyond matching and actions: `cache` (and the `[[caches]]` it names),
/// `compress`, `rewrite`.
pub(super) fn check_route_options(config: &Config, out: &mut Vec<Diagnostic>) {
    let caches = unique("caches", config.caches.iter().map(|c| c.name.as_str()), out);
    for (i, c) in config.caches.iter().enumerate() {
        let at = KeyPath::root("caches").index(i);
        super::policies::check_headers(&c.key_headers, &at.key("key_headers"), out);
        super::policies::check_headers(&c.targeted_fields, &at.key("targeted_fields"), out);
        super::policies::check_headers(&c.tag_headers, &at.key("tag_headers"), out);
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
        if c.fleet_purge && config.redis.is_none() {
            out.push(
                Diagnostic::at(
                    at.key("fleet_purge"),
                    "needs a `[redis]` server to reach the fleet through",
                )
                .help("[redis]\nurl = \"redis://127.0.0.1:6379\""),
            );
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
