#!/usr/bin/env bash
# Instructions per request, deterministic: Weir, nginx and HAProxy each run under
# `valgrind --tool=callgrind` in front of the same native nginx origin, and serve a fixed
# number of requests from h2load. Each target runs twice, with N/5 and with N requests; the
# difference of the two instruction totals divided by the difference of the request counts is
# the cost of one request, with start-up, warm-up and shutdown cancelled out. Machine noise
# does not move it, so a change of one percent shows.
#
# Cases: h1-1k (HTTP/1.1 keep-alive, 1 KiB body), h1-100k, h2c-1k (HTTP/2 prior knowledge,
# 4 streams per connection). All targets: one worker, access logs off, upstream keep-alive on.
#
# Targets besides the three proxies — Weir with one observability part changed, for what each
# costs by itself (user space; the kernel's share of writing the log is not counted):
#   weir-bare      route metrics off too (plain `weir` has them on, as shipped)
#   weir-log       plus a JSON access log appended to a file
#   weir-tracing   plus tracing, 1% sampled, exported to a local OTLP collector (otlp-sink)
# e.g. --targets "weir weir-bare weir-log weir-tracing" --cases h1-1k.
#
# With --profile, each Weir target's N-request run's callgrind file is kept and its top functions by
# inclusive and by self cost are printed (callgrind_annotate), the figures docs/benchmarks.md
# quotes before and after a change.
#
# With --cache, callgrind also simulates the L1 caches (--cache-sim=yes) and each target's data
# reads and writes, L1 instruction misses and L1 data read and write misses a request are
# printed beside its instructions (docs/benchmarks.md, "Where the rest of the user time goes").
# With --ll BYTES the last-level cache valgrind models (by default the host's L3) is BYTES, 8-way
# (this machine's per-core L2 is --ll 524288): its misses a request are what the requests in
# flight evict of each other's memory.
#
# Usage: bench/instructions.sh [--requests N] [--conns C] [--targets "weir nginx haproxy ..."]
#                              [--cases "h1-1k h2c-1k h1-100k"] [--profile] [--cache [--ll BYTES]]
#                              [--weir PATH]
# Writes bench/results/instructions.md. Loopback only; every run is bounded by N.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

REQUESTS=10000
CONNS=8
TARGETS="weir nginx haproxy"
CASES="h1-1k h2c-1k h1-100k"
PROFILE=0
CACHE=0
LL=""
WEIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --requests) REQUESTS=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --targets) TARGETS=$2; shift 2 ;;
    --cases) CASES=$2; shift 2 ;;
    --profile) PROFILE=1; shift ;;
    --cache) CACHE=1; shift ;;
    --ll) LL=$2; CACHE=1; shift 2 ;;
    --weir) WEIR=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
SMALL=$((REQUESTS / 5))

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} ..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

bench_weir

bench_workdir instr

ORIGIN_PORT=18180; PORT=18181; H2C_PORT=18182
mkdir -p "$WORK/nginx"
bench_origin "$WORK" "$ORIGIN_PORT"

# The proxies, each on $PORT (HTTP/1.1) and $H2C_PORT (h2c by prior knowledge).
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
master_process off;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$PORT backlog=1024;
    listen 127.0.0.1:$H2C_PORT http2 backlog=1024;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 1024
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$PORT
  bind 127.0.0.1:$H2C_PORT proto h2
  default_backend be
backend be
  server origin 127.0.0.1:$ORIGIN_PORT
CONF
cat > "$WORK/weir.toml" <<CONF
workers = 1
access_log = { enabled = false }
[[listeners]]
name = "main"
bind = "127.0.0.1:$PORT"
[[listeners]]
name = "h2c"
bind = "127.0.0.1:$H2C_PORT"
[[upstreams]]
name = "origin"
endpoints = ["127.0.0.1:$ORIGIN_PORT"]
[[routes]]
proxy = { upstream = "origin" }
CONF
OTLP_PORT=18183
case " $TARGETS " in
  *" weir-tracing "*)
    cargo build --release -p weir-testkit --bin otlp-sink --locked -q
    target/release/otlp-sink "127.0.0.1:$OTLP_PORT" 2>"$WORK/otlp-sink.log" &
    PIDS+=($!) ;;
esac
# The observability variants: the same Weir with one thing changed.
sed 's/^access_log = .*/access_log = { enabled = false }\nmetrics = { enabled = false }/' "$WORK/weir.toml" > "$WORK/weir-bare.toml"
sed "s|^access_log = .*|access_log = { path = \"$WORK/access.log\" }|" "$WORK/weir.toml" > "$WORK/weir-log.toml"
sed "s|^access_log = .*|access_log = { enabled = false }\ntracing = { otlp_endpoint = \"http://127.0.0.1:$OTLP_PORT\", sampling_ratio = 0.01 }|" "$WORK/weir.toml" > "$WORK/weir-tracing.toml"

start() { # TARGET OUTFILE: start it under callgrind; its pid in $TARGET_PID
  local vg=(valgrind --tool=callgrind --callgrind-out-file="$2" --dump-instr=no)
  [ "$CACHE" = 1 ] && vg+=(--cache-sim=yes)
  [ -n "$LL" ] && vg+=("--LL=$LL,8,64")
  case "$1" in
    weir*) WEIR_LOG=warn "${vg[@]}" "$WEIR" run -c "$WORK/$1.toml" >/dev/null 2>"$WORK/$1.log" & ;;
    nginx) "${vg[@]}" "$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >/dev/null 2>"$WORK/nginx.log" & ;;
    haproxy) "${vg[@]}" "$HAPROXY" -f "$WORK/haproxy.cfg" -db >/dev/null 2>"$WORK/haproxy.log" & ;;
  esac
  TARGET_PID=$!
}
ready() { # wait (bounded) until both ports answer
  for _ in $(seq 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT/1k" && curl -sf -o /dev/null --http2-prior-knowledge "http://127.0.0.1:$H2C_PORT/1k" && return 0
    sleep 0.1
  done
  echo "$1 did not answer under valgrind" >&2; return 1
}
load() { # CASE REQUESTS
  local body=${1#*-} args=(-n "$2" -c "$CONNS" -t 1)
  case "$1" in
    h1-*) h2load --h1 "${args[@]}" "http://127.0.0.1:$PORT/$body" ;;
    h2c-*) h2load -m 4 "${args[@]}" "http://127.0.0.1:$H2C_PORT/$body" ;;
  esac > "$WORK/h2load.out" 2>&1
  grep -q "succeeded, 0 errored" "$WORK/h2load.out" || grep -q "^requests: $2 total, $2 started, $2 done, $2 succeeded" "$WORK/h2load.out" || {
    echo "h2load against $1 did not succeed:" >&2; cat "$WORK/h2load.out" >&2; return 1; }
}
total_ir() { awk '/^(summary|totals):/ {print $2; exit}' "$1"; }
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$ORIGIN_PORT/1k" && break; sleep 0.1; done

declare -A IR SUMMARY
for c in $CASES; do
  for t in $TARGETS; do
    for n in $SMALL $REQUESTS; do
      out="$WORK/$t-$c-$n.callgrind"
      start "$t" "$out"
      ready "$t"
      load "$c" "$n"
      kill -TERM "$TARGET_PID"
      wait "$TARGET_PID" 2>/dev/null || true
      IR[$t-$c-$n]=$(total_ir "$out")
      # With --cache the summary line is: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
      SUMMARY[$t-$c-$n]=$(awk '/^(summary|totals):/ {$1 = ""; print; exit}' "$out")
      [ "$PROFILE" = 1 ] && [[ "$t" == weir* ]] && [ "$n" = "$REQUESTS" ] && cp "$out" "bench/results/$t-$c.callgrind"
    done
    per=$(( (IR[$t-$c-$REQUESTS] - IR[$t-$c-$SMALL]) / (REQUESTS - SMALL) ))
    IR[$t-$c]=$per
    printf '  %-8s %-8s %10d instructions / request\n' "$t" "$c" "$per"
    if [ "$CACHE" = 1 ]; then
      awk -v a="${SUMMARY[$t-$c-$SMALL]}" -v b="${SUMMARY[$t-$c-$REQUESTS]}" -v n=$((REQUESTS - SMALL)) 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        printf "  %-8s %-8s   data reads %d, writes %d; L1 misses: instructions %d, data reads %d, data writes %d (a request)\n",
          "", "", (y[2]-x[2])/n, (y[3]-x[3])/n, (y[4]-x[4])/n, (y[5]-x[5])/n, (y[6]-x[6])/n
        printf "  %-8s %-8s   last-level misses: instructions %d, data reads %d, data writes %d\n",
          "", "", (y[7]-x[7])/n, (y[8]-x[8])/n, (y[9]-x[9])/n }'
    fi
  done
done

mkdir -p bench/results
REPORT=bench/results/instructions.md
{
  echo "Run: $(date -u +%Y-%m-%dT%H:%MZ); valgrind $(valgrind --version | sed 's/valgrind-//'), callgrind; $REQUESTS − $SMALL requests over $CONNS connections (h2load)."
  echo "nginx $("$NGINX" -v 2>&1 | sed 's/.*\///'), HAProxy $("$HAPROXY" -v | awk 'NR==1 {print $3}'), weir $("$WEIR" --version | awk '{print $2}') ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))."
  echo
  # Weir ÷ each other proxy; the Weir variants are set against plain Weir below instead.
  PEERS=$(for t in $TARGETS; do case "$t" in weir*) ;; *) printf '%s ' "$t" ;; esac; done)
  echo "| case | $(for t in $TARGETS; do printf '%s | ' "$t"; done)$(for t in $PEERS; do printf 'weir ÷ %s | ' "$t"; done)"
  echo "|---|$(for t in $TARGETS; do printf -- '---:|'; done)$(for t in $PEERS; do printf -- '---:|'; done)"
  for c in $CASES; do
    printf '| %s | ' "$c"
    for t in $TARGETS; do printf "%'d | " "${IR[$t-$c]}"; done
    for t in $PEERS; do
      [ -n "${IR[weir-$c]:-}" ] && awk -v a="${IR[weir-$c]}" -v b="${IR[$t-$c]}" 'BEGIN { printf "%.2f | ", a/b }'
    done
    echo
  done
  for c in $CASES; do
    [ -n "${IR[weir-$c]:-}" ] || continue
    for t in $TARGETS; do
      case "$t" in weir-*) awk -v a="${IR[$t-$c]}" -v b="${IR[weir-$c]}" -v t="$t" -v c="$c" \
        'BEGIN { printf "\n%s, %s: %+d instructions per request against weir (%+.1f%%)", t, c, a - b, (a - b) * 100 / b }' ;; esac
    done
  done
  echo
  echo
  echo "Instructions per request = (instructions after N requests − after N/5) ÷ (N − N/5), each a separate run under callgrind."
} > "$REPORT"
echo
cat "$REPORT"
if [ "$PROFILE" = 1 ]; then
  for c in $CASES; do for t in $TARGETS; do
    f=bench/results/$t-$c.callgrind
    [[ "$t" == weir* ]] && [ -f "$f" ] || continue
    echo; echo "== $t $c: top inclusive (callgrind_annotate --inclusive=yes $f)"
    callgrind_annotate --inclusive=yes "$f" 2>/dev/null | sed -n '/^Ir/,$p' | head -45
    echo; echo "== $t $c: top self"
    callgrind_annotate "$f" 2>/dev/null | sed -n '/^Ir/,$p' | head -35
  done; done
fi
