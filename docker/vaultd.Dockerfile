# syntax=docker/dockerfile:1
# The vaultd image: the daemon plus Debian's SoftHSM2 (for development mode; production
# vaults load a vendor PKCS#11 module instead). Build from the repository root:
#   docker build -f docker/vaultd.Dockerfile -t strongroom/vaultd:dev .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build -p vaultd --release --locked \
    && install -D -m 0755 target/release/vaultd /out/vaultd

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends softhsm2 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 strongroom \
    && useradd --system --uid 10001 --gid strongroom --home-dir /var/lib/strongroom --shell /usr/sbin/nologin strongroom \
    && install -d -o strongroom -g strongroom -m 0700 /var/lib/strongroom
COPY --from=build /out/vaultd /usr/local/bin/vaultd
USER 10001:10001
VOLUME ["/var/lib/strongroom"]
# 3000: API (Databunker v1, /v1/status, /metrics); 3001: peer (Raft).
EXPOSE 3000 3001
ENTRYPOINT ["/usr/local/bin/vaultd"]
CMD ["serve"]
