// Weir's dashboard: polls /dashboard.json once a second and draws it. No dependencies, no
// external fetches (the admin listener serves this page with a Content-Security-Policy that
// allows only its own origin).
"use strict";

// The charts span the data there is, from one minute up to the five minutes kept.
const MIN_WINDOW = 60, MAX_WINDOW = 300;
const COLORS = { rps: "#58a6ff", err: "#e5534b", p50: "#4caf7d", p99: "#d8a33a" };
const $ = (id) => document.getElementById(id);

function token() {
  return sessionStorage.getItem("weir-admin-token");
}

async function fetchData() {
  const headers = {};
  const t = token();
  if (t) headers["Authorization"] = "Bearer " + t;
  const resp = await fetch("/dashboard.json", { headers, cache: "no-store" });
  if (resp.status === 401) {
    $("auth").hidden = false;
    if (t) $("auth-error").textContent = "token refused";
    return null;
  }
  if (!resp.ok) throw new Error("HTTP " + resp.status);
  $("auth").hidden = true;
  return resp.json();
}

function fmt(n, digits) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (n >= 10000) return Math.round(n).toLocaleString("en");
  return n.toFixed(digits);
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
}

function duration(secs) {
  const d = Math.floor(secs / 86400), h = Math.floor(secs / 3600) % 24;
  const m = Math.floor(secs / 60) % 60, s = secs % 60;
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  if (m) return m + "m " + s + "s";
  return s + "s";
}

// Draws one or more series (arrays of [t, value]) over the last `span` seconds; a series with
// `dots` marks every point, so a lone reading between gaps still shows. A `percent` chart's
// scale stops at 100. The time axis marks each minute back from now.
function draw(canvas, now, span, series, percent) {
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const h = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  let max = 0;
  let drawn = 0;
  for (const s of series) for (const [, v] of s.points) if (v !== null && v > max) max = v;
  // Headroom above the highest point, so a flat series does not hide under the scale label.
  max = max <= 0 ? 1 : max * 1.15;
  if (percent) max = Math.min(100, Math.max(1, max));
  const pad = 4 * ratio, axis = 12 * ratio;
  const x = (t) => ((t - (now - span)) / span) * w;
  const y = (v) => h - axis - (v / max) * (h - axis - pad);
  ctx.fillStyle = "#8a96a3";
  ctx.font = 9 * ratio + "px system-ui, sans-serif";
  ctx.strokeStyle = "#1d252d";
  for (let back = 60; back < span; back += 60) {
    const tx = x(now - back);
    ctx.beginPath(); ctx.moveTo(tx, pad); ctx.lineTo(tx, h - axis); ctx.stroke();
    ctx.fillText("-" + back / 60 + "m", tx + 2 * ratio, h - 2 * ratio);
  }
  const nowLabel = "now";
  ctx.fillText(nowLabel, w - ctx.measureText(nowLabel).width - 2 * ratio, h - 2 * ratio);
  ctx.strokeStyle = "#26313c";
  ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(0, y(0)); ctx.lineTo(w, y(0)); ctx.stroke();
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.5 * ratio;
    ctx.beginPath();
    let pen = false;
    for (const [t, v] of s.points) {
      if (v === null) { pen = false; continue; }
      if (pen) ctx.lineTo(x(t), y(v)); else ctx.moveTo(x(t), y(v));
      pen = true;
      drawn++;
    }
    ctx.stroke();
    if (s.dots) {
      ctx.fillStyle = s.color;
      for (const [t, v] of s.points) {
        if (v === null) continue;
        ctx.beginPath();
        ctx.arc(x(t), y(v), 2 * ratio, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }
  ctx.fillStyle = "#8a96a3";
  ctx.font = 10 * ratio + "px system-ui, sans-serif";
  ctx.fillText(fmt(max, max < 10 ? 2 : 0) + (percent ? "%" : ""), 2 * ratio, 10 * ratio);
  canvas.dataset.points = String(drawn);
  canvas.dataset.max = String(max);
}

function routeCard(name) {
  const id = "route-" + encodeURIComponent(name);
  let card = document.getElementById(id);
  if (card) return card;
  card = document.createElement("div");
  card.className = "route";
  card.id = id;
  card.dataset.route = name;
  const title = document.createElement("h3");
  const label = document.createElement("span");
  label.textContent = name === "" ? "(no route matched)" : name;
  const now = document.createElement("span");
  now.className = "now";
  title.append(label, now);
  const charts = document.createElement("div");
  charts.className = "charts";
  for (const [kind, text] of [["rps", "requests/s"], ["err", "5xx rate %"], ["lat", "latency ms (p50, p99)"]]) {
    const cell = document.createElement("div");
    cell.className = "chart";
    const l = document.createElement("div");
    l.className = "label";
    l.textContent = text;
    const c = document.createElement("canvas");
    c.dataset.kind = kind;
    cell.append(l, c);
    charts.append(cell);
  }
  card.append(title, charts);
  $("routes").append(card);
  return card;
}

function renderRoutes(data) {
  let rps = 0, requests = 0, errors = 0;
  let first = data.now;
  for (const r of data.routes) if (r.points.length) first = Math.min(first, r.points[0].t);
  const span = Math.min(MAX_WINDOW, Math.max(MIN_WINDOW, data.now - first));
  for (const r of data.routes) {
    const card = routeCard(r.name);
    const pts = r.points;
    const last = pts[pts.length - 1];
    if (last) {
      rps += last.rps;
      requests += last.rps;
      errors += last.rps * last.error_rate;
      card.querySelector(".now").textContent =
        fmt(last.rps, 1) + " req/s · " + fmt(last.error_rate * 100, 1) + "% 5xx · p99 " + fmt(last.p99_ms, 1) + " ms";
    }
    const series = (key, scale) => pts.map((p) => [p.t, p[key] === null ? null : p[key] * (scale || 1)]);
    const [c1, c2, c3] = card.querySelectorAll("canvas");
    draw(c1, data.now, span, [{ color: COLORS.rps, points: series("rps") }]);
    draw(c2, data.now, span, [{ color: COLORS.err, points: series("error_rate", 100) }], true);
    draw(c3, data.now, span, [
      { color: COLORS.p50, points: series("p50_ms"), dots: true },
      { color: COLORS.p99, points: series("p99_ms"), dots: true },
    ]);
  }
  $("total-rps").textContent = fmt(rps, 1);
  $("total-errors").textContent = requests > 0 ? fmt((errors / requests) * 100, 2) + "%" : "0%";
  const t = data.totals;
  if (t) {
    const c = t.by_class;
    $("by-class").textContent = [c["2xx"], c["3xx"], c["4xx"], c["5xx"]].map((n) => fmt(n, 0)).join(" · ") +
      (c["1xx"] ? " (+" + c["1xx"] + " 1xx)" : "");
    $("bytes").textContent = bytes(t.bytes_in) + " · " + bytes(t.bytes_out);
  }
}

function renderCaches(data) {
  const caches = data.caches || [];
  $("caches-section").hidden = caches.length === 0;
  const rows = caches.map((c) => {
    const row = document.createElement("tr");
    const l = c.lookups;
    const tier = (t) => t ? fmt(t.objects, 0) + " · " + bytes(t.bytes) : "–";
    cell(row, c.name);
    cell(row, c.hit_ratio === null ? "–" : fmt(c.hit_ratio * 100, 1) + "%");
    cell(row, fmt(l.hit + l.stale + l.revalidated + l.miss + l.refetched, 0));
    cell(row, tier(c.memory));
    cell(row, tier(c.disk));
    cell(row, fmt(c.stored, 0));
    cell(row, fmt(c.evictions.memory + c.evictions.disk, 0));
    cell(row, String(c.fills_in_flight));
    return row;
  });
  $("caches").querySelector("tbody").replaceChildren(...rows);
}

function renderPolicies(data) {
  const policies = data.policies || [];
  $("policies-section").hidden = policies.length === 0;
  const rows = policies.map((p) => {
    const row = document.createElement("tr");
    cell(row, p.name);
    cell(row, p.describe, "muted");
    cell(row, fmt(p.allowed, 0));
    cell(row, fmt(p.denied, 0), p.denied > 0 ? "warn" : "");
    cell(row, Object.entries(p.events).map(([k, n]) => k + " " + n).join(" · ") || "–");
    return row;
  });
  $("policies").querySelector("tbody").replaceChildren(...rows);
}

// POSTs an admin action (with the token the page holds); a failure is shown under the tables.
async function adminAction(url, what) {
  const headers = {};
  const t = token();
  if (t) headers["Authorization"] = "Bearer " + t;
  try {
    const resp = await fetch(url, { method: "POST", headers });
    $("action-error").textContent = resp.ok ? "" : what + ": HTTP " + resp.status;
  } catch (e) {
    $("action-error").textContent = what + ": " + e.message;
  }
}

// Drains or enables an endpoint through the admin API.
function endpointAction(upstream, address, action) {
  const url = "/upstreams/" + encodeURIComponent(upstream) + "/endpoints/" + address + "/" + action;
  return adminAction(url, action + " " + address);
}

// A Unix time as a local date and time, with how far away it is.
function when(secs, nowSecs) {
  if (secs === null || secs === undefined) return "–";
  const d = secs - nowSecs;
  const rel = d === 0 ? "now" : d > 0 ? "in " + duration(d) : duration(-d) + " ago";
  return new Date(secs * 1000).toLocaleString() + " (" + rel + ")";
}

// Each ACME-managed certificate: where it came from, when it expires, the last and next
// order, and the last error.
function renderCertificates(data) {
  const certs = (data.status && data.status.certificates) || [];
  $("certs-section").hidden = certs.length === 0;
  const rows = certs.map((c) => {
    const row = document.createElement("tr");
    row.dataset.name = c.name;
    cell(row, c.name + (c.domains.length > 1 ? " +" + (c.domains.length - 1) : "") + (c.fleet ? " · fleet" : ""));
    cell(row, c.source === "self_signed" ? "self-signed (waiting for the CA)" : "CA", c.source === "self_signed" ? "warn" : "ok");
    const soon = c.not_after !== null && c.not_after - data.now < 7 * 86400;
    cell(row, when(c.not_after, data.now), soon ? "warn" : "");
    cell(row, when(c.last_attempt, data.now));
    cell(row, when(c.next_attempt, data.now) + (c.next_attempt_reason ? " · " + c.next_attempt_reason : ""));
    cell(row, c.orders_ok + " · " + c.orders_failed + " · " + c.adopted, c.orders_failed > 0 ? "warn" : "");
    cell(row, c.last_error || "–", c.last_error ? "bad" : "muted");
    return row;
  });
  $("certs").querySelector("tbody").replaceChildren(...rows);
}

function pct(r) {
  return fmt(r * 100, 2) + "%";
}

// The split routes (each version's share now), each canary plan's state, its last change and
// the comparison of its last check, with the operator's actions; then the mirrors.
function renderDeployments(data) {
  const d = data.deployments || { splits: [], mirrors: [] };
  $("deploy-section").hidden = d.splits.length === 0 && d.mirrors.length === 0;
  const actions = {
    progressing: ["pause", "promote", "abort"],
    paused: ["resume", "promote", "abort"],
    promoted: ["abort", "restart"],
    rolled_back: ["restart"],
    aborted: ["restart"],
  };
  const rows = d.splits.map((s) => {
    const row = document.createElement("tr");
    row.dataset.route = s.route;
    cell(row, s.route);
    cell(row, s.versions.map((v) => v.upstream + " " + fmt(v.share_percent, 1) + "%").join(" · "));
    const c = s.canary;
    if (!c) {
      cell(row, "–", "muted");
      cell(row, "–", "muted");
      cell(row, "–", "muted");
      row.append(document.createElement("td"));
      return row;
    }
    cell(row, c.canary + " at step " + (c.step + 1) + (c.shared ? " · fleet" : ""));
    const last = c.history[c.history.length - 1];
    const cls = c.state === "rolled_back" || c.state === "aborted" ? "bad" : c.state === "promoted" ? "ok" : c.state === "paused" ? "warn" : "";
    const st = document.createElement("td");
    st.className = "state " + cls;
    st.textContent = c.state.replace("_", " ") + " · " + fmt(c.share_percent, 1) + "%";
    if (last && last.why) {
      const why = document.createElement("div");
      why.className = "muted";
      why.textContent = last.why;
      st.append(why);
    }
    row.append(st);
    const k = c.comparison;
    const p99 = (v) => v.p99_ms === null ? "–" : fmt(v.p99_ms, 1) + " ms";
    cell(row, k.canary.requests + " vs " + k.baseline.requests + " req · 5xx " + pct(k.canary.ratio_5xx) + " vs " + pct(k.baseline.ratio_5xx) + " · p99 " + p99(k.canary) + " vs " + p99(k.baseline) + (k.verdict ? " — " + k.verdict : ""));
    const td = document.createElement("td");
    for (const a of actions[c.state] || []) {
      const b = document.createElement("button");
      b.textContent = a;
      b.className = "action";
      b.dataset.canary = a;
      b.addEventListener("click", () => adminAction("/canaries/" + encodeURIComponent(s.route) + "/" + a, a + " " + s.route));
      td.append(b);
    }
    row.append(td);
    return row;
  });
  $("splits").querySelector("tbody").replaceChildren(...rows);
  $("splits").hidden = d.splits.length === 0;
  const mirrors = d.mirrors.map((m) => {
    const row = document.createElement("tr");
    cell(row, m.route);
    cell(row, m.upstream);
    cell(row, fmt(m.sent, 0));
    cell(row, fmt(m.dropped_in_flight, 0) + " · " + fmt(m.dropped_body_too_large + m.dropped_body_incomplete, 0));
    cell(row, fmt(m.failed, 0) + " · " + fmt(m.timed_out, 0), m.failed + m.timed_out > 0 ? "warn" : "");
    cell(row, String(m.in_flight));
    return row;
  });
  $("mirrors").querySelector("tbody").replaceChildren(...mirrors);
  $("mirrors").hidden = d.mirrors.length === 0;
}

function renderStatus(data) {
  const s = data.status;
  $("version").textContent = "v" + s.version + " · config " + s.config_hash;
  $("uptime").textContent = duration(s.uptime_seconds);
  $("in-flight").textContent = String(data.in_flight);
  const r = s.last_reload;
  const el = $("last-reload");
  if (!r) {
    el.textContent = "none since start";
    el.className = "value small muted";
  } else {
    const at = new Date(r.unix_time * 1000).toLocaleTimeString();
    el.textContent = (r.ok ? "ok at " : "FAILED at ") + at + (r.error ? " — " + r.error.split("\n")[0] : "");
    el.className = "value small " + (r.ok ? "ok" : "bad");
  }
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.append(td);
}

function renderUpstreams(data) {
  const body = $("upstreams").querySelector("tbody");
  const rows = [];
  for (const u of data.upstreams) {
    // No breaker configured is not a healthy breaker: say "none", greyed.
    const breaker = u.circuit_breaker || "none";
    const bcls = breaker === "closed" ? "ok" : breaker === "none" ? "muted" : "bad";
    // Endpoints in the set, then removed ones still finishing requests.
    const eps = u.endpoints.concat((u.draining || []).map((ep) => Object.assign({}, ep, { draining: true })));
    eps.forEach((ep, i) => {
      const row = document.createElement("tr");
      cell(row, i === 0 ? u.name + (u.panic ? " (panic)" : "") + (u.discovery ? " · " + u.discovery.provider : "") : "", u.panic ? "bad" : "");
      cell(row, i === 0 ? breaker : "", i === 0 ? bcls : "");
      cell(row, ep.address + (ep.source && ep.source !== "static" ? " (" + ep.source + ")" : ""));
      const state = ep.draining ? "draining" : ep.drained ? "drained" : ep.ejected ? "ejected" : ep.awaiting_first_check ? "awaiting check" : !ep.active_check_healthy ? "unhealthy" : ep.in_service ? "healthy" : "out";
      cell(row, state, state === "healthy" ? "ok" : ["drained", "draining", "awaiting check"].includes(state) ? "warn" : "bad");
      cell(row, String(ep.weight));
      cell(row, String(ep.in_flight));
      cell(row, ep.latency_ewma_ms === null ? "–" : fmt(ep.latency_ewma_ms, 2) + " ms");
      cell(row, String(ep.requests));
      cell(row, String(ep.failures), ep.failures > 0 ? "warn" : "");
      const actions = document.createElement("td");
      if (!ep.draining) {
        const b = document.createElement("button");
        const action = ep.drained ? "enable" : "drain";
        b.textContent = action;
        b.className = "action";
        b.dataset.endpoint = ep.address;
        b.addEventListener("click", () => endpointAction(u.name, ep.address, action));
        actions.append(b);
      }
      row.append(actions);
      rows.push(row);
    });
  }
  body.replaceChildren(...rows);
}

async function tick() {
  try {
    const data = await fetchData();
    if (data) {
      renderStatus(data);
      renderRoutes(data);
      renderUpstreams(data);
      renderCaches(data);
      renderPolicies(data);
      renderDeployments(data);
      renderCertificates(data);
      $("conn").textContent = "live";
      $("conn").className = "pill ok";
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    }
  } catch (e) {
    $("conn").textContent = "disconnected";
    $("conn").className = "pill bad";
  }
  setTimeout(tick, 1000);
}

$("auth").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("weir-admin-token", $("token").value);
  $("auth-error").textContent = "";
});
tick();
