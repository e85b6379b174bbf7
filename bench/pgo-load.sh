#!/usr/bin/env bash
# The load scripts/pgo trains the release profile on: runs the Weir binary given ($1, built
# with -Cprofile-generate) in front of an nginx origin and sends it HTTP/1.1 and h2c
# keep-alive GETs of 1 KiB and 100 KiB bodies, the same over TLS (HTTP/1.1 and HTTP/2 by
# ALPN), a burst of new connections and requests the origin answers 404; then stops it with SIGTERM,
# so it writes its profile (where LLVM_PROFILE_FILE says) as it exits. Loopback only; every
# step is bounded by a request count or a duration.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
WEIR=$1
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
for tool in "$NGINX" wrk h2load openssl curl; do
  command -v "$tool" >/dev/null || { echo "error: $tool is required (apt-get install nginx wrk nghttp2-client openssl curl)" >&2; exit 1; }
done
bench_workdir pgo
ORIGIN_PORT=18180; WEIR_PORT=18183; WEIR_TLS=18193
bench_cert "$WORK"
bench_origin "$WORK" "$ORIGIN_PORT"
bench_weir_toml "$WEIR_PORT" "$WEIR_TLS" "$ORIGIN_PORT" "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/weir.toml"
WEIR_LOG=warn "$WEIR" run -c "$WORK/weir.toml" > "$WORK/weir.log" 2>&1 &
WEIR_PID=$!
bench_answering "http://127.0.0.1:$WEIR_PORT/1k" weir
PLAIN=http://127.0.0.1:$WEIR_PORT
TLS=https://127.0.0.1:$WEIR_TLS
wrk -t1 -c64 -d4s "$PLAIN/1k" > /dev/null
wrk -t1 -c64 -d2s "$PLAIN/100k" > /dev/null
h2load -n 100000 -c 64 -m 4 -t 1 "$PLAIN/1k" > /dev/null
h2load -n 5000 -c 16 -m 4 -t 1 "$PLAIN/100k" > /dev/null
h2load -n 40000 -c 32 -m 4 -t 1 "$TLS/1k" > /dev/null
h2load --h1 -n 20000 -c 32 -t 1 "$TLS/1k" > /dev/null
h2load --h1 -n 2000 -c 2000 -t 1 "$PLAIN/1k" > /dev/null
h2load --h1 -n 500 -c 100 -t 1 "$PLAIN/missing" > /dev/null || true
kill -TERM "$WEIR_PID"
wait "$WEIR_PID" || true
