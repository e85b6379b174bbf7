//! A progressive canary: the plan's state machine, the step's window of what each side
//! answered, the judgement, and (with `[redis]`) the state and counts a fleet shares.
//!
//! Every `check_interval` the plan looks at the current step's window: once the canary has
//! answered `min_requests`, a criterion that fails rolls it back to 0 % at once; when they
//! all hold and `step_time` has gone by, it advances. Reaching 100 % (or passing the last
//! step) promotes it. Operators can promote, pause, resume, abort and restart it.
//!
//! With Redis the state is one JSON value under a key named by the route and a digest of the
//! plan, written only by compare-and-set on its revision; each instance adds its counts to
//! the step's hash, and every instance judges the fleet's sums. An instance that sees a newer
//! revision adopts it, so a rollback or an abort anywhere reaches everyone within a check.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use weir_policy::RedisStore;

use super::latency::{self, Latency};
use super::line::PARTS;

/// Where a plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Phase {
    /// Judged every check; advances when the step holds.
    Progressing,
    /// Held at its step by an operator.
    Paused,
    /// The canary takes everything.
    Promoted,
    /// Failed a criterion: the canary takes nothing.
    RolledBack,
    /// Stopped by an operator: the canary takes nothing.
    Aborted,
}

/// One change of the plan's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Event {
    /// Unix time, milliseconds.
    pub(crate) at_ms: u64,
    pub(crate) phase: Phase,
    pub(crate) step: usize,
    /// The canary's share after the change, in percent.
    pub(crate) share: f64,
    pub(crate) why: String,
}

/// The state a fleet shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PlanState {
    /// Bumped by every change; the higher revision wins.
    pub(crate) rev: u64,
    pub(crate) phase: Phase,
    /// Index into the plan's steps.
    pub(crate) step: usize,
    /// When the step (or the pause) began, Unix milliseconds.
    pub(crate) step_started_ms: u64,
    /// The latest changes, oldest first (at most `HISTORY`).
    pub(crate) history: Vec<Event>,
}

const HISTORY: usize = 50;

/// An operator's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Promote,
    Pause,
    Resume,
    Abort,
    Restart,
}

impl Action {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "promote" => Self::Promote,
            "pause" => Self::Pause,
            "resume" => Self::Resume,
            "abort" => Self::Abort,
            "restart" => Self::Restart,
            _ => return None,
        })
    }
}

/// What one side (baseline or canary) answered during the step.
#[derive(Debug, Default)]
struct Side {
    requests: AtomicU64,
    errors: AtomicU64,
    /// One counter per watched status, in the plan's order.
    statuses: Box<[AtomicU64]>,
    latency: Latency,
}

/// A side's counts as plain numbers (local, or a fleet's sums).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Counts {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) statuses: Vec<u64>,
    pub(crate) latency: Vec<u64>,
}

impl Side {
    fn new(watched: usize) -> Self {
        Self {
            statuses: (0..watched).map(|_| AtomicU64::new(0)).collect(),
            ..Self::default()
        }
    }

    fn counts(&self) -> Counts {
        Counts {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            statuses: self
                .statuses
                .iter()
                .map(|s| s.load(Ordering::Relaxed))
                .collect(),
            latency: self.latency.counts(),
        }
    }
}

/// The current step's counts, local to this instance; replaced when the revision changes.
#[derive(Debug)]
struct Window {
    rev: u64,
    /// Baseline, canary.
    sides: [Side; 2],
    /// What has been added to the fleet's sums already (Redis only).
    flushed: Mutex<[Counts; 2]>,
}

impl Window {
    fn new(rev: u64, watched: usize) -> Self {
        Self {
            rev,
            sides: [Side::new(watched), Side::new(watched)],
            flushed: Mutex::new([Counts::default(), Counts::default()]),
        }
    }
}

/// The comparison made at the last check, for `/canaries`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Comparison {
    pub(crate) baseline: SideView,
    pub(crate) canary: SideView,
    /// What the check concluded: waiting for requests or time, holding, or why it failed.
    pub(crate) verdict: String,
    /// The numbers come from every instance sharing the plan (Redis) or this one alone.
    pub(crate) fleet: bool,
}

/// One side's figures at the last check.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct SideView {
    pub(crate) requests: u64,
    pub(crate) ratio_5xx: f64,
    pub(crate) p99_ms: Option<f64>,
    /// Rate of each watched status, by status.
    pub(crate) statuses: std::collections::BTreeMap<u16, f64>,
}

/// A running canary plan.
pub(crate) struct Plan {
    pub(crate) route: Arc<str>,
    cfg: weir_config::Canary,
    canary_index: usize,
    /// Baseline and canary upstream names.
    pub(crate) names: [Arc<str>; 2],
    state: Mutex<PlanState>,
    /// When the current step began, on tokio's clock (durations are measured on it, so tests
    /// on a paused clock move them; the wall-clock `step_started_ms` is for the fleet).
    step_started: Mutex<tokio::time::Instant>,
    /// The canary's share of the line now (parts of `PARTS`), read by every request.
    share: AtomicU32,
    window: ArcSwap<Window>,
    last: Mutex<Comparison>,
    store: Option<(Arc<RedisStore>, String)>,
    /// Redis operations that failed.
    pub(crate) store_errors: AtomicU64,
    pub(crate) rollbacks: AtomicU64,
    pub(crate) advances: AtomicU64,
    started: AtomicBool,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("route", &self.route)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// Unix milliseconds (the wall clock: what a fleet shares and people read).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Plan {
    /// A plan at its first step. `store` is the `[redis]` store when the plan is shared;
    /// `digest` names the plan (its config and split), so instances share only the same plan.
    pub(crate) fn new(
        route: Arc<str>,
        cfg: weir_config::Canary,
        names: [Arc<str>; 2],
        canary_index: usize,
        store: Option<Arc<RedisStore>>,
        digest: &str,
    ) -> Self {
        let state = PlanState {
            rev: 1,
            phase: Phase::Progressing,
            step: 0,
            step_started_ms: now_ms(),
            history: vec![Event {
                at_ms: now_ms(),
                phase: Phase::Progressing,
                step: 0,
                share: cfg.steps.first().copied().unwrap_or(0.0),
                why: "plan started".to_owned(),
            }],
        };
        let store = store.map(|s| {
            let key = format!("{}canary:{}:{}", s.prefix(), route, digest);
            (s, key)
        });
        let watched = cfg.statuses.len();
        let plan = Self {
            route,
            canary_index,
            names,
            share: AtomicU32::new(0),
            window: ArcSwap::from_pointee(Window::new(state.rev, watched)),
            state: Mutex::new(state),
            step_started: Mutex::new(tokio::time::Instant::now()),
            last: Mutex::new(Comparison::default()),
            store,
            store_errors: AtomicU64::new(0),
            rollbacks: AtomicU64::new(0),
            advances: AtomicU64::new(0),
            started: AtomicBool::new(false),
            cfg,
        };
        plan.publish_share();
        plan
    }

    /// The split target that is the canary.
    pub(crate) fn canary_index(&self) -> usize {
        self.canary_index
    }

    /// The canary's share now, in parts of the split's line.
    pub(crate) fn share_ppm(&self) -> u32 {
        self.share.load(Ordering::Relaxed)
    }

    pub(crate) fn state(&self) -> PlanState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn comparison(&self) -> Comparison {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn shared(&self) -> bool {
        self.store.is_some()
    }

    /// The canary's share in a state, percent.
    fn share_of(&self, s: &PlanState) -> f64 {
        match s.phase {
            Phase::Progressing | Phase::Paused => {
                self.cfg.steps.get(s.step).copied().unwrap_or(0.0)
            }
            Phase::Promoted => 100.0,
            Phase::RolledBack | Phase::Aborted => 0.0,
        }
    }

    fn publish_share(&self) {
        let s = self.state();
        let share = (self.share_of(&s) / 100.0 * f64::from(PARTS)).round() as u32;
        self.share.store(share.min(PARTS), Ordering::Relaxed);
    }

    /// Counts one answer of split target `index`.
    pub(crate) fn observe(&self, index: usize, status: u16, latency: Duration) {
        let window = self.window.load();
        let side = &window.sides[usize::from(index == self.canary_index)];
        side.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            side.errors.fetch_add(1, Ordering::Relaxed);
        }
        for (i, c) in self.cfg.statuses.iter().enumerate() {
            if c.status == status {
                side.statuses[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        side.latency.observe(latency);
    }

    /// Starts the checks (once, however many runtimes carry the plan); they end when the last
    /// runtime holding the plan is gone.
    pub(crate) fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak = Arc::downgrade(self);
        let every = self.cfg.check_interval.get();
        tokio::spawn(check_loop(weak, every));
    }

    /// One check: sync with the fleet, judge, act.
    pub(crate) async fn check(&self) {
        let fleet = match &self.store {
            Some((store, key)) => self.sync(store, key).await,
            None => None,
        };
        let window = self.window.load_full();
        let local = [window.sides[0].counts(), window.sides[1].counts()];
        let (counts, from_fleet) = match fleet {
            Some(sums) => (sums, true),
            None => (local, false),
        };
        let state = self.state();
        if state.rev != window.rev {
            return;
        }
        let elapsed = self
            .step_started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        let (verdict, comparison) = judge(&self.cfg, &counts, elapsed, state.phase);
        // A plan that ended (promoted, rolled back, aborted) keeps the comparison that decided
        // it; a running or paused one shows the live window.
        if matches!(state.phase, Phase::Progressing | Phase::Paused) {
            *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Comparison {
                fleet: from_fleet,
                ..comparison
            };
        }
        let next = match verdict {
            Verdict::Fail(why) => Some((Phase::RolledBack, state.step, why)),
            Verdict::Advance(why) => Some(self.advanced(&state, why)),
            Verdict::Wait => None,
        };
        if let Some((phase, step, why)) = next {
            self.transition(state.rev, phase, step, why).await;
        }
    }

    /// The state after a step holds: the next step, or promotion past the last or at 100 %.
    fn advanced(&self, s: &PlanState, why: String) -> (Phase, usize, String) {
        let next = s.step + 1;
        match self.cfg.steps.get(next) {
            Some(share) if *share < 100.0 => (Phase::Progressing, next, why),
            _ => (
                Phase::Promoted,
                next.min(self.cfg.steps.len().saturating_sub(1)),
                why,
            ),
        }
    }

    /// Applies an operator's action; `Err` says why it does not apply now.
    pub(crate) async fn act(&self, action: Action) -> Result<PlanState, String> {
        let s = self.state();
        let (phase, step, why) = match (action, s.phase) {
            (Action::Promote, Phase::Progressing | Phase::Paused) => {
                let (p, st, _) = self.advanced(&s, String::new());
                (p, st, "promoted by an operator".to_owned())
            }
            (Action::Pause, Phase::Progressing) => {
                (Phase::Paused, s.step, "paused by an operator".to_owned())
            }
            (Action::Resume, Phase::Paused) => (
                Phase::Progressing,
                s.step,
                "resumed by an operator".to_owned(),
            ),
            (Action::Abort, Phase::Progressing | Phase::Paused | Phase::Promoted) => {
                (Phase::Aborted, s.step, "aborted by an operator".to_owned())
            }
            (Action::Restart, Phase::RolledBack | Phase::Aborted | Phase::Promoted) => {
                (Phase::Progressing, 0, "restarted by an operator".to_owned())
            }
            (a, p) => {
                return Err(format!(
                    "cannot {} a plan that is {}",
                    format!("{a:?}").to_lowercase(),
                    phase_word(p)
                ))
            }
        };
        self.transition(s.rev, phase, step, why).await;
        Ok(self.state())
    }

    /// Moves from revision `from` to a new state: locally at once (so this instance stops
    /// sending to a failed canary without waiting for Redis), then in the fleet's record by
    /// compare-and-set. When another instance got there first, its state is adopted instead.
    async fn transition(&self, from: u64, phase: Phase, step: usize, why: String) {
        let next = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.rev != from {
                return;
            }
            let now = now_ms();
            s.rev += 1;
            s.phase = phase;
            s.step = step;
            s.step_started_ms = now;
            let share = self.share_of(&s);
            s.history.push(Event {
                at_ms: now,
                phase,
                step,
                share,
                why: why.clone(),
            });
            if s.history.len() > HISTORY {
                s.history.remove(0);
            }
            s.clone()
        };
        *self.step_started.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
        self.adopt_window(next.rev);
        self.publish_share();
        match phase {
            Phase::RolledBack => {
                self.rollbacks.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(route = %self.route, canary = %self.names[1], %why, "canary rolled back");
            }
            _ => {
                if phase == Phase::Progressing || phase == Phase::Promoted {
                    self.advances.fetch_add(1, Ordering::Relaxed);
                }
                tracing::info!(route = %self.route, canary = %self.names[1], phase = phase_word(phase), share = self.share_of(&next), %why, "canary plan changed");
            }
        }
        if let Some((store, key)) = &self.store {
            let written = store
                .script::<i64>(
                    &CAS,
                    &[key.as_bytes()],
                    &[
                        from.to_string().as_bytes(),
                        serde_json::to_string(&next).unwrap_or_default().as_bytes(),
                    ],
                )
                .await;
            match written {
                Ok(1) => {}
                // Someone else moved first: their state wins at the next sync.
                Ok(_) => {}
                Err(_) => {
                    self.store_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn adopt_window(&self, rev: u64) {
        if self.window.load().rev != rev {
            self.window
                .store(Arc::new(Window::new(rev, self.cfg.statuses.len())));
        }
    }

    /// With Redis: adopts a newer shared state (or publishes ours when there is none), adds
    /// this instance's new counts to the step's sums and returns the sums. `None` when Redis
    /// failed (the check then judges this instance's own counts).
    async fn sync(&self, store: &RedisStore, key: &str) -> Option<[Counts; 2]> {
        let ours = self.state();
        let remote: Option<String> = match store.query(redis::cmd("GET").arg(key)).await {
            Ok(v) => v,
            Err(_) => {
                self.store_errors.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let remote = remote.and_then(|text| serde_json::from_str::<PlanState>(&text).ok());
        match remote {
            Some(r) if r.rev > ours.rev => {
                *self.state.lock().unwrap_or_else(|p| p.into_inner()) = r.clone();
                // The step began when the fleet says, measured from now on this clock.
                let ago = Duration::from_millis(now_ms().saturating_sub(r.step_started_ms));
                let now = tokio::time::Instant::now();
                *self.step_started.lock().unwrap_or_else(|p| p.into_inner()) =
                    now.checked_sub(ago).unwrap_or(now);
                self.adopt_window(r.rev);
                self.publish_share();
                tracing::info!(route = %self.route, phase = phase_word(r.phase), step = r.step, "canary state from the fleet");
            }
            Some(r) if r.rev == ours.rev => {}
            // None, or older than ours (we changed while Redis was away): ours is published.
            _ => {
                let text = serde_json::to_string(&ours).unwrap_or_default();
                let set = store
                    .script::<i64>(
                        &PUBLISH,
                        &[key.as_bytes()],
                        &[ours.rev.to_string().as_bytes(), text.as_bytes()],
                    )
                    .await;
                if set.is_err() {
                    self.store_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let window = self.window.load_full();
        let counts_key = format!("{key}:w:{}", window.rev);
        let deltas = {
            let mut flushed = window.flushed.lock().unwrap_or_else(|p| p.into_inner());
            let mut deltas = Vec::new();
            for (i, side) in window.sides.iter().enumerate() {
                let now = side.counts();
                push_deltas(&mut deltas, i, &now, &flushed[i]);
                flushed[i] = now;
            }
            deltas
        };
        let mut pipe = redis::pipe();
        for (field, n) in &deltas {
            pipe.cmd("HINCRBY")
                .arg(&counts_key)
                .arg(field)
                .arg(*n)
                .ignore();
        }
        pipe.cmd("EXPIRE").arg(&counts_key).arg(86_400).ignore();
        pipe.cmd("HGETALL").arg(&counts_key);
        let summed: Result<(Vec<(String, u64)>,), _> = store.query_pipe(&pipe).await;
        match summed {
            Ok((fields,)) => Some(sums_of(&fields, self.cfg.statuses.len())),
            Err(_) => {
                // The deltas were not added: count them again next time.
                *window.flushed.lock().unwrap_or_else(|p| p.into_inner()) =
                    [Counts::default(), Counts::default()];
                self.store_errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// Field names in the step's Redis hash: `{side}r` requests, `{side}e` 5xx, `{side}s{i}` the
/// i-th watched status, `{side}l{b}` latency bucket b; side `b` or `c`.
fn push_deltas(out: &mut Vec<(String, u64)>, side: usize, now: &Counts, before: &Counts) {
    let s = if side == 0 { 'b' } else { 'c' };
    let mut push = |name: String, a: u64, b: u64| {
        if a > b {
            out.push((name, a - b));
        }
    };
    push(format!("{s}r"), now.requests, before.requests);
    push(format!("{s}e"), now.errors, before.errors);
    for (i, n) in now.statuses.iter().enumerate() {
        push(
            format!("{s}s{i}"),
            *n,
            before.statuses.get(i).copied().unwrap_or(0),
        );
    }
    for (i, n) in now.latency.iter().enumerate() {
        push(
            format!("{s}l{i}"),
            *n,
            before.latency.get(i).copied().unwrap_or(0),
        );
    }
}

fn sums_of(fields: &[(String, u64)], watched: usize) -> [Counts; 2] {
    let mut out = [0, 1].map(|_| Counts {
        statuses: vec![0; watched],
        latency: vec![0; latency::BUCKETS],
        ..Counts::default()
    });
    for (name, n) in fields {
        let mut chars = name.chars();
        let side = match chars.next() {
            Some('b') => 0,
            Some('c') => 1,
            _ => continue,
        };
        let kind = chars.next();
        let index: Option<usize> = chars.as_str().parse().ok();
        let c = &mut out[side];
        match (kind, index) {
            (Some('r'), None) => c.requests = *n,
            (Some('e'), None) => c.errors = *n,
            (Some('s'), Some(i)) if i < watched => c.statuses[i] = *n,
            (Some('l'), Some(i)) if i < latency::BUCKETS => c.latency[i] = *n,
            _ => {}
        }
    }
    out
}

/// Sets the state when the stored revision is the one we moved from.
static CAS: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local rev = cjson.decode(cur)['rev']
  if tostring(rev) ~= ARGV[1] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', 2592000)
return 1
",
    )
});

/// Sets the state when none is stored or the stored one is older.
static PUBLISH: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if cur and cjson.decode(cur)['rev'] >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', 2592000)
return 1
",
    )
});

async fn check_loop(plan: Weak<Plan>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(plan) = plan.upgrade() else { return };
        plan.check().await;
    }
}

/// What a check concludes.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    Wait,
    Advance(String),
    Fail(String),
}

fn ratio(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 / of as f64
    }
}

fn view(c: &Counts, cfg: &weir_config::Canary) -> SideView {
    SideView {
        requests: c.requests,
        ratio_5xx: ratio(c.errors, c.requests),
        p99_ms: latency::quantile(&c.latency, 0.99).map(|d| d.as_secs_f64() * 1000.0),
        statuses: cfg
            .statuses
            .iter()
            .zip(&c.statuses)
            .map(|(s, n)| (s.status, ratio(*n, c.requests)))
            .collect(),
    }
}

/// Judges a step's counts `[baseline, canary]` after `elapsed` at the step.
pub(crate) fn judge(
    cfg: &weir_config::Canary,
    counts: &[Counts; 2],
    elapsed: Duration,
    phase: Phase,
) -> (Verdict, Comparison) {
    let [base, canary] = counts;
    let mut cmp = Comparison {
        baseline: view(base, cfg),
        canary: view(canary, cfg),
        ..Comparison::default()
    };
    let verdict = if phase != Phase::Progressing {
        Verdict::Wait
    } else if canary.requests < cfg.min_requests {
        cmp.verdict = format!(
            "waiting: the canary has answered {} of the {} requests needed to judge it",
            canary.requests, cfg.min_requests
        );
        Verdict::Wait
    } else if let Some(why) = failure(cfg, &cmp, base) {
        cmp.verdict = format!("failed: {why}");
        Verdict::Fail(why)
    } else if elapsed < cfg.step_time.get() {
        cmp.verdict = format!(
            "holding: {}s of {}s at this step",
            elapsed.as_secs(),
            cfg.step_time.get().as_secs()
        );
        Verdict::Wait
    } else {
        let why = format!(
            "held for {}s over {} canary requests (5xx {:.2}% vs {:.2}%)",
            elapsed.as_secs(),
            canary.requests,
            cmp.canary.ratio_5xx * 100.0,
            cmp.baseline.ratio_5xx * 100.0
        );
        cmp.verdict = format!("advancing: {why}");
        Verdict::Advance(why)
    };
    (verdict, cmp)
}

/// The first criterion the canary fails, in words.
fn failure(cfg: &weir_config::Canary, cmp: &Comparison, base: &Counts) -> Option<String> {
    let (b, c) = (&cmp.baseline, &cmp.canary);
    if c.ratio_5xx - b.ratio_5xx > cfg.max_5xx_excess {
        return Some(format!(
            "5xx ratio {:.2}% against the baseline's {:.2}% (at most {:.2} points more allowed)",
            c.ratio_5xx * 100.0,
            b.ratio_5xx * 100.0,
            cfg.max_5xx_excess * 100.0
        ));
    }
    for s in &cfg.statuses {
        let (cr, br) = (
            c.statuses.get(&s.status).copied().unwrap_or(0.0),
            b.statuses.get(&s.status).copied().unwrap_or(0.0),
        );
        if cr - br > s.max_excess {
            return Some(format!(
                "{} ratio {:.2}% against the baseline's {:.2}% (at most {:.2} points more allowed)",
                s.status,
                cr * 100.0,
                br * 100.0,
                s.max_excess * 100.0
            ));
        }
    }
    // Latency is compared only against a baseline with as much evidence as the canary needs.
    if base.requests >= cfg.min_requests {
        if let (Some(cp), Some(bp)) = (c.p99_ms, b.p99_ms) {
            let floor = cfg.p99_floor.get().as_secs_f64() * 1000.0;
            if cp > floor && cp > bp * cfg.max_p99_ratio {
                return Some(format!(
                    "p99 {cp:.1} ms against the baseline's {bp:.1} ms (at most {}× allowed)",
                    cfg.max_p99_ratio
                ));
            }
        }
    }
    None
}

pub(crate) fn phase_word(p: Phase) -> &'static str {
    match p {
        Phase::Progressing => "progressing",
        Phase::Paused => "paused",
        Phase::Promoted => "promoted",
        Phase::RolledBack => "rolled_back",
        Phase::Aborted => "aborted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> weir_config::Canary {
        let toml = r#"upstream = "v2"
steps = [10, 50, 100]
step_time = "10s"
min_requests = 20
statuses = [{ status = 401, max_excess = 0.05 }]"#;
        toml::from_str(toml).expect("canary config")
    }

    fn plan() -> Arc<Plan> {
        Arc::new(Plan::new(
            "r".into(),
            cfg(),
            ["v1".into(), "v2".into()],
            1,
            None,
            "test",
        ))
    }

    fn feed(p: &Plan, side: usize, n: usize, status: u16, ms: u64) {
        for _ in 0..n {
            p.observe(side, status, Duration::from_millis(ms));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_canary_climbs_every_step_then_is_promoted() {
        let p = plan();
        assert_eq!(p.share_ppm(), 100_000);
        for (step, share) in [(0, 100_000), (1, 500_000)] {
            feed(&p, 0, 50, 200, 5);
            feed(&p, 1, 25, 200, 5);
            p.check().await;
            assert_eq!(p.state().step, step, "held until step_time");
            tokio::time::advance(Duration::from_secs(10)).await;
            assert_eq!(p.share_ppm(), share);
            p.check().await;
        }
        let s = p.state();
        assert_eq!(s.phase, Phase::Promoted);
        assert_eq!(p.share_ppm(), PARTS);
        assert_eq!(s.history.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_judged_before_the_minimum_requests() {
        let p = plan();
        feed(&p, 1, 19, 503, 5);
        tokio::time::advance(Duration::from_secs(60)).await;
        p.check().await;
        assert_eq!(p.state().phase, Phase::Progressing);
        assert!(p.comparison().verdict.starts_with("waiting"));
        feed(&p, 1, 1, 503, 5);
        p.check().await;
        assert_eq!(p.state().phase, Phase::RolledBack);
        assert_eq!(p.share_ppm(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_canaries_and_watched_statuses_fail() {
        let p = plan();
        feed(&p, 0, 100, 200, 10);
        feed(&p, 1, 100, 200, 40);
        p.check().await;
        let s = p.state();
        assert_eq!(s.phase, Phase::RolledBack);
        assert!(s.history[1].why.contains("p99"), "{:?}", s.history);

        let p = plan();
        feed(&p, 0, 100, 200, 10);
        feed(&p, 1, 90, 200, 10);
        feed(&p, 1, 10, 401, 10);
        p.check().await;
        assert!(p.state().history[1].why.starts_with("401 ratio"));
    }

    #[tokio::test(start_paused = true)]
    async fn operators_pause_resume_promote_abort_and_restart() {
        let p = plan();
        p.act(Action::Pause).await.expect("pause");
        feed(&p, 1, 100, 200, 1);
        tokio::time::advance(Duration::from_secs(60)).await;
        p.check().await;
        assert_eq!(p.state().phase, Phase::Paused);
        assert!(p.act(Action::Pause).await.is_err());
        p.act(Action::Resume).await.expect("resume");
        p.act(Action::Promote).await.expect("promote");
        assert_eq!(p.state().step, 1);
        p.act(Action::Abort).await.expect("abort");
        assert_eq!(p.share_ppm(), 0);
        p.act(Action::Restart).await.expect("restart");
        assert_eq!((p.state().phase, p.state().step), (Phase::Progressing, 0));
    }
}
