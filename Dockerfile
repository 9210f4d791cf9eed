# vision-node-daemon image: the daemon, visionctl and vision-scheduler-extender
# on distroless glibc.
#
#   docker build -t vision-node-daemon:0.1.0 \
#     --build-arg REVISION=$(git rev-parse HEAD) --build-arg CREATED=$(date -u +%FT%TZ) .
#
# CI (.ci/deploy-check) checks that every path copied here exists and builds
# from exactly these paths, and lints this file with hadolint.

# --- build -------------------------------------------------------------------------
# Debian bookworm, the same glibc (2.36) as the runtime image. The slim image
# carries gcc and libc6-dev for linking; protoc comes vendored with the
# protoc-bin-vendored crate, so no protobuf-compiler package is needed.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Dependencies first: this layer is rebuilt only when the manifest, the lock
# file, the build script or the protos change, not on every source edit.
# Stub targets stand in for src/ (cargo needs them to resolve the package;
# the declared benches must exist too).
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto/ proto/
COPY benches/ benches/
RUN mkdir -p src/bin \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > src/bin/visionctl.rs \
 && echo 'fn main() {}' > src/bin/vision-scheduler-extender.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bins \
 && rm -rf src

# The sources (config/ holds the embedded dev config and the annotated example).
COPY config/ config/
COPY src/ src/
# touch: the copied sources may be older than the stub build's outputs, and
# cargo must not take the stubs' binaries for up to date.
RUN find src -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bins \
 && install -D -m 0755 target/release/vision-node-daemon /out/vision-node-daemon \
 && install -D -m 0755 target/release/visionctl /out/visionctl \
 && install -D -m 0755 target/release/vision-scheduler-extender /out/vision-scheduler-extender

# --- runtime -----------------------------------------------------------------------
# glibc, libgcc_s, CA certificates, /etc/passwd; no shell, no package manager.
# Distroless publishes no version tags: :latest is Debian 12 with its security
# updates. Pin a digest (cc-debian12@sha256:...) for reproducible builds.
# hadolint ignore=DL3007
FROM gcr.io/distroless/cc-debian12:latest

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="vision-node-daemon" \
      org.opencontainers.image.description="Per-node GPU-memory agent for Kubernetes: NVML discovery, kubelet device plugins (vision.ai/slot, vision.ai/vram), VRAM-budgeted admission of vision tasks with warm models" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12"

COPY --from=build /out/vision-node-daemon /out/visionctl /out/vision-scheduler-extender /usr/local/bin/

# The image runs as root (distroless's default user, UID 0), on purpose: the
# daemon creates its device plugin sockets in kubelet's directory
# (/var/lib/kubelet/device-plugins) and connects to kubelet.sock and the
# PodResources socket, all owned by root with mode 0755. As a non-root user
# (USER nonroot) it could not register with kubelet. The Helm chart drops
# every capability, forbids privilege escalation and mounts the root
# filesystem read-only, so root here owns those files and nothing more.
# visionctl runs as root too: the admin socket is 0600 and root's.
# vision-scheduler-extender needs none of that: the chart runs it as the
# distroless nonroot user (65532).

# The metrics, health and readiness port (/metrics, /healthz, /readyz).
EXPOSE 9464

ENTRYPOINT ["/usr/local/bin/vision-node-daemon"]
CMD ["run", "--config", "/etc/vision-node-daemon/config.yaml"]
