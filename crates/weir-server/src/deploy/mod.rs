//! Deployments through the front door: a proxy route's weighted `split` between versions
//! (sticky by a key, overridable by testers), the progressive `canary` plan that drives a
//! split from what each side answers and rolls back on its own, and a route's `mirror`
//! (shadow traffic).
//!
//! ```toml
//! [[routes]]
//! name = "checkout"
//! proxy = { split = [{ upstream = "v1" }, { upstream = "v2" }], sticky = "cookie:weir_v",
//!           override = "header:x-version",
//!           canary = { upstream = "v2", steps = [1, 5, 25, 50, 100], step_time = "5m" } }
//! mirror = { upstream = "v3-shadow", percent = 10 }
//! ```
//!
//! Compiled per reload beside the route (`RouteEntry::split`, `RouteEntry::mirror`); what
//! must outlive a reload — a version's counters, a plan's progress — is carried from the
//! previous runtime by route and upstream name (`Carried`).

pub(crate) mod canary;
mod latency;
mod line;
pub(crate) mod mirror;
pub(crate) mod split;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sha2::Digest;
use weir_core::prometheus::{flag, Exposition, Kind};
use weir_upstream::Upstream;

use canary::Plan;
use mirror::{Mirror, MirrorStats};
use split::{Split, Target, VersionStats};

/// What a new runtime takes over from the running one for one route.
#[derive(Default)]
pub(crate) struct Carried {
    versions: HashMap<Arc<str>, Arc<VersionStats>>,
    plan: Option<Arc<Plan>>,
    mirror: Option<(Arc<str>, Arc<MirrorStats>)>,
}

impl Carried {
    /// From the running split and mirror of the same route. The plan is kept only when
    /// `same_plan` (its config, the split and `[redis]` are unchanged): a changed plan starts
    /// over.
    pub(crate) fn from(split: Option<&Split>, mirror: Option<&Mirror>, same_plan: bool) -> Self {
        Self {
            versions: split
                .iter()
                .flat_map(|s| s.targets.iter())
                .map(|t| (t.name.clone(), t.stats.clone()))
                .collect(),
            plan: split.and_then(|s| s.canary.clone()).filter(|_| same_plan),
            mirror: mirror.map(|m| (m.target.clone(), m.stats.clone())),
        }
    }
}

/// Compiles a route's split (`None` for a route without one).
pub(crate) fn compile_split(
    route: &Arc<str>,
    p: &weir_config::ProxyAction,
    upstreams: &[Arc<Upstream>],
    carried: &Carried,
    redis: Option<&Arc<weir_policy::RedisStore>>,
) -> Option<Arc<Split>> {
    if p.split.is_empty() {
        return None;
    }
    let targets: Vec<Target> = p
        .split
        .iter()
        .filter_map(|t| {
            let upstream = upstreams.iter().find(|u| *u.name == *t.upstream)?.clone();
            Some(Target {
                name: upstream.name.clone(),
                stats: carried
                    .versions
                    .get(t.upstream.as_str())
                    .cloned()
                    .unwrap_or_default(),
                upstream,
                weight: t.weight,
            })
        })
        .collect();
    let plan = p.canary.as_ref().and_then(|c| {
        if let Some(kept) = &carried.plan {
            return Some(kept.clone());
        }
        let canary_index = targets.iter().position(|t| *t.name == *c.upstream)?;
        let baseline = targets.iter().find(|t| *t.name != *c.upstream)?;
        let names = [baseline.name.clone(), targets[canary_index].name.clone()];
        let store = redis.filter(|_| c.shared).cloned();
        Some(Arc::new(Plan::new(
            route.clone(),
            c.clone(),
            names,
            canary_index,
            store,
            &plan_digest(p),
        )))
    });
    Some(Arc::new(Split::new(
        route.clone(),
        targets,
        p.sticky.clone(),
        p.pin.clone(),
        plan,
    )))
}

/// Names a plan for the fleet: instances share state only when their split and plan are the
/// same.
fn plan_digest(p: &weir_config::ProxyAction) -> String {
    let text = serde_json::to_string(&(&p.split, &p.canary)).unwrap_or_default();
    let digest = sha2::Sha256::digest(text.as_bytes());
    weir_core::trace_context::hex(&digest[..8])
}

/// Whether two versions of a route's proxy action run the same plan.
pub(crate) fn same_plan(a: &weir_config::ProxyAction, b: &weir_config::ProxyAction) -> bool {
    a.canary.is_some() && a.canary == b.canary && a.split == b.split
}

/// Compiles a route's mirror.
pub(crate) fn compile_mirror(
    route: &Arc<str>,
    m: &weir_config::Mirror,
    upstreams: &[Arc<Upstream>],
    carried: &Carried,
) -> Option<Arc<Mirror>> {
    let upstream = upstreams.iter().find(|u| *u.name == *m.upstream)?.clone();
    let stats = carried
        .mirror
        .as_ref()
        .filter(|(target, _)| **target == *m.upstream)
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    Some(Arc::new(Mirror::new(route.clone(), m, upstream, stats)))
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The Prometheus samples of every split, canary plan and mirror.
pub(crate) fn render(splits: &[&Split], mirrors: &[&Mirror], e: &mut Exposition) {
    let mut version_labels = Vec::new();
    for s in splits {
        let shares = s.shares();
        for (t, share) in s.targets.iter().zip(shares) {
            version_labels.push((s.route.as_ref(), t.name.as_ref(), t, share));
        }
    }
    let mut by_class = Vec::new();
    for (route, upstream, t, _) in &version_labels {
        for (i, class) in CLASSES.iter().enumerate() {
            let n = t.stats.classes[i].load(Ordering::Relaxed);
            if n > 0 {
                by_class.push((
                    [
                        ("route", *route),
                        ("upstream", *upstream),
                        ("status_class", *class),
                    ],
                    n,
                ));
            }
        }
    }
    e.family(
        "weir_split_requests_total",
        Kind::Counter,
        "Answers of each version of a split route, by status class (Weir's own 502/504 for a version count as its 5xx).",
        by_class.iter().map(|(l, n)| (&l[..], *n as f64)),
    );
    let labels: Vec<[(&str, &str); 2]> = version_labels
        .iter()
        .map(|(r, u, _, _)| [("route", *r), ("upstream", *u)])
        .collect();
    e.family(
        "weir_split_share_percent",
        Kind::Gauge,
        "Each version's share of a split route now (a canary plan moves it).",
        labels
            .iter()
            .zip(&version_labels)
            .map(|(l, (_, _, _, share))| (&l[..], *share)),
    );
    e.histogram(
        "weir_split_response_head_seconds",
        "Time from the request's head to the version's response head, by route and version.",
        labels
            .iter()
            .zip(&version_labels)
            .map(|(l, (_, _, t, _))| (&l[..], &t.stats.latency)),
    );
    render_canaries(splits, e);
    render_mirrors(mirrors, e);
}

fn render_canaries(splits: &[&Split], e: &mut Exposition) {
    let plans: Vec<(&str, &Arc<Plan>)> = splits
        .iter()
        .filter_map(|s| Some((s.route.as_ref(), s.canary.as_ref()?)))
        .collect();
    let states: Vec<(&str, canary::PlanState)> =
        plans.iter().map(|(r, p)| (*r, p.state())).collect();
    let phases = [
        "progressing",
        "paused",
        "promoted",
        "rolled_back",
        "aborted",
    ];
    let mut state_labels = Vec::new();
    for (route, s) in &states {
        for phase in phases {
            state_labels.push((
                [("route", *route), ("state", phase)],
                flag(canary::phase_word(s.phase) == phase),
            ));
        }
    }
    e.family(
        "weir_canary_state",
        Kind::Gauge,
        "1 for the state each canary plan is in.",
        state_labels.iter().map(|(l, v)| (&l[..], *v)),
    );
    let route_labels: Vec<[(&str, &str); 1]> = plans.iter().map(|(r, _)| [("route", *r)]).collect();
    e.family(
        "weir_canary_step",
        Kind::Gauge,
        "The step each canary plan is at (0 is the first).",
        route_labels
            .iter()
            .zip(&states)
            .map(|(l, (_, s))| (&l[..], s.step as f64)),
    );
    e.family(
        "weir_canary_share_percent",
        Kind::Gauge,
        "The canary's share of its route now.",
        route_labels
            .iter()
            .zip(&plans)
            .map(|(l, (_, p))| (&l[..], f64::from(p.share_ppm()) / 10_000.0)),
    );
    for (name, help, read) in [
        (
            "weir_canary_rollbacks_total",
            "Automatic rollbacks of each canary plan.",
            (|p: &Plan| p.rollbacks.load(Ordering::Relaxed)) as fn(&Plan) -> u64,
        ),
        (
            "weir_canary_advances_total",
            "Steps each canary plan advanced (promotion included).",
            |p: &Plan| p.advances.load(Ordering::Relaxed),
        ),
        (
            "weir_canary_store_errors_total",
            "Redis operations of each shared canary plan that failed (the plan then judges this instance's counts).",
            |p: &Plan| p.store_errors.load(Ordering::Relaxed),
        ),
    ] {
        e.family(
            name,
            Kind::Counter,
            help,
            route_labels
                .iter()
                .zip(&plans)
                .map(|(l, (_, p))| (&l[..], read(p) as f64)),
        );
    }
    let comparisons: Vec<canary::Comparison> = plans.iter().map(|(_, p)| p.comparison()).collect();
    let mut sides = Vec::new();
    for ((route, _), c) in plans.iter().zip(&comparisons) {
        for (side, v) in [("baseline", &c.baseline), ("canary", &c.canary)] {
            sides.push(([("route", *route), ("side", side)], v));
        }
    }
    e.family(
        "weir_canary_window_requests",
        Kind::Gauge,
        "Requests each side answered in the current step's window (the fleet's, when shared).",
        sides.iter().map(|(l, v)| (&l[..], v.requests as f64)),
    );
    e.family(
        "weir_canary_window_5xx_ratio",
        Kind::Gauge,
        "Each side's 5xx ratio in the current step's window.",
        sides.iter().map(|(l, v)| (&l[..], v.ratio_5xx)),
    );
    e.family(
        "weir_canary_window_p99_seconds",
        Kind::Gauge,
        "Each side's p99 time to response head in the current step's window.",
        sides
            .iter()
            .filter_map(|(l, v)| Some((&l[..], v.p99_ms? / 1000.0))),
    );
}

fn render_mirrors(mirrors: &[&Mirror], e: &mut Exposition) {
    let mut outcomes = Vec::new();
    for m in mirrors {
        let s = &m.stats;
        for (outcome, n) in [
            ("sent", &s.sent),
            ("dropped_in_flight", &s.dropped_in_flight),
            ("dropped_body_too_large", &s.dropped_body_too_large),
            ("dropped_body_incomplete", &s.dropped_body_incomplete),
        ] {
            outcomes.push((
                [
                    ("route", m.route.as_ref()),
                    ("upstream", m.target.as_ref()),
                    ("outcome", outcome),
                ],
                n.load(Ordering::Relaxed),
            ));
        }
    }
    e.family(
        "weir_mirror_requests_total",
        Kind::Counter,
        "Copies of a route's requests: sent, or dropped and why.",
        outcomes.iter().map(|(l, n)| (&l[..], *n as f64)),
    );
    let mut answers = Vec::new();
    for m in mirrors {
        let s = &m.stats;
        let route = m.route.as_ref();
        let target = m.target.as_ref();
        for (i, class) in CLASSES.iter().enumerate() {
            answers.push((
                [
                    ("route", route),
                    ("upstream", target),
                    ("status_class", *class),
                ],
                s.classes[i].load(Ordering::Relaxed),
            ));
        }
        answers.push((
            [
                ("route", route),
                ("upstream", target),
                ("status_class", "error"),
            ],
            s.failed.load(Ordering::Relaxed),
        ));
        answers.push((
            [
                ("route", route),
                ("upstream", target),
                ("status_class", "timeout"),
            ],
            s.timed_out.load(Ordering::Relaxed),
        ));
    }
    e.family(
        "weir_mirror_responses_total",
        Kind::Counter,
        "What the mirror target answered the copies, by status class (`error`: no answer; `timeout`: abandoned at the mirror's timeout). Discarded, never sent to clients.",
        answers
            .iter()
            .filter(|(l, n)| *n > 0 || !matches!(l[2].1, "1xx" | "3xx"))
            .map(|(l, n)| (&l[..], *n as f64)),
    );
    let labels: Vec<[(&str, &str); 2]> = mirrors
        .iter()
        .map(|m| [("route", m.route.as_ref()), ("upstream", m.target.as_ref())])
        .collect();
    e.family(
        "weir_mirror_in_flight",
        Kind::Gauge,
        "Copies out now.",
        labels
            .iter()
            .zip(mirrors)
            .map(|(l, m)| (&l[..], m.stats.in_flight.load(Ordering::Relaxed) as f64)),
    );
    e.histogram(
        "weir_mirror_duration_seconds",
        "Time from sending a copy to the end of its answer, by route and mirror target.",
        labels
            .iter()
            .zip(mirrors)
            .map(|(l, m)| (&l[..], &m.stats.duration)),
    );
}

/// `GET /canaries` (and the dashboard): every split with its shares, and each plan's state,
/// history and the comparison made at its last check.
pub(crate) fn summary(splits: &[&Split], mirrors: &[&Mirror]) -> serde_json::Value {
    let splits: Vec<serde_json::Value> = splits
        .iter()
        .map(|s| {
            let versions: Vec<serde_json::Value> = s
                .targets
                .iter()
                .zip(s.shares())
                .map(|(t, share)| {
                    serde_json::json!({
                        "upstream": &*t.name,
                        "weight": t.weight,
                        "share_percent": share,
                        "requests": t.stats.requests(),
                        "errors_5xx": t.stats.classes[4].load(Ordering::Relaxed),
                    })
                })
                .collect();
            let canary = s.canary.as_ref().map(|p| {
                let st = p.state();
                serde_json::json!({
                    "baseline": &*p.names[0],
                    "canary": &*p.names[1],
                    "state": canary::phase_word(st.phase),
                    "step": st.step,
                    "share_percent": f64::from(p.share_ppm()) / 10_000.0,
                    "revision": st.rev,
                    "shared": p.shared(),
                    "step_started_unix_ms": st.step_started_ms,
                    "history": st.history,
                    "comparison": p.comparison(),
                })
            });
            serde_json::json!({"route": &*s.route, "versions": versions, "canary": canary})
        })
        .collect();
    let mirrors: Vec<serde_json::Value> = mirrors
        .iter()
        .map(|m| {
            let s = &m.stats;
            serde_json::json!({
                "route": &*m.route,
                "upstream": &*m.target,
                "sent": s.sent.load(Ordering::Relaxed),
                "dropped_in_flight": s.dropped_in_flight.load(Ordering::Relaxed),
                "dropped_body_too_large": s.dropped_body_too_large.load(Ordering::Relaxed),
                "dropped_body_incomplete": s.dropped_body_incomplete.load(Ordering::Relaxed),
                "failed": s.failed.load(Ordering::Relaxed),
                "timed_out": s.timed_out.load(Ordering::Relaxed),
                "in_flight": s.in_flight.load(Ordering::Relaxed),
            })
        })
        .collect();
    serde_json::json!({"splits": splits, "mirrors": mirrors})
}

/// The plan of the route named `route`.
pub(crate) fn plan_of<'a>(splits: &[&'a Split], route: &str) -> Option<&'a Arc<Plan>> {
    splits.iter().find(|s| &*s.route == route)?.canary.as_ref()
}
