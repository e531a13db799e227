# volcengine-rtc-exporter: a static binary on a distroless, non-root base.
#
#   docker build -t volcengine-rtc-exporter --build-arg VOLC_EXPORTER_REVISION=$(git rev-parse --short HEAD) .
#   docker run --rm -p 19966:19966 volcengine-rtc-exporter demo --web.listen-address=:19966
#   docker run --rm -p 19966:19966 -v $PWD/config.yaml:/etc/volcengine-rtc-exporter/config.yaml:ro \
#     -v $PWD/secrets:/run/secrets/volcengine:ro -v volc-data:/var/lib/volcengine-rtc-exporter \
#     volcengine-rtc-exporter
#
# reqwest is built with rustls (no OpenSSL), so the musl target needs only musl-tools for the
# C parts of `ring` (installed only when TARGET is a musl one). `scripts/test-image` builds this
# file with buildah and no registry, with TARGET=x86_64-unknown-linux-gnu and
# RUSTFLAGS="-C target-feature=+crt-static" (a static glibc binary, built with the image's gcc),
# because the musl standard library cannot be downloaded there.

ARG RUST_VERSION=1
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
ARG TARGET=x86_64-unknown-linux-musl
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian's current musl-tools; the image is rebuilt for updates, not pinned to one version.
# hadolint ignore=DL3008
RUN case "${TARGET}" in \
      *-musl*) apt-get update \
        && apt-get install -y --no-install-recommends musl-tools \
        && rm -rf /var/lib/apt/lists/* ;; \
    esac \
 && { rustup target list --installed | grep -qx "${TARGET}" || rustup target add "${TARGET}"; }
WORKDIR /src
# The whole context (see .dockerignore): Cargo reads every target the manifest declares
# (benches included) even when building only the binary.
COPY . .
ARG VOLC_EXPORTER_REVISION=unknown
ARG RUSTFLAGS=
ENV VOLC_EXPORTER_REVISION=${VOLC_EXPORTER_REVISION}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target "${TARGET}" --bin volcengine-rtc-exporter \
 && install -D -m 0755 "target/${TARGET}/release/volcengine-rtc-exporter" /out/volcengine-rtc-exporter \
 && mkdir -p /out/data

# static-debian12 has CA certificates, /etc/passwd with `nonroot` (65532), and no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/volcengine-rtc-exporter /usr/local/bin/volcengine-rtc-exporter
# The durable store (--storage.path): a volume, owned by the user the exporter runs as.
COPY --from=build --chown=65532:65532 /out/data /var/lib/volcengine-rtc-exporter
VOLUME /var/lib/volcengine-rtc-exporter
USER 65532:65532
EXPOSE 19966
ENTRYPOINT ["/usr/local/bin/volcengine-rtc-exporter"]
CMD ["--config.file=/etc/volcengine-rtc-exporter/config.yaml", "--storage.path=/var/lib/volcengine-rtc-exporter"]
