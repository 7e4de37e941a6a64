# The Rivulet gateway (`rivulet serve`) as a container image, for ECS on Fargate
# (terraform/) or any container platform:
#
#   docker build -t rivulet:dev .                        # this machine's architecture
#   docker buildx build --platform linux/arm64 -t ... .  # for gateway_architecture = "arm64"
#
# Configuration comes from RIVULET_* environment variables (`rivulet serve --help`).
#
# No HEALTHCHECK: the final image is distroless, with no shell or curl to probe with, and
# the orchestrator checks GET /health itself (the load balancer's target group on ECS).
#checkov:skip=CKV_DOCKER_2:The distroless final image has no shell or HTTP client to run a probe; the load balancer's target group health check polls GET /health instead.

# Pinned by tag; the release must be at least the workspace's rust-version (Cargo.toml).
FROM rust:1.95-bookworm AS build
WORKDIR /src

# Every workspace member's manifest must be present for cargo to load the workspace, even
# though only the gateway and what it depends on (wire/, adapters/) are compiled.
COPY Cargo.toml Cargo.lock ./
# The allocator's options (see .cargo/config.toml).
COPY .cargo .cargo
COPY wire wire
COPY adapters adapters
COPY gateway gateway
COPY lambda-runner lambda-runner
COPY fuzz fuzz

# --locked: build exactly the dependency versions tested in Cargo.lock. The caches keep
# downloaded crates and compiled dependencies between builds; the binary is copied out of the
# cached target directory in the same step because that directory is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p rivulet-gateway --bin rivulet \
    && cp target/release/rivulet /usr/local/bin/rivulet

# glibc, libgcc and CA certificates (DynamoDB, Lambda and HTTPS runner URLs are reached over
# TLS with the system roots), nothing else; the same Debian release as the build stage, so
# the binary finds the glibc it was linked against.
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=build /usr/local/bin/rivulet /usr/local/bin/rivulet

# Bound to every interface: inside a container, 127.0.0.1 is unreachable from outside.
ENV RIVULET_HOST=0.0.0.0
# The embedded store (when RIVULET_STORE is not dynamodb) writes under the working directory,
# which the non-root user owns here.
WORKDIR /home/nonroot

# distroless's unprivileged user (uid 65532); ports below 1024 are therefore out of reach.
USER nonroot
EXPOSE 6420

ENTRYPOINT ["/usr/local/bin/rivulet", "serve"]
