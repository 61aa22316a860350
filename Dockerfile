# syntax=docker/dockerfile:1
# The registrar image: a build stage on the pinned Rust toolchain (Debian 12), and
# a distroless Debian 12 runtime holding only the binary (glibc and libgcc, no shell,
# no package manager, no build tools), running as a non-root user.
#
#   docker build -t registrar:0.1.0 .
#
# The tag is the chart's appVersion (helm/registrar/Chart.yaml), which the
# chart's default image (`registrar`, tag = appVersion) names; push it to a
# registry of yours and set `image.repository` (see docs/operations.md#container-image).

FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
# protox compiles the protos in-process (no protoc); ring and mimalloc need only cc, which the image has
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
COPY benches benches
RUN cargo build --release --locked --bin registrar \
    && install -D -m 0755 target/release/registrar /out/registrar

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/registrar /usr/local/bin/registrar
# the chart's runAsUser; a numeric id lets the kubelet check runAsNonRoot
USER 10001:10001
WORKDIR /var/lib/registrar
# gRPC, and the plaintext health port the chart sets
EXPOSE 50051 8081
ENTRYPOINT ["/usr/local/bin/registrar"]
CMD ["serve", "--config", "/etc/registrar/config.toml"]
