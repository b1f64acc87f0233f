# Herald's container image: a build stage with the Rust toolchain, then a small Debian runtime
# with the binary, CA certificates and a non-root user. Build and run:
#
#   docker build --build-arg HERALD_GIT_COMMIT="$(git rev-parse --short=12 HEAD)" -t herald .
#   docker run -d -p 3000:3000 -p 3001:3001 -v herald-data:/data \
#       -e HERALD_API_KEY=change-me -e HERALD_SECRET=a-long-random-string herald
#
# Without a registry, scripts/images/build-herald.sh builds the same runtime image from a
# binary built on the host (the lines between the "image settings" markers are shared: that
# script applies them verbatim). See docs/operations.md, "Containers".

# -- build ------------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The context has no .git (.dockerignore): pass the commit for `herald --version`.
ARG HERALD_GIT_COMMIT=unknown
RUN cargo build --release --locked -p herald \
 && mkdir -p /out \
 && objcopy --strip-debug target/release/herald /out/herald

# -- runtime ----------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 herald \
 && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin herald \
 && mkdir /data && chown 10001:10001 /data
COPY --from=build /out/herald /usr/local/bin/herald
COPY deploy/docker/healthcheck /usr/local/bin/herald-healthcheck

# -- image settings (scripts/images/build-herald.sh applies these lines verbatim) --
# Listen on every interface of the container; a public REST address needs an API key
# (HERALD_API_KEY), and every node of a cluster the same HERALD_SECRET.
ENV HERALD_API_LISTEN=0.0.0.0:3000 HERALD_CONNECTOR_LISTEN=0.0.0.0:3001 HERALD_DATA_DIR=/data
# REST API, Socket.IO.
EXPOSE 3000 3001
# The embedded store and a generated secret (single node); unused with MongoDB.
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
# GET /healthy (a store and broker round trip) on the connector port, or on the API port
# for role api; see deploy/docker/healthcheck.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["/usr/local/bin/herald-healthcheck"]
# herald is PID 1 and handles SIGTERM: it stops accepting, closes every session (clients
# reconnect elsewhere), finishes store writes and exits 0, within `docker stop`'s 10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/herald"]
# -- end of image settings --
