# syntax=docker/dockerfile:1
# The operator image. Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t strongroom/strongroom-operator:dev .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build -p strongroom-operator --bin strongroom-operator --release --locked \
    && install -D -m 0755 target/release/strongroom-operator /out/strongroom-operator

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/strongroom-operator /usr/local/bin/strongroom-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/strongroom-operator"]
