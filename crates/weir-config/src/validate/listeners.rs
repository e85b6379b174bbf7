//! Listeners: names and addresses, TLS files and TLS-only keys, forward-proxy policies.

use std::collections::HashMap;

use super::checks::{positive, unique};
use crate::diagnostic::{Diagnostic, KeyPath};
use crate::schema::Config;

pub(super) fn check_listeners<'a>(config: &'a Config, out: &mut Vec<Diagnostic>) -> Vec<&'a str> {
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
        check_listener_tls(config, l, &KeyPath::root("listeners").index(i), out);
        check_forward(l, &KeyPath::root("listeners").index(i), out);
    }
    names
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
pub(super) fn check_forward(
    l: &crate::schema::Listener,
    path: &KeyPath,
    out: &mut Vec<Diagnostic>,
) {
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
pub(super) fn check_listener_tls(
    config: &Config,
    l: &crate::schema::Listener,
    path: &KeyPath,
    out: &mut Vec<Diagnostic>,
) {
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
    if tls.certificates.is_empty() && tls.acme.is_none() {
        out.push(
            Diagnostic::at(
                at.key("certificates"),
                "at least one certificate is required",
            )
            .help("certificates = [{ cert = \"site.pem\", key = \"site.key\" }], or acme = { domains = [\"example.com\"] }"),
        );
    }
    if let Some(acme) = &tls.acme {
        super::acme::check_acme(config, acme, &at.key("acme"), out);
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
