# Sourced by scripts/bare-root-check, scripts/package-check and scripts/release: a Debian root
# made with debootstrap, cached under /var/cache/weir between runs.
#
#   ensure_debian_root DIR SUITE [PACKAGES]   create DIR (minbase SUITE, plus the comma-separated
#                                             PACKAGES) unless it already holds that root
#
# A bare root (no PACKAGES) has nothing but Debian's essential set: no curl, no CA roots, the
# same as debian:SUITE-slim. A marker file records what the root was made with, so a cached
# root made differently is rebuilt rather than trusted.

ensure_debian_root() {
  local dir=$1 suite=$2 packages=${3:-}
  local marker="$dir/.weir-root"
  local want="suite=$suite packages=$packages"
  if [ -x "$dir/bin/sh" ] && [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ]; then
    return 0
  fi
  command -v debootstrap >/dev/null || { echo "error: debootstrap is missing (apt-get install debootstrap)" >&2; return 1; }
  echo "== debootstrap --variant=minbase${packages:+ --include=$packages} $suite $dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  debootstrap --variant=minbase ${packages:+--include="$packages"} "$suite" "$dir" \
    http://deb.debian.org/debian >/dev/null
  echo "$want" > "$marker"
}

# Fails when the bare root at DIR holds what a slim image does not (curl, wget, CA roots).
assert_bare_root() {
  local dir=$1 absent
  for absent in usr/bin/curl usr/bin/wget etc/ssl/certs/ca-certificates.crt; do
    [ ! -e "$dir/$absent" ] || { echo "error: $dir has /$absent: not a bare root" >&2; return 1; }
  done
}
