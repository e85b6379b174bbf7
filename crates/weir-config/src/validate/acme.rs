//! `tls.acme`: the names, the directory URL, the challenge against the listeners that must
//! answer it, and a state directory Weir can write.

use crate::diagnostic::{Diagnostic, KeyPath};
use crate::schema::{Acme, AcmeChallenge, Config};

pub(super) fn check_acme(config: &Config, acme: &Acme, at: &KeyPath, out: &mut Vec<Diagnostic>) {
    if acme.domains.is_empty() {
        out.push(
            Diagnostic::at(at.key("domains"), "names no domain")
                .help("domains = [\"example.com\", \"www.example.com\"]"),
        );
    }
    for (i, d) in acme.domains.iter().enumerate() {
        let name = d.strip_prefix("*.").unwrap_or(d);
        let ok = name.contains('.')
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !ok {
            out.push(
                Diagnostic::at(
                    at.key("domains").index(i),
                    format!("`{d}` is not a DNS name a CA can issue for"),
                )
                .help("a fully qualified name such as \"example.com\" (no IP addresses, no port)"),
            );
        } else if d.starts_with("*.") {
            out.push(
                Diagnostic::at(
                    at.key("domains").index(i),
                    format!("`{d}`: wildcard names need the dns-01 challenge, which Weir does not answer"),
                )
                .help("list the names themselves, or give this certificate as files"),
            );
        }
    }
    match url_of(&acme.directory) {
        Some("https") => {}
        _ => out.push(
            Diagnostic::at(
                at.key("directory"),
                format!("`{}` is not an https:// URL", acme.directory),
            )
            .help("directory = \"https://acme-v02.api.letsencrypt.org/directory\""),
        ),
    }
    for (i, c) in acme.contact.iter().enumerate() {
        if !c.starts_with("mailto:") || c.len() <= "mailto:".len() {
            out.push(
                Diagnostic::at(
                    at.key("contact").index(i),
                    format!("`{c}` is not a mailto: URL"),
                )
                .help("contact = [\"mailto:ops@example.com\"]"),
            );
        }
    }
    if acme.challenge == AcmeChallenge::Http01 && config.listeners.iter().all(|l| l.tls.is_some()) {
        out.push(
            Diagnostic::at(
                at.key("challenge"),
                "http-01 is answered on a plain listener, and every listener has TLS",
            )
            .help("add a listener without TLS on port 80, or challenge = \"tls-alpn-01\""),
        );
    }
    if let Some(k) = &acme.fleet_key {
        if config.redis.is_none() {
            out.push(
                Diagnostic::at(
                    at.key("fleet_key"),
                    "needs a `[redis]` server the fleet shares",
                )
                .help("[redis]\nurl = \"redis://127.0.0.1:6379\""),
            );
        }
        if k.expose().len() < 16 {
            out.push(Diagnostic::at(
                at.key("fleet_key"),
                "must be at least 16 characters",
            ));
        }
    }
    if let Some(ca) = &acme.directory_ca {
        if let Err(msg) = crate::pem::check_certs(ca) {
            out.push(Diagnostic::at(at.key("directory_ca"), msg));
        }
    }
    if let Err(why) = writable_dir(&acme.state_dir) {
        out.push(
            Diagnostic::at(
                at.key("state_dir"),
                format!("`{}` {why}", acme.state_dir.display()),
            )
            .help("a directory Weir's user can create and write (the package uses /var/lib/weir/acme)"),
        );
    }
}

fn url_of(s: &str) -> Option<&str> {
    let (scheme, rest) = s.split_once("://")?;
    (!rest.is_empty() && !rest.starts_with('/')).then_some(scheme)
}

/// Whether Weir could keep files in `dir`: it exists and is writable, or the nearest existing
/// parent is.
fn writable_dir(dir: &std::path::Path) -> Result<(), &'static str> {
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => {
                let probe = at.join(format!(".weir-check-{}", std::process::id()));
                return match std::fs::write(&probe, b"") {
                    Ok(()) => {
                        let _ = std::fs::remove_file(&probe);
                        Ok(())
                    }
                    Err(_) => Err("is not writable"),
                };
            }
            Ok(_) => return Err("is not a directory"),
            Err(_) => match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p,
                _ => return Ok(()),
            },
        }
    }
}
