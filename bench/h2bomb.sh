#!/usr/bin/env bash
# The HTTP/2 "bomb" (CVE-2026-49975 class) against Weir and nginx in one run: for each attack
# shape (connections x streams x one-byte HPACK references per stream, a zero stream window so
# no response body is ever sent), a fresh Weir and a fresh nginx (one worker each, h2c, proxying
# to the same nginx origin) are attacked by bench/h2bomb.py; the proxy's resident memory is read
# before, while the attack holds its streams, and after the attacker closed its connections
# (and one request was served, so the allocator can give pages back). A legitimate request on
# another connection is made while the attack holds. Prints resident growth per byte the attacker
# sent, and writes the table to bench/results/h2bomb.md.
#
# Usage: bench/h2bomb.sh [--shapes "8x250x400 16x250x100 32x250x400"]   (WEIR_BIN=path: another build)
# Bounded: loopback only; each shape waits at most 60 s for the server's answers.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

SHAPES="8x250x400 8x250x100 16x250x100 16x250x400 32x250x400"
while [ $# -gt 0 ]; do
  case "$1" in
    --shapes) SHAPES=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || {
  echo "installing nginx ..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx curl >/dev/null
}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
# WEIR_BIN=path runs another build (to compare allocators or versions).
WEIR=${WEIR_BIN:-}
bench_weir

bench_workdir h2bomb
chmod 755 "$WORK"
mkdir -p "$WORK/www" "$WORK/origin" "$WORK/nginx"
chmod 755 "$WORK/www"
head -c 1024 /dev/zero | tr '\0' 'a' > "$WORK/www/index.html"

ORIGIN_PORT=18280; NGINX_PORT=18281; WEIR_PORT=18283
cat > "$WORK/origin/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/origin/nginx.pid;
error_log $WORK/origin/error.log crit;
events { worker_connections 16384; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN_PORT backlog=4096; root $WORK/www; } }
CONF
"$NGINX" -c "$WORK/origin/nginx.conf" -p "$WORK/origin" &
PIDS+=($!)

cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log crit;
events { worker_connections 16384; }
http {
  access_log off;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 256; }
  server {
    listen 127.0.0.1:$NGINX_PORT http2 backlog=4096;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
cat > "$WORK/weir.toml" <<CONF
workers = 1
[access_log]
enabled = false
[server]
max_connections = 16384
[[listeners]]
name = "main"
bind = "127.0.0.1:$WEIR_PORT"
[[upstreams]]
name = "origin"
endpoints = ["127.0.0.1:$ORIGIN_PORT"]
[[routes]]
proxy = { upstream = "origin" }
CONF

rss_kib() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
wait_http() { for _ in $(seq 100); do curl -s -o /dev/null --http2-prior-knowledge "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; return 1; }

start_proxy() { # name -> sets PROXY_PID (the process whose memory is read) and PORT
  case "$1" in
    weir)
      "$WEIR" run -c "$WORK/weir.toml" >"$WORK/weir.log" 2>&1 &
      PROXY_PID=$!; PIDS+=($PROXY_PID); PORT=$WEIR_PORT ;;
    nginx)
      "$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
      local master=$!; PIDS+=($master); PORT=$NGINX_PORT
      wait_http "$PORT"
      PROXY_PID=$(pgrep -P "$master" | head -1) ;;
  esac
  wait_http "$PORT"
  # Warm up: the pool, the allocator's first pages.
  for _ in $(seq 20); do curl -s -o /dev/null --http2-prior-knowledge "http://127.0.0.1:$PORT/"; done
}
stop_proxy() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

RESULTS=()
for shape in $SHAPES; do
  IFS=x read -r conns streams refs <<<"$shape"
  for proxy in nginx weir; do
    start_proxy "$proxy"
    master=$!
    before=$(rss_kib "$PROXY_PID")
    rm -f "$WORK/fifo" "$WORK/out.json"; mkfifo "$WORK/fifo"
    python3 bench/h2bomb.py --port "$PORT" --conns "$conns" --streams "$streams" --refs "$refs" \
      --wait 60 <"$WORK/fifo" >"$WORK/out.json" &
    attacker=$!
    exec 3>"$WORK/fifo"
    for _ in $(seq 700); do [ -s "$WORK/out.json" ] && break; sleep 0.1; done
    held=$(rss_kib "$PROXY_PID")
    legit=$(curl -s -o /dev/null -w '%{http_code}' --http2-prior-knowledge "http://127.0.0.1:$PORT/" || echo fail)
    echo >&3; exec 3>&-
    wait "$attacker" || true
    # After the attacker left: one request, so the allocator runs and can return pages.
    for _ in $(seq 60); do
      [ "$(ss -Htn state established "( sport = :$PORT )" | wc -l)" -eq 0 ] && break; sleep 0.1
    done
    curl -s -o /dev/null --http2-prior-knowledge "http://127.0.0.1:$PORT/" || true
    after=$(rss_kib "$PROXY_PID")
    sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sent_bytes"])' "$WORK/out.json")
    summary=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("answered %d, refused %d" % (d["answered"], d["streams_refused_before_answer"]))' "$WORK/out.json")
    ratio=$(python3 -c "print(f'{($held - $before) * 1024 / $sent:.1f}')")
    line="| $shape | $proxy | $sent | $((before / 1024)) | $((held / 1024)) | $ratio | $((after / 1024)) | $legit | $summary |"
    echo "$line"
    RESULTS+=("$line")
    if [ "$proxy" = nginx ]; then kill "$master" 2>/dev/null || true; wait "$master" 2>/dev/null || true
    else stop_proxy "$PROXY_PID"; fi
  done
done

mkdir -p bench/results
{
  echo "# HTTP/2 bomb: resident memory per attacker byte ($(date -u +%F), $(nproc) cores)"
  echo
  echo "| shape (conns x streams x refs) | proxy | attacker bytes | RSS before MiB | RSS under attack MiB | RSS growth / attacker byte | RSS after MiB | legit request | streams |"
  echo "|---|---|---:|---:|---:|---:|---:|---|---|"
  printf '%s\n' "${RESULTS[@]}"
} > bench/results/h2bomb.md
echo "wrote bench/results/h2bomb.md"
