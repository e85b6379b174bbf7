//! A proxy route's deployment keys: `upstream` or `split` (with `sticky`, `override`,
//! `canary`), and the route's `mirror`.

use std::collections::HashSet;

use super::checks::positive;
use crate::diagnostic::{Diagnostic, KeyPath};
use crate::schema::{Canary, HashKey, Mirror, ProxyAction, Route};

/// `unknown upstream` with a suggestion or the list of defined ones.
pub(super) fn unknown_upstream(at: KeyPath, name: &str, upstreams: &[&str]) -> Diagnostic {
    let d = Diagnostic::at(at, format!("unknown upstream `{name}`"))
        .suggest(name, upstreams.iter().copied());
    if d.help.is_some() {
        d
    } else if upstreams.is_empty() {
        d.help("no upstreams are defined; add an [[upstreams]] table")
    } else {
        d.help(format!("defined upstreams: {}", upstreams.join(", ")))
    }
}

pub(super) fn check_proxy(
    p: &ProxyAction,
    at: &KeyPath,
    upstreams: &[&str],
    out: &mut Vec<Diagnostic>,
) {
    match (&p.upstream, p.split.is_empty()) {
        (Some(u), true) => {
            if !upstreams.contains(&u.as_str()) {
                out.push(unknown_upstream(at.key("upstream"), u, upstreams));
            }
        }
        (None, true) => out.push(
            Diagnostic::at(at.clone(), "`proxy` needs `upstream` or `split`")
                .help("proxy = { upstream = \"app\" }, or split = [{ upstream = \"v1\", weight = 95 }, { upstream = \"v2\", weight = 5 }]"),
        ),
        (Some(_), false) => {
            out.push(
                Diagnostic::at_key(at.key("split"), "`upstream` and `split` cannot be combined")
                    .help("name every version in `split`, the current one included"),
            );
            check_split(p, at, upstreams, out);
        }
        (None, false) => check_split(p, at, upstreams, out),
    }
    if p.split.is_empty() {
        for (key, set) in [
            ("sticky", p.sticky.is_some()),
            ("override", p.pin.is_some()),
            ("canary", p.canary.is_some()),
        ] {
            if set {
                out.push(Diagnostic::at_key(
                    at.key(key),
                    format!("`{key}` applies to a `split`"),
                ));
            }
        }
    }
}

fn check_split(p: &ProxyAction, at: &KeyPath, upstreams: &[&str], out: &mut Vec<Diagnostic>) {
    let mut seen = HashSet::new();
    for (i, t) in p.split.iter().enumerate() {
        let here = at.key("split").index(i);
        if !upstreams.contains(&t.upstream.as_str()) {
            out.push(unknown_upstream(
                here.key("upstream"),
                &t.upstream,
                upstreams,
            ));
        } else if !seen.insert(t.upstream.as_str()) {
            out.push(Diagnostic::at(
                here.key("upstream"),
                format!("`{}` is already in this split", t.upstream),
            ));
        }
    }
    if p.canary.is_none() && p.split.iter().all(|t| t.weight == 0) {
        out.push(
            Diagnostic::at(
                at.key("split"),
                "every weight is 0: no request could be sent",
            )
            .help("give at least one version a weight above 0"),
        );
    }
    if let Some(HashKey::Path) = p.pin {
        out.push(
            Diagnostic::at(
                at.key("override"),
                "an override is read from a request value",
            )
            .help("override = \"header:x-version\" or \"cookie:version\""),
        );
    }
    if let Some(c) = &p.canary {
        check_canary(c, p, &at.key("canary"), out);
    }
}

fn check_canary(c: &Canary, p: &ProxyAction, at: &KeyPath, out: &mut Vec<Diagnostic>) {
    if p.split.len() != 2 {
        out.push(
            Diagnostic::at_key(at.clone(), "a canary plan needs a split of exactly two upstreams")
                .help("split = [{ upstream = \"stable\" }, { upstream = \"canary\" }]: the baseline and the canary"),
        );
    } else if !p.split.iter().any(|t| t.upstream == c.upstream) {
        let names: Vec<&str> = p.split.iter().map(|t| t.upstream.as_str()).collect();
        out.push(
            Diagnostic::at(
                at.key("upstream"),
                format!("`{}` is not in the split", c.upstream),
            )
            .help(format!("one of: {}", names.join(", "))),
        );
    }
    if c.steps.is_empty() {
        out.push(Diagnostic::at(at.key("steps"), "needs at least one step"));
    }
    let mut last = 0.0;
    for (i, s) in c.steps.iter().enumerate() {
        if !(*s > 0.0 && *s <= 100.0) {
            out.push(Diagnostic::at(
                at.key("steps").index(i),
                format!("{s} is not a share: expected more than 0 and at most 100 (percent)"),
            ));
        } else if *s <= last {
            out.push(Diagnostic::at(
                at.key("steps").index(i),
                format!("steps must rise: {s} follows {last}"),
            ));
        }
        last = *s;
    }
    if c.min_requests == 0 {
        out.push(
            Diagnostic::at(at.key("min_requests"), "must be at least 1")
                .help("a canary judged on no requests would advance on no evidence"),
        );
    }
    if !(0.0..=1.0).contains(&c.max_5xx_excess) {
        out.push(
            Diagnostic::at(
                at.key("max_5xx_excess"),
                "a ratio from 0 to 1 (0.01 is one percentage point)",
            )
            .help("max_5xx_excess = 0.01"),
        );
    }
    if !(c.max_p99_ratio >= 1.0 && c.max_p99_ratio.is_finite()) {
        out.push(
            Diagnostic::at(at.key("max_p99_ratio"), "must be at least 1")
                .help("max_p99_ratio = 1.5: the canary's p99 may be 50% above the baseline's"),
        );
    }
    positive(out, at.key("check_interval"), c.check_interval.is_zero());
    for (i, s) in c.statuses.iter().enumerate() {
        let here = at.key("statuses").index(i);
        if !(100..=599).contains(&s.status) {
            out.push(Diagnostic::at(
                here.key("status"),
                format!("status {} is out of range: expected 100 to 599", s.status),
            ));
        }
        if !(0.0..=1.0).contains(&s.max_excess) {
            out.push(Diagnostic::at(
                here.key("max_excess"),
                "a ratio from 0 to 1 (0.05 is five percentage points)",
            ));
        }
    }
}

pub(super) fn check_mirror(
    route: &Route,
    m: &Mirror,
    at: &KeyPath,
    upstreams: &[&str],
    out: &mut Vec<Diagnostic>,
) {
    if route.proxy.is_none() {
        out.push(Diagnostic::at_key(
            at.clone(),
            "`mirror` applies to `proxy` routes only",
        ));
    }
    if !upstreams.contains(&m.upstream.as_str()) {
        out.push(unknown_upstream(at.key("upstream"), &m.upstream, upstreams));
    }
    if !(m.percent > 0.0 && m.percent <= 100.0) {
        out.push(
            Diagnostic::at(
                at.key("percent"),
                format!(
                    "{} is not a share: expected more than 0 and at most 100",
                    m.percent
                ),
            )
            .help("percent = 10 mirrors one request in ten"),
        );
    }
    if m.max_in_flight == 0 {
        out.push(Diagnostic::at(
            at.key("max_in_flight"),
            "must be at least 1",
        ));
    }
    if m.timeout.is_zero() {
        out.push(Diagnostic::at(
            at.key("timeout"),
            "must be greater than zero",
        ));
    }
}
