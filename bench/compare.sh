#!/usr/bin/env bash
# Side-by-side reverse-proxy benchmark on loopback: Weir, nginx and HAProxy in front of the
# same nginx origin, each with ONE worker pinned to the same CPU, access logs off in all,
# upstream keep-alive on in all. wrk drives 64 and 256 connections against a 1 KiB and a
# 100 KiB body; h2load drives a fixed rate (--rate req/s in total, default 20000, over 64
# connections) and h2c (64 connections x 4 streams); all in interleaved rounds (nginx,
# haproxy, weir, nginx, …), the median round reported. The headline is CPU per request: the
# proxy's utime + stime (split into user and kernel) over the run divided by the requests it
# served; then requests/s, p50, p99, peak RSS and Weir's ratios. Writes the tables to
# bench/results/latest.md. (bench/instructions.sh gives the deterministic figure:
# instructions per request under callgrind.)
#
# With --suite tls (or all, the default), it then terminates TLS in all three with the same
# ECDSA P-256 certificate and measures new TLS connections per second (wrk with
# "Connection: close": a full handshake per request) and HTTP/2-over-TLS throughput (h2load,
# 64 connections x 10 streams).
#
# With --suite observe (or all), it measures what observability costs Weir: the same Weir with
# metrics, a JSON access log to a file and OpenTelemetry tracing (1% sampled, exported to a
# local OTLP collector) against one with all three disabled, and with each of the three alone
# (what each costs by itself), 64 connections, 1 KiB body, interleaved rounds.
#
# With --suite ratelimit (or all), it measures what a rate limit costs, in memory and through
# Redis: Weir with no policy, with a GCRA limit kept in memory, and with the same limit kept in
# a local redis-server (one Lua script round trip per request), beside nginx with `limit_req`
# (in memory; nginx has no shared store) — 64 connections, 1 KiB body, every request admitted
# (the limit is far above the load), one key for all requests (the hot-key case).
#
# With --suite cache (or all), it measures cache hits: Weir's cache, Varnish (Debian's varnish,
# default VCL, malloc storage) and nginx proxy_cache, each pinned to the same CPU, in front of
# an origin that answers with Cache-Control: max-age=3600; 64 connections, a 1 KiB and a
# 100 KiB object, every request a hit after the first.
#
# Usage: [WEIR_BIN=path] bench/compare.sh [--duration SECONDS] [--rounds N] [--conns "64 256"] [--bodies "1k 100k"]
#                         [--rate REQ_PER_S] [--suite plain|tls|observe|ratelimit|cache|all]
# Bounded: every wrk / h2load run lasts --duration seconds (default 8), loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

DURATION=8
ROUNDS=5
CONNS="64 256"
BODIES="1k 100k"
SUITE=all
RATE=20000
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --bodies) BODIES=$2; shift 2 ;;
    --suite) SUITE=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

# --- peers from Debian packages, installed if missing --------------------------------------
missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v wrk >/dev/null || missing+=(wrk)
command -v taskset >/dev/null || missing+=(util-linux)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v openssl >/dev/null || missing+=(openssl)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v varnishd >/dev/null || [ -x /usr/sbin/varnishd ] || missing+=(varnish)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} ..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

# WEIR_BIN=path runs another build (one made in a worktree, say) instead of building here.
WEIR=${WEIR_BIN:-}
bench_weir
if [ "$SUITE" = observe ] || [ "$SUITE" = all ]; then
  cargo build --release -p weir-testkit --bin otlp-sink --locked -q
fi
OTLP_SINK=$PWD/target/release/otlp-sink

NCPU=$(nproc)
# The proxy under test gets the last CPU to itself; origin and load generator share the rest.
PROXY_CPU=$((NCPU - 1))
LOAD_CPUS=0
[ "$NCPU" -gt 2 ] && LOAD_CPUS="0-$((NCPU - 2))"

bench_workdir bench

ORIGIN_PORT=18080; NGINX_PORT=18081; HAPROXY_PORT=18082; WEIR_PORT=18083
CACHE_ORIGIN_PORT=18110
NGINX_TLS=18091; HAPROXY_TLS=18092; WEIR_TLS=18093
NGINX_H2C=18094; HAPROXY_H2C=18095

# --- one certificate for all three TLS listeners ------------------------------------------
bench_cert "$WORK"
cat "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/combined.pem"
chmod 644 "$WORK/key.pem" "$WORK/combined.pem"

# --- origin: nginx serving fixed bodies ------------------------------------------------------
mkdir -p "$WORK/nginx"
ORIGIN_CPUS=$LOAD_CPUS \
  ORIGIN_EXTRA="server { listen 127.0.0.1:$CACHE_ORIGIN_PORT backlog=4096; root $WORK/www; expires 1h; }" \
  bench_origin "$WORK" "$ORIGIN_PORT"

# --- nginx as reverse proxy ------------------------------------------------------------------
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 256; }
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=4096;
    listen 127.0.0.1:$NGINX_H2C http2 backlog=4096;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;
    }
  }
  server {
    listen 127.0.0.1:$NGINX_TLS ssl http2 backlog=4096;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
taskset -c "$PROXY_CPU" "$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
PIDS+=($!); NGINX_PID=$!

# --- HAProxy ---------------------------------------------------------------------------------
cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  bind 127.0.0.1:$HAPROXY_H2C proto h2
  default_backend be
frontend fe_tls
  bind 127.0.0.1:$HAPROXY_TLS ssl crt $WORK/combined.pem alpn h2,http/1.1
  default_backend be
backend be
  server origin 127.0.0.1:$ORIGIN_PORT
CONF
taskset -c "$PROXY_CPU" "$HAPROXY" -f "$WORK/haproxy.cfg" -db &
PIDS+=($!); HAPROXY_PID=$!

# --- Weir ------------------------------------------------------------------------------------
bench_weir_toml "$WEIR_PORT" "$WEIR_TLS" "$ORIGIN_PORT" "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/weir.toml"
WEIR_LOG=warn taskset -c "$PROXY_CPU" "$WEIR" run -c "$WORK/weir.toml" > /dev/null &
PIDS+=($!); WEIR_PID=$!

for port in $ORIGIN_PORT $NGINX_PORT $HAPROXY_PORT $WEIR_PORT; do
  bench_answering "http://127.0.0.1:$port/1k" "port $port"
done

declare -A PORT=([nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT [weir]=$WEIR_PORT)
declare -A PID=([nginx]=$NGINX_PID [haproxy]=$HAPROXY_PID [weir]=$WEIR_PID)
# h2c by prior knowledge: nginx and HAProxy need a listener of its own; Weir's serves both.
declare -A H2C_PORT=([nginx]=$NGINX_H2C [haproxy]=$HAPROXY_H2C [weir]=$WEIR_PORT)
TARGETS="nginx haproxy weir"

to_ms() { # wrk latency like 1.23ms / 850.00us / 1.02s -> milliseconds
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'
}
median() { sort -g | awk '{a[NR]=$1} END { print a[int((NR+1)/2)] }'; }
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # "utime stime" in clock ticks of a process and its children (nginx's worker)
  local p u=0 s=0 pu ps
  for p in $1 $(pgrep -P "$1" || true); do
    # Fields after the ")" that closes the command name: utime is the 12th, stime the 13th.
    read -r pu ps < <(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12, $13}') || continue
    u=$((u + ${pu:-0})); s=$((s + ${ps:-0}))
  done
  echo "$u $s"
}
# One measured run: PID FILE LABEL then the load command (wrk or h2load). Appends
# "req/s p50 p99 user_us kernel_us" to FILE and prints it: latency in ms (h2load reports no
# percentiles: its mean is in both columns), and the CPU the process PID (with its children)
# spent per request, from utime and stime over the run. Warns, naming LABEL, on errors.
measure() {
  local pid=$1 file=$2 label=$3 out u0 s0 u1 s1 n rps p50 p99 errs
  shift 3
  read -r u0 s0 < <(cpu_ticks "$pid")
  out=$(taskset -c "$LOAD_CPUS" "$@" 2>&1)
  read -r u1 s1 < <(cpu_ticks "$pid")
  case "$1" in
    wrk)
      n=$(awk '/ requests in / {print $1}' <<<"$out")
      rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
      p50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
      p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
      errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out") ;;
    h2load)
      n=$(awk '/^requests:/ {print $8}' <<<"$out")
      rps=$(awk '/^finished in/ {print $4}' <<<"$out")
      p50=$(to_ms "$(awk '/^time for request:/ {print $6}' <<<"$out")"); p99=$p50
      errs=$(awk '/^requests:/ && ($10 != 0 || $12 != 0) {print}' <<<"$out") ;;
  esac
  [ -n "$errs" ] && echo "  warning: $label: $errs" >&2
  [ "${n:-0}" -gt 0 ] || { echo "  $label: no requests completed" >&2; n=1; }
  local line
  line=$(awk -v r="$rps" -v a="$p50" -v b="$p99" -v du=$((u1 - u0)) -v ds=$((s1 - s0)) -v n="$n" -v hz="$CLK_TCK" \
    'BEGIN { printf "%s %s %s %.2f %.2f", r, a, b, du * 1e6 / hz / n, ds * 1e6 / hz / n }')
  echo "$line" >> "$file"
  echo "$line"
}
# Medians of each column of a results FILE: "req/s p50 p99 user_us kernel_us".
medians() {
  local i out=""
  for i in 1 2 3 4 5; do out="$out $(awk -v i=$i '{print $i}' "$1" | median)"; done
  echo "$out"
}
# A wrk run of 1 thread: PID FILE LABEL CONNS URL [extra wrk args].
wrk_run() {
  local pid=$1 file=$2 label=$3 conns=$4 url=$5
  shift 5
  measure "$pid" "$file" "$label" wrk -t1 -c"$conns" -d"${DURATION}s" --latency "$@" "$url"
}

# --- plain HTTP: saturating wrk runs, a fixed-rate run, and h2c --------------------------
# A case is "h1-BODY-cCONNS" (wrk, saturating), "rate-1k" (h2load over HTTP/1.1 at --rate
# requests/s in total over 64 connections: the rate every target sustains, where CPU per
# request compares like with like) or "h2c-1k" (h2load, 64 connections x 4 streams).
declare -A RES
CASES=()
for body in $BODIES; do for c in $CONNS; do CASES+=("h1-$body-c$c"); done; done
if [ -n "$BODIES" ]; then CASES+=(rate-1k h2c-1k); fi
CACHE_BODIES=$BODIES
{ [ "$SUITE" = tls ] || [ "$SUITE" = observe ] || [ "$SUITE" = ratelimit ] || [ "$SUITE" = cache ]; } && CASES=()
run_case() { # CASE TARGET FILE
  local body
  case "$1" in
    h1-*) body=${1#h1-}; body=${body%-c*}
      wrk_run "${PID[$2]}" "$3" "$2 $1" "${1##*-c}" "http://127.0.0.1:${PORT[$2]}/$body" ;;
    rate-1k) measure "${PID[$2]}" "$3" "$2 $1" h2load --h1 -c 64 -t 1 -D "$DURATION" \
        --rps "$(awk -v r="$RATE" 'BEGIN { printf "%.3f", r / 64 }')" "http://127.0.0.1:${PORT[$2]}/1k" ;;
    h2c-1k) measure "${PID[$2]}" "$3" "$2 $1" h2load -c 64 -m 4 -t 1 -D "$DURATION" "http://127.0.0.1:${H2C_PORT[$2]}/1k" ;;
  esac
}
for case in "${CASES[@]}"; do
  for t in $TARGETS; do : > "$WORK/$t-$case"; done
  for r in $(seq "$ROUNDS"); do
    for t in $TARGETS; do
      read -r rps p50 p99 usr sys < <(run_case "$case" "$t" "$WORK/$t-$case")
      printf '  round %s %-8s %-11s %9.0f req/s  CPU %6.2f us/req (user %6.2f, kernel %6.2f)  p50 %7.3f ms  p99 %7.3f ms\n' \
        "$r" "$t" "$case" "$rps" "$(awk -v a="$usr" -v b="$sys" 'BEGIN { print a + b }')" "$usr" "$sys" "$p50" "$p99"
    done
  done
  for t in $TARGETS; do RES[$t-$case]=$(medians "$WORK/$t-$case"); done
done

# --- TLS: new connections per second, and HTTP/2 over TLS ---------------------------------
declare -A TLS_PORT=([nginx]=$NGINX_TLS [haproxy]=$HAPROXY_TLS [weir]=$WEIR_TLS)
declare -A HS H2
if [ "$SUITE" = tls ] || [ "$SUITE" = all ]; then
  for t in $TARGETS; do
    curl -skf -o /dev/null "https://127.0.0.1:${TLS_PORT[$t]}/1k" || { echo "$t TLS port is not answering" >&2; exit 1; }
    : > "$WORK/$t-hs"; : > "$WORK/$t-h2"
  done
  for r in $(seq "$ROUNDS"); do
    for t in $TARGETS; do
      read -r hs _ _ hu hk < <(wrk_run "${PID[$t]}" "$WORK/$t-hs" "$t TLS handshakes" 32 "https://127.0.0.1:${TLS_PORT[$t]}/1k" -H "Connection: close")
      out=$(taskset -c "$LOAD_CPUS" h2load -n 1 -c 1 "https://127.0.0.1:${TLS_PORT[$t]}/1k" 2>&1)
      proto=$(awk '/Application protocol:/ {print $3}' <<<"$out")
      [ "$proto" = h2 ] || echo "  warning: $t negotiated '$proto', not h2" >&2
      read -r h2 _ _ u k < <(measure "${PID[$t]}" "$WORK/$t-h2" "$t h2 over TLS" h2load -D "$DURATION" -c 64 -m 10 -t 1 "https://127.0.0.1:${TLS_PORT[$t]}/1k")
      printf '  round %s %-8s TLS new conns %8.0f /s (%7.1f us CPU each)   h2 over TLS %10.0f req/s (%6.2f us CPU each)\n' \
        "$r" "$t" "$hs" "$(awk -v a="$hu" -v b="$hk" 'BEGIN { print a + b }')" "$h2" "$(awk -v a="$u" -v b="$k" 'BEGIN { print a + b }')"
    done
  done
  for t in $TARGETS; do
    HS[$t]=$(medians "$WORK/$t-hs")
    H2[$t]=$(medians "$WORK/$t-h2")
  done
fi

# --- observability cost: Weir with metrics + access log + 1% tracing vs none of them, and ---
# --- with each one alone --------------------------------------------------------------------
declare -A OBS OBS_PID
OBS_CONFIGS="bare metrics log tracing observed"
if [ "$SUITE" = observe ] || [ "$SUITE" = all ]; then
  BARE_PORT=18084; OBSERVED_PORT=18085; OTLP_PORT=18086; OBS_ADMIN=18087
  METRICS_PORT=18088; LOG_PORT=18089; TRACING_PORT=18090
  taskset -c "$LOAD_CPUS" "$OTLP_SINK" "127.0.0.1:$OTLP_PORT" 2> "$WORK/otlp-sink.log" &
  PIDS+=($!)
  common_weir() { # listener on port $1, then the shared upstream and route
    cat <<CONF
[server]
max_connections = 8192
[[listeners]]
name = "main"
bind = "127.0.0.1:$1"
[[upstreams]]
name = "origin"
endpoints = ["127.0.0.1:$ORIGIN_PORT"]
max_idle_per_endpoint = 512
[[routes]]
name = "all"
proxy = { upstream = "origin" }
CONF
  }
  { echo 'workers = 1'; echo 'access_log = { enabled = false }'; echo 'metrics = { enabled = false }'
    common_weir $BARE_PORT; } > "$WORK/weir-bare.toml"
  { echo 'workers = 1'
    echo "access_log = { path = \"$WORK/access.log\" }"
    echo "admin = { bind = \"127.0.0.1:$OBS_ADMIN\" }"
    echo 'metrics = { enabled = true }'
    echo "tracing = { otlp_endpoint = \"http://127.0.0.1:$OTLP_PORT\", sampling_ratio = 0.01 }"
    common_weir $OBSERVED_PORT; } > "$WORK/weir-observed.toml"
  # One part on, the other two off.
  { echo 'workers = 1'; echo 'access_log = { enabled = false }'; echo 'metrics = { enabled = true }'
    common_weir $METRICS_PORT; } > "$WORK/weir-metrics.toml"
  { echo 'workers = 1'; echo "access_log = { path = \"$WORK/access-only.log\" }"; echo 'metrics = { enabled = false }'
    common_weir $LOG_PORT; } > "$WORK/weir-log.toml"
  { echo 'workers = 1'; echo 'access_log = { enabled = false }'; echo 'metrics = { enabled = false }'
    echo "tracing = { otlp_endpoint = \"http://127.0.0.1:$OTLP_PORT\", sampling_ratio = 0.01 }"
    common_weir $TRACING_PORT; } > "$WORK/weir-tracing.toml"
  for cfg in $OBS_CONFIGS; do
    "$WEIR" check "$WORK/weir-$cfg.toml" >/dev/null
    WEIR_LOG=warn taskset -c "$PROXY_CPU" "$WEIR" run -c "$WORK/weir-$cfg.toml" > /dev/null &
    PIDS+=($!); OBS_PID[$cfg]=$!
  done
  declare -A OBS_PORT=([bare]=$BARE_PORT [metrics]=$METRICS_PORT [log]=$LOG_PORT [tracing]=$TRACING_PORT [observed]=$OBSERVED_PORT)
  for cfg in $OBS_CONFIGS; do
    bench_answering "http://127.0.0.1:${OBS_PORT[$cfg]}/1k" "weir-$cfg"
    : > "$WORK/obs-$cfg"
  done
  for r in $(seq "$ROUNDS"); do
    for cfg in $OBS_CONFIGS; do
      read -r rps p50 p99 usr sys < <(wrk_run "${OBS_PID[$cfg]}" "$WORK/obs-$cfg" "weir-$cfg" 64 "http://127.0.0.1:${OBS_PORT[$cfg]}/1k")
      printf '  round %s weir-%-9s 1k c=64  %10.0f req/s  CPU %6.2f us/req  p50 %7.3f ms  p99 %7.3f ms\n' "$r" "$cfg" "$rps" "$(awk -v a="$usr" -v b="$sys" 'BEGIN { print a + b }')" "$p50" "$p99"
    done
  done
  for cfg in $OBS_CONFIGS; do
    OBS[$cfg]=$(medians "$WORK/obs-$cfg")
  done
  # Proof the observed Weir did the work: log lines written, spans exported.
  OBS_LINES=$(wc -l < "$WORK/access.log")
  OBS_LINES_ALONE=$(wc -l < "$WORK/access-only.log")
  OBS_SPANS=$(curl -sf "http://127.0.0.1:$OBS_ADMIN/metrics" | awk '/^weir_trace_spans_total\{result="exported"\}/ {print $2}')
  OBS_DROPPED=$(curl -sf "http://127.0.0.1:$OBS_ADMIN/metrics" | awk '/^weir_trace_spans_total\{result="dropped"\}/ {print $2}')
fi

# --- rate limits: memory and Redis-backed, beside nginx limit_req -------------------------
declare -A RL RL_PID
RL_TARGETS="weir-none weir-memory weir-redis nginx-limit_req"
if [ "$SUITE" = ratelimit ] || [ "$SUITE" = all ]; then
  REDIS_PORT=18104; RL_ADMIN=18105
  declare -A RL_PORT=([weir-none]=18100 [weir-memory]=18101 [weir-redis]=18102 [nginx-limit_req]=18103)
  taskset -c "$LOAD_CPUS" redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no > "$WORK/redis.log" 2>&1 &
  PIDS+=($!)
  rl_weir() { # port, policy store ("" = no policy), admin port or ""
    echo 'workers = 1'; echo 'access_log = { enabled = false }'
    [ -n "$3" ] && echo "admin = { bind = \"127.0.0.1:$3\" }"
    if [ -n "$2" ]; then
      echo "[redis]"; echo "url = \"redis://127.0.0.1:$REDIS_PORT\""
      echo "[[policies]]"; echo 'name = "limit"'
      echo "rate_limit = { algorithm = \"gcra\", limit = 100000000, period = \"1s\", store = \"$2\", on_store_error = \"deny\" }"
    fi
    echo "[server]"; echo "max_connections = 8192"
    echo "[[listeners]]"; echo 'name = "main"'; echo "bind = \"127.0.0.1:$1\""
    echo "[[upstreams]]"; echo 'name = "origin"'; echo "endpoints = [\"127.0.0.1:$ORIGIN_PORT\"]"; echo "max_idle_per_endpoint = 512"
    echo "[[routes]]"; echo 'name = "all"'
    [ -n "$2" ] && echo 'policies = ["limit"]'
    echo 'proxy = { upstream = "origin" }'
  }
  rl_weir "${RL_PORT[weir-none]}" "" "" > "$WORK/weir-rl-none.toml"
  rl_weir "${RL_PORT[weir-memory]}" memory "" > "$WORK/weir-rl-memory.toml"
  rl_weir "${RL_PORT[weir-redis]}" redis "$RL_ADMIN" > "$WORK/weir-rl-redis.toml"
  for cfg in none memory redis; do
    "$WEIR" check "$WORK/weir-rl-$cfg.toml" >/dev/null
    WEIR_LOG=warn taskset -c "$PROXY_CPU" "$WEIR" run -c "$WORK/weir-rl-$cfg.toml" > /dev/null &
    PIDS+=($!); RL_PID[weir-$cfg]=$!
  done
  mkdir -p "$WORK/nginx-rl"
  cat > "$WORK/nginx-rl/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx-rl/nginx.pid;
error_log $WORK/nginx-rl/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  limit_req_zone \$binary_remote_addr zone=one:10m rate=100000000r/s;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 256; }
  server {
    listen 127.0.0.1:${RL_PORT[nginx-limit_req]} backlog=4096;
    location / {
      limit_req zone=one burst=100000000 nodelay;
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
  taskset -c "$PROXY_CPU" "$NGINX" -c "$WORK/nginx-rl/nginx.conf" -p "$WORK/nginx-rl" &
  PIDS+=($!); RL_PID[nginx-limit_req]=$!
  for t in $RL_TARGETS; do
    bench_answering "http://127.0.0.1:${RL_PORT[$t]}/1k" "$t"
    : > "$WORK/rl-$t"
  done
  for r in $(seq "$ROUNDS"); do
    for t in $RL_TARGETS; do
      read -r rps p50 p99 usr sys < <(wrk_run "${RL_PID[$t]}" "$WORK/rl-$t" "$t" 64 "http://127.0.0.1:${RL_PORT[$t]}/1k")
      printf '  round %s %-16s 1k c=64  %10.0f req/s  CPU %6.2f us/req  p50 %7.3f ms  p99 %7.3f ms\n' "$r" "$t" "$rps" "$(awk -v a="$usr" -v b="$sys" 'BEGIN { print a + b }')" "$p50" "$p99"
    done
  done
  for t in $RL_TARGETS; do
    RL[$t]=$(medians "$WORK/rl-$t")
  done
  # Proof the Redis limiter decided every request (and none fell back).
  RL_DECISIONS=$(curl -sf "http://127.0.0.1:$RL_ADMIN/metrics" | awk '/^weir_policy_decisions_total\{policy="limit",result="allowed"\}/ {print $2}')
  RL_STORE_ERRORS=$(curl -sf "http://127.0.0.1:$RL_ADMIN/metrics" | awk '/^weir_policy_events_total\{policy="limit",event="store_error"\}/ {print $2}')
fi

# --- cache hits: Weir's cache, Varnish, nginx proxy_cache -----------------------------------
declare -A CR C_PID
C_TARGETS="varnish nginx-cache weir-cache"
if [ "$SUITE" = cache ] || [ "$SUITE" = all ]; then
  declare -A C_PORT=([varnish]=18111 [nginx-cache]=18112 [weir-cache]=18113)
  VARNISHD=$(command -v varnishd || echo /usr/sbin/varnishd)
  mkdir -p "$WORK/varnish" "$WORK/nginx-cache/cache"
  chmod 777 "$WORK/nginx-cache/cache"
  taskset -c "$PROXY_CPU" "$VARNISHD" -F -a "127.0.0.1:${C_PORT[varnish]}" -b "127.0.0.1:$CACHE_ORIGIN_PORT" \
    -s malloc,256m -n "$WORK/varnish" > "$WORK/varnish.log" 2>&1 &
  PIDS+=($!); C_PID[varnish]=$!
  cat > "$WORK/nginx-cache/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx-cache/nginx.pid;
error_log $WORK/nginx-cache/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  proxy_cache_path $WORK/nginx-cache/cache levels=1:2 keys_zone=c:64m max_size=1g inactive=1h use_temp_path=off;
  upstream origin { server 127.0.0.1:$CACHE_ORIGIN_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:${C_PORT[nginx-cache]} backlog=4096;
    location / {
      proxy_cache c;
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
  taskset -c "$PROXY_CPU" "$NGINX" -c "$WORK/nginx-cache/nginx.conf" -p "$WORK/nginx-cache" &
  PIDS+=($!); C_PID[nginx-cache]=$!
  cat > "$WORK/weir-cache.toml" <<CONF
workers = 1
access_log = { enabled = false }
metrics = { enabled = false }
[server]
max_connections = 8192
[[caches]]
name = "edge"
max_memory = "256MiB"
[[listeners]]
name = "main"
bind = "127.0.0.1:${C_PORT[weir-cache]}"
[[upstreams]]
name = "origin"
endpoints = ["127.0.0.1:$CACHE_ORIGIN_PORT"]
[[routes]]
cache = "edge"
proxy = { upstream = "origin" }
CONF
  "$WEIR" check "$WORK/weir-cache.toml" >/dev/null
  WEIR_LOG=warn taskset -c "$PROXY_CPU" "$WEIR" run -c "$WORK/weir-cache.toml" > /dev/null &
  PIDS+=($!); C_PID[weir-cache]=$!
  for t in $C_TARGETS; do
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:${C_PORT[$t]}/1k" && break; sleep 0.1; done
    for body in $CACHE_BODIES; do
      curl -sf -o /dev/null "http://127.0.0.1:${C_PORT[$t]}/$body" || { echo "$t is not answering" >&2; exit 1; }
      curl -sf -o /dev/null "http://127.0.0.1:${C_PORT[$t]}/$body"
    done
  done
  echo "  weir-cache: $(curl -sI "http://127.0.0.1:${C_PORT[weir-cache]}/1k" | tr -d '\r' | awk -F': ' 'tolower($1)=="cache-status" {print $2}')"
  for body in $CACHE_BODIES; do
    for t in $C_TARGETS; do : > "$WORK/c-$t-$body"; done
    for r in $(seq "$ROUNDS"); do
      for t in $C_TARGETS; do
        read -r rps p50 p99 usr sys < <(wrk_run "${C_PID[$t]}" "$WORK/c-$t-$body" "$t $body" 64 "http://127.0.0.1:${C_PORT[$t]}/$body")
        printf '  round %s %-12s %-5s c=64  %10.0f req/s  CPU %6.2f us/req  p50 %7.3f ms  p99 %7.3f ms\n' "$r" "$t" "$body" "$rps" "$(awk -v a="$usr" -v b="$sys" 'BEGIN { print a + b }')" "$p50" "$p99"
      done
    done
    for t in $C_TARGETS; do
      CR[$t-$body]=$(medians "$WORK/c-$t-$body")
    done
  done
fi

rss_mib() { # peak RSS of a process and its children (nginx master + worker), MiB
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    kb=$(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    total=$((total + kb))
  done
  awk -v k="$total" 'BEGIN { printf "%.1f", k/1024 }'
}
declare -A RSS
for t in $TARGETS; do RSS[$t]=$(rss_mib "${PID[$t]}"); done

mkdir -p bench/results
REPORT=bench/results/latest.md
field() { awk -v i="$2" '{print $i}' <<<"$1"; }              # field N of a medians line
cpu() { awk '{ printf "%.2f", $4 + $5 }' <<<"$1"; }            # user + kernel us / request
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "—" }'; }
{
  echo "Run: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ //')),"
  echo "one worker each pinned to CPU $PROXY_CPU, origin + load generator on CPU $LOAD_CPUS, ${DURATION}s x $ROUNDS interleaved rounds, median shown."
  echo "nginx $("$NGINX" -v 2>&1 | sed 's/.*\///'), HAProxy $("$HAPROXY" -v | awk 'NR==1 {print $3}'), weir $("$WEIR" --version | awk '{print $2}') ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))."
  if [ ${#CASES[@]} -gt 0 ]; then
    echo
    echo "CPU per request is the proxy's utime + stime over the run (with its children: nginx's worker) divided by the requests it served."
    echo "Cases: h1-BODY-cN = HTTP/1.1 keep-alive, wrk, N connections saturating; rate-1k = HTTP/1.1 at $RATE req/s in total over 64 connections (h2load --rps); h2c-1k = HTTP/2 prior knowledge, 64 connections x 4 streams (h2load; its mean latency in both latency columns)."
    echo
    echo "| case | target | CPU µs/req | user µs | kernel µs | req/s | p50 ms | p99 ms | weir CPU ratio | weir req/s ratio |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for case in "${CASES[@]}"; do
      for t in $TARGETS; do
        v=${RES[$t-$case]}; w=${RES[weir-$case]}
        if [ "$t" = weir ]; then r1="—"; r2="—"; else
          r1=$(ratio "$(cpu "$w")" "$(cpu "$v")"); r2=$(ratio "$(field "$w" 1)" "$(field "$v" 1)")
        fi
        printf '| %s | %s | **%s** | %.2f | %.2f | %.0f | %.3f | %.3f | %s | %s |\n' "$case" "$t" "$(cpu "$v")" \
          "$(field "$v" 4)" "$(field "$v" 5)" "$(field "$v" 1)" "$(field "$v" 2)" "$(field "$v" 3)" "$r1" "$r2"
      done
    done
    echo
    echo "Peak RSS over the whole run (all cases above): $(for t in $TARGETS; do printf '%s %s MiB; ' "$t" "${RSS[$t]}"; done)weir ÷ nginx $(ratio "${RSS[weir]}" "${RSS[nginx]}")."
  fi
  if [ "$SUITE" = tls ] || [ "$SUITE" = all ]; then
    echo
    echo "TLS (1k body; new connection per request via wrk -c32 'Connection: close'; HTTP/2 via h2load -c64 -m10):"
    echo
    echo "| target | new TLS conns/s | CPU µs / handshake+request | h2 over TLS req/s | CPU µs / h2 request | weir handshake CPU ratio | weir h2 CPU ratio |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for t in $TARGETS; do
      if [ "$t" = weir ]; then r1="—"; r2="—"; else
        r1=$(ratio "$(cpu "${HS[weir]}")" "$(cpu "${HS[$t]}")"); r2=$(ratio "$(cpu "${H2[weir]}")" "$(cpu "${H2[$t]}")")
      fi
      printf '| %s | %.0f | %s | %.0f | **%s** | %s | %s |\n' "$t" "$(field "${HS[$t]}" 1)" "$(cpu "${HS[$t]}")" "$(field "${H2[$t]}" 1)" "$(cpu "${H2[$t]}")" "$r1" "$r2"
    done
  fi
  if [ "$SUITE" = observe ] || [ "$SUITE" = all ]; then
    echo
    echo "Observability cost (1k body, 64 connections): route metrics alone, a JSON access log to a file alone, tracing at 1% to an OTLP collector alone, and all three (with the admin listener), against all three off."
    echo
    echo "| weir | CPU µs/req | user µs | kernel µs | req/s | p50 ms | p99 ms | CPU vs bare | µs over bare |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for cfg in $OBS_CONFIGS; do
      v=${OBS[$cfg]}
      printf '| %s | **%s** | %.2f | %.2f | %.0f | %.3f | %.3f | %s | %+.2f |\n' "$cfg" "$(cpu "$v")" "$(field "$v" 4)" "$(field "$v" 5)" "$(field "$v" 1)" "$(field "$v" 2)" "$(field "$v" 3)" "$(ratio "$(cpu "$v")" "$(cpu "${OBS[bare]}")")" "$(awk -v a="$(cpu "$v")" -v b="$(cpu "${OBS[bare]}")" 'BEGIN { print a - b }')"
    done
    echo
    echo "Observed Weir wrote $OBS_LINES access-log lines and exported ${OBS_SPANS:-0} spans (${OBS_DROPPED:-0} dropped); the log-only Weir wrote $OBS_LINES_ALONE lines."
  fi
  if [ "$SUITE" = ratelimit ] || [ "$SUITE" = all ]; then
    echo
    echo "Rate limits (1k body, 64 connections, every request admitted, one hot key): GCRA in memory and through a local redis-server, beside nginx limit_req."
    echo
    echo "| target | CPU µs/req | req/s | p50 ms | p99 ms | CPU vs weir-none | CPU vs nginx-limit_req |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for t in $RL_TARGETS; do
      v=${RL[$t]}
      printf '| %s | **%s** | %.0f | %.3f | %.3f | %s | %s |\n' "$t" "$(cpu "$v")" "$(field "$v" 1)" "$(field "$v" 2)" "$(field "$v" 3)" \
        "$(ratio "$(cpu "$v")" "$(cpu "${RL[weir-none]}")")" "$(ratio "$(cpu "$v")" "$(cpu "${RL[nginx-limit_req]}")")"
    done
    echo
    echo "The Redis-backed Weir decided ${RL_DECISIONS:-0} requests through Redis (${RL_STORE_ERRORS:-0} store errors)."
  fi
  if [ "$SUITE" = cache ] || [ "$SUITE" = all ]; then
    echo
    echo "Cache hits (64 connections, every request a hit; origin sends max-age=3600): Weir's cache beside Varnish $("$VARNISHD" -V 2>&1 | head -1 | sed -n 's/.*varnish-\([0-9.]*\).*/\1/p') and nginx proxy_cache."
    echo
    echo "| body | target | CPU µs/req | req/s | p50 ms | p99 ms | weir CPU ratio | weir req/s ratio |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    for body in $CACHE_BODIES; do
      for t in $C_TARGETS; do
        v=${CR[$t-$body]}; w=${CR[weir-cache-$body]}
        if [ "$t" = weir-cache ]; then r1="—"; r2="—"; else
          r1=$(ratio "$(cpu "$w")" "$(cpu "$v")"); r2=$(ratio "$(field "$w" 1)" "$(field "$v" 1)")
        fi
        printf '| %s | %s | **%s** | %.0f | %.3f | %.3f | %s | %s |\n' "$body" "$t" "$(cpu "$v")" "$(field "$v" 1)" "$(field "$v" 2)" "$(field "$v" 3)" "$r1" "$r2"
      done
    done
  fi
  echo
  echo "Ratios are Weir's figure divided by the peer's: CPU below 1.00x and req/s above 1.00x favour Weir."
} > "$REPORT"
echo
cat "$REPORT"
