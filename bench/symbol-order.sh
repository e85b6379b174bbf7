#!/usr/bin/env bash
# Writes crates/weir/symbol-order.txt: the functions a release Weir runs — starting, then
# serving HTTP/1.1 (1 KiB and 100 KiB bodies), h2c and HTTP/2 over TLS in front of an nginx
# origin — hottest first, as counted by `valgrind --tool=callgrind`. crates/weir/build.rs hands
# the file to the linker (`--symbol-ordering-file`), which lays those functions out together
# at the start of the binary's text. Why: the kernel maps a binary's pages 64 KiB around each
# one first touched, so functions scattered over the 15 MiB of text made ~5.5 MiB of it
# resident; laid out together, 2.4 MiB (docs/benchmarks.md, "Memory: …, text laid out by use").
#
# Run it again when a toolchain or dependency update changes symbol names (the script's
# last line says how many of the listed functions the current binary still has; stale names
# are ignored by the linker, so a stale file costs memory, never correctness).
#
# Usage: bench/symbol-order.sh [--weir PATH] [--check PATH [--min PERCENT]]
#   --weir PATH     profile this release binary instead of building one (the build as it
#                   ships, `scripts/pgo build`: profile-guided inlining changes which
#                   functions exist; one with debug info, even line tables, has other hashes)
#   --check PATH    only report how many listed functions PATH has, and how spread they are;
#                   with --min, fail when fewer than PERCENT of them are there (scripts/test)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ORDER=crates/weir/symbol-order.txt

coverage() { # BINARY [MIN%]: listed functions it has, and the span of text they occupy
  nm --defined-only "$1" | python3 -c '
import sys
listed = set(open(sys.argv[1]).read().split())
at = [int(a, 16) for a, kind, name in (l.split(None, 2) for l in sys.stdin if l.count(" ") >= 2)
      if kind in "tT" and name.strip() in listed]
span = (max(at) - min(at)) / 1048576 if at else 0
print(f"{len(at)} of {len(listed)} listed functions in the binary, within {span:.1f} MiB of text")
if len(at) * 100 < float(sys.argv[2]) * len(listed):
    sys.exit(f"fewer than {sys.argv[2]}% of the functions {sys.argv[1]} lists are in the binary: "
             "run bench/symbol-order.sh to write it again (its names change with the toolchain "
             "and dependencies)")
' "$ORDER" "${2:-0}"
}

WEIR=""; CHECK=""; MIN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --weir) WEIR=$2; shift 2 ;;
    --check) CHECK=$2; shift 2 ;;
    --min) MIN=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -n "$CHECK" ]; then
  coverage "$CHECK" "$MIN"
  exit
fi

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} ..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

bench_weir
# callgrind names the binary by its absolute path.
WEIR=$(realpath "$WEIR")

bench_workdir order

ORIGIN_PORT=18190; PORT=18191; TLS_PORT=18192
bench_origin "$WORK" "$ORIGIN_PORT"
bench_cert "$WORK"
# The configuration bench/compare.sh measures.
bench_weir_toml "$PORT" "$TLS_PORT" "$ORIGIN_PORT" "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/weir.toml"

WEIR_LOG=warn valgrind --tool=callgrind --demangle=no --dump-instr=no \
  --callgrind-out-file="$WORK/weir.callgrind" "$WEIR" run -c "$WORK/weir.toml" > "$WORK/weir.log" 2>&1 &
VG=$!
PIDS+=($VG)
for _ in $(seq 300); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/1k" && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/1k" || { echo "weir is not answering" >&2; cat "$WORK/weir.log" >&2; exit 1; }
h2load --h1 -n 3000 -c 64 -t 1 "http://127.0.0.1:$PORT/1k" | grep -E '^requests'
h2load --h1 -n 300 -c 8 -t 1 "http://127.0.0.1:$PORT/100k" | grep -E '^requests'
h2load -n 3000 -c 16 -m 4 -t 1 "http://127.0.0.1:$PORT/1k" | grep -E '^requests'
h2load -n 300 -c 4 -m 4 -t 1 "https://127.0.0.1:$TLS_PORT/1k" | grep -E '^requests'
curl -skf -o /dev/null --http1.1 "https://127.0.0.1:$TLS_PORT/1k"
kill -INT "$VG"
wait "$VG" || true

# Every function with a cost, hottest first: the request path, then what starting ran.
callgrind_annotate --threshold=100 "$WORK/weir.callgrind" | { grep -F "[$WEIR]" || true; } |
  sed -n 's/^ *[0-9,]\+ ([ 0-9.]*%) *[^ ]*:\([_A-Za-z][^ ]*\) \[.*$/\1/p' |
  awk '!seen[$0]++' > "$WORK/order.txt"
[ -s "$WORK/order.txt" ] || { echo "no functions read from the profile" >&2; exit 1; }
mv "$WORK/order.txt" "$ORDER"
echo "wrote $ORDER: $(wc -l < "$ORDER") functions"
coverage "$WEIR"
