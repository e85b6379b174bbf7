# Shared by the bench scripts (sourced): the Weir binary they run, their work directory, the
# nginx origin they all proxy to, and the Weir configuration bench/compare.sh measures.

# bench_weir: WEIR, when the caller set it to a binary (--weir, WEIR_BIN), else a release
# build of this tree as it ships: profile-guided (scripts/pgo build, into target/pgo).
bench_weir() {
  if [ -z "${WEIR:-}" ]; then
    echo "building weir (release, profile-guided) ..."
    WEIR=$(scripts/pgo build | tail -n1)
  fi
}

# bench_workdir NAME: WORK, a fresh directory under /tmp, and PIDS, the processes started
# there; on exit the processes are stopped and the directory removed.
bench_workdir() {
  WORK=$(mktemp -d "/tmp/weir-$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}

# bench_cert DIR: a throwaway self-signed certificate for the TLS listeners, DIR/cert.pem and
# DIR/key.pem (P-256; names bench.test and 127.0.0.1).
bench_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.test \
    -addext "subjectAltName=DNS:bench.test,IP:127.0.0.1" \
    -keyout "$1/key.pem" -out "$1/cert.pem" 2>/dev/null
}

# bench_answering URL WHO: waits (bounded, 10 s) until URL answers; exits the script naming WHO
# when it does not.
bench_answering() {
  for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  curl -sf -o /dev/null "$1" || { echo "$2 is not answering" >&2; exit 1; }
}

# bench_origin WORK PORT: nginx serving WORK/www/1k and WORK/www/100k on 127.0.0.1:PORT,
# started in the background (its pid appended to PIDS). Extra `server` blocks for the origin's
# http block may be passed in ORIGIN_EXTRA; a CPU list for taskset in ORIGIN_CPUS.
bench_origin() {
  local work=$1 port=$2
  mkdir -p "$work/www" "$work/origin"
  # nginx workers run as www-data: the files must be readable by them.
  chmod 755 "$work" "$work/www"
  head -c 1024 /dev/zero | tr '\0' 'a' > "$work/www/1k"
  head -c 102400 /dev/zero | tr '\0' 'b' > "$work/www/100k"
  cat > "$work/origin/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/origin/nginx.pid;
error_log $work/origin/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$port reuseport backlog=4096; root $work/www; }
  ${ORIGIN_EXTRA:-}
}
CONF
  if [ -n "${ORIGIN_CPUS:-}" ]; then
    taskset -c "$ORIGIN_CPUS" "$NGINX" -c "$work/origin/nginx.conf" -p "$work/origin" &
  else
    "$NGINX" -c "$work/origin/nginx.conf" -p "$work/origin" &
  fi
  PIDS+=($!)
}

# bench_weir_toml PORT TLS_PORT ORIGIN_PORT CERT KEY: the measured Weir — one worker, access
# log off, a plain and a TLS listener, one upstream with room for 512 idle connections.
bench_weir_toml() {
  cat <<CONF
workers = 1
[access_log]
enabled = false
[server]
max_connections = 8192
[[listeners]]
name = "main"
bind = "127.0.0.1:$1"
[[listeners]]
name = "tls"
bind = "127.0.0.1:$2"
tls = { certificates = [{ cert = "$4", key = "$5" }] }
[[upstreams]]
name = "origin"
endpoints = ["127.0.0.1:$3"]
max_idle_per_endpoint = 512
[[routes]]
proxy = { upstream = "origin" }
CONF
}
