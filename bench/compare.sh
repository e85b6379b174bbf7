#!/usr/bin/env bash
# Side-by-side reverse-proxy benchmark on loopback: Weir, nginx and HAProxy in front of the
# same nginx origin, each with ONE worker pinned to the same CPU, access logs off in all,
# upstream keep-alive on in all. wrk drives 64 and 256 connections against a 1 KiB and a
# 100 KiB body, in interleaved rounds (nginx, haproxy, weir, nginx, …); the median round is
# reported. Prints requests/s, p50, p99, peak RSS and Weir's ratios, and writes the table to
# bench/results/latest.md.
#
# Usage: bench/compare.sh [--duration SECONDS] [--rounds N] [--conns "64 256"] [--bodies "1k 100k"]
# Bounded: every wrk run lasts --duration seconds (default 8), loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=8
ROUNDS=5
CONNS="64 256"
BODIES="1k 100k"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --bodies) BODIES=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

# --- peers from Debian packages, installed if missing --------------------------------------
missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v wrk >/dev/null || missing+=(wrk)
command -v taskset >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} ..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

echo "building weir (release) ..."
cargo build --release -p weir --locked -q
WEIR=$PWD/target/release/weir

NCPU=$(nproc)
# The proxy under test gets the last CPU to itself; origin and load generator share the rest.
PROXY_CPU=$((NCPU - 1))
LOAD_CPUS=0
[ "$NCPU" -gt 2 ] && LOAD_CPUS="0-$((NCPU - 2))"

WORK=$(mktemp -d /tmp/weir-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

ORIGIN_PORT=18080; NGINX_PORT=18081; HAPROXY_PORT=18082; WEIR_PORT=18083

# --- origin: nginx serving fixed bodies ------------------------------------------------------
mkdir -p "$WORK/www" "$WORK/origin" "$WORK/nginx"
# nginx workers run as www-data: the files must be readable by them.
chmod 755 "$WORK" "$WORK/www"
head -c 1024 /dev/zero | tr '\0' 'a' > "$WORK/www/1k"
head -c 102400 /dev/zero | tr '\0' 'b' > "$WORK/www/100k"
cat > "$WORK/origin/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/origin/nginx.pid;
error_log $WORK/origin/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN_PORT reuseport backlog=4096; root $WORK/www; }
}
CONF
taskset -c "$LOAD_CPUS" "$NGINX" -c "$WORK/origin/nginx.conf" -p "$WORK/origin" &
PIDS+=($!)

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
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;
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
  default_backend be
backend be
  server origin 127.0.0.1:$ORIGIN_PORT
CONF
taskset -c "$PROXY_CPU" "$HAPROXY" -f "$WORK/haproxy.cfg" -db &
PIDS+=($!); HAPROXY_PID=$!

# --- Weir ------------------------------------------------------------------------------------
cat > "$WORK/weir.toml" <<CONF
workers = 1
[access_log]
enabled = false
[server]
max_connections = 8192
[[listeners]]
name = "main"
bind = "127.0.0.1:$WEIR_PORT"
[[upstreams]]
name = "origin"
endpoints = ["127.0.0.1:$ORIGIN_PORT"]
max_idle_per_endpoint = 512
[[routes]]
proxy = { upstream = "origin" }
CONF
WEIR_LOG=warn taskset -c "$PROXY_CPU" "$WEIR" run -c "$WORK/weir.toml" > /dev/null &
PIDS+=($!); WEIR_PID=$!

for port in $ORIGIN_PORT $NGINX_PORT $HAPROXY_PORT $WEIR_PORT; do
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/1k" && break; sleep 0.1; done
  curl -sf -o /dev/null "http://127.0.0.1:$port/1k" || { echo "port $port is not answering" >&2; exit 1; }
done

declare -A PORT=([nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT [weir]=$WEIR_PORT)
declare -A PID=([nginx]=$NGINX_PID [haproxy]=$HAPROXY_PID [weir]=$WEIR_PID)
TARGETS="nginx haproxy weir"

to_ms() { # wrk latency like 1.23ms / 850.00us / 1.02s -> milliseconds
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'
}
median() { sort -g | awk '{a[NR]=$1} END { print a[int((NR+1)/2)] }'; }

declare -A RPS P50 P99
for body in $BODIES; do
  for c in $CONNS; do
    for t in $TARGETS; do : > "$WORK/$t-$body-$c"; done
    for r in $(seq "$ROUNDS"); do
      for t in $TARGETS; do
        out=$(taskset -c "$LOAD_CPUS" wrk -t1 -c"$c" -d"${DURATION}s" --latency "http://127.0.0.1:${PORT[$t]}/$body")
        rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
        p50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
        p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
        errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
        [ -n "$errs" ] && echo "  warning: $t $body c=$c: $errs" >&2
        echo "$rps $p50 $p99" >> "$WORK/$t-$body-$c"
        printf '  round %s %-8s %-5s c=%-4s %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms\n' "$r" "$t" "$body" "$c" "$rps" "$p50" "$p99"
      done
    done
    for t in $TARGETS; do
      RPS[$t-$body-$c]=$(awk '{print $1}' "$WORK/$t-$body-$c" | median)
      P50[$t-$body-$c]=$(awk '{print $2}' "$WORK/$t-$body-$c" | median)
      P99[$t-$body-$c]=$(awk '{print $3}' "$WORK/$t-$body-$c" | median)
    done
  done
done

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
{
  echo "Run: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ //')),"
  echo "one worker each pinned to CPU $PROXY_CPU, origin + wrk on CPU $LOAD_CPUS, ${DURATION}s x $ROUNDS interleaved rounds, median shown."
  echo "nginx $("$NGINX" -v 2>&1 | sed 's/.*\///'), HAProxy $("$HAPROXY" -v | awk 'NR==1 {print $3}'), weir $("$WEIR" --version | awk '{print $2}')."
  echo
  echo "| body | conns | target | req/s | p50 ms | p99 ms | peak RSS MiB | weir req/s ratio | weir p99 ratio |"
  echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
  for body in $BODIES; do
    for c in $CONNS; do
      for t in $TARGETS; do
        k=$t-$body-$c; w=weir-$body-$c
        if [ "$t" = weir ]; then ratio="—"; pratio="—"; else
          ratio=$(awk -v a="${RPS[$w]}" -v b="${RPS[$k]}" 'BEGIN { printf "%.2fx", a/b }')
          pratio=$(awk -v a="${P99[$w]}" -v b="${P99[$k]}" 'BEGIN { printf "%.2fx", a/b }')
        fi
        printf '| %s | %s | %s | %.0f | %.3f | %.3f | %s | %s | %s |\n' "$body" "$c" "$t" "${RPS[$k]}" "${P50[$k]}" "${P99[$k]}" "${RSS[$t]}" "$ratio" "$pratio"
      done
    done
  done
  echo
  echo "Ratios are Weir's figure divided by the peer's: req/s above 1.00x and p99 below 1.00x favour Weir."
} > "$REPORT"
echo
cat "$REPORT"
