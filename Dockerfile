# syntax=docker/dockerfile:1
# Weir's container image: built from source in a Rust image, run in Debian's slim image as a
# non-root user. `docker build -t weir:0.1.0 .` then `docker run -p 8080:8080 weir:0.1.0`.
# (No Docker engine runs on the project's CI machines: the image's contents — the binary on a
# bare Debian root, as a non-root user, with the default config — are tested instead by
# scripts/bare-root-check.)

# The compiler that trained the profile (crates/weir/pgo/rustc-version): a symbol's hash
# includes the compiler's version, and the profile finds its functions by symbol.
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
# Profile-guided: scripts/pgo unpacks the profile and gives the flags (none when this rustc
# is too old to read it); `check` says how much of it the binary was built with.
RUN RUSTFLAGS="$(scripts/pgo rustflags)" cargo build --release --locked -p weir \
 && (scripts/pgo check target/release/weir || true) \
 && strip target/release/weir

FROM debian:bookworm-slim
# CA roots for TLS to upstreams (Weir reads the system's); nothing else is installed.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/weir --shell /usr/sbin/nologin weir \
 && mkdir -p /etc/weir /var/lib/weir /var/cache/weir \
 && chown weir:weir /var/lib/weir /var/cache/weir
COPY --from=build /src/target/release/weir /usr/bin/weir
COPY examples/docker.toml /etc/weir/weir.toml
USER weir
EXPOSE 8080
# The admin listener's liveness endpoint, on loopback inside the container (the image has no curl).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
  CMD ["weir", "healthcheck", "http://127.0.0.1:9901/healthz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["weir"]
CMD ["run", "--config", "/etc/weir/weir.toml"]
