# voipbot container image: the bot built with cgo and libopus (so that it
# mixes Element Call participants for a single-stream party: -tags opus) on
# a distroless base with glibc, plus libopus.
#
#   docker build -t voipbot .
#   docker run --rm -v voipbot-data:/data voipbot            # first start writes /data/config.yaml
#   docker run -d --name voipbot -v voipbot-data:/data -p 29333:29333 -p 29334:29334/udp \
#       -e VOIPBOT_MEDIA_PUBLIC_IPS=<the host's public IP> voipbot
#
# /data holds config.yaml, registration.yaml (appservice mode) and voipbot.db.

# Build stage: pinned Go toolchain; GOTOOLCHAIN=local keeps it from
# downloading another one. Debian's libopus for the mixer's codec.
FROM golang:1.26.8-bookworm AS build
ENV GOTOOLCHAIN=local CGO_ENABLED=1
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libopus-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ARG BUILD_TIME=unknown
RUN go build -tags goolm,opus -trimpath \
      -ldflags "-s -w -X main.Tag=${VERSION} -X main.Commit=${COMMIT} -X main.BuildTime=${BUILD_TIME}" \
      -o /out/voipbot ./cmd/voipbot \
 && mkdir -p /out/data /out/lib \
 && cp -L "$(ldd /out/voipbot | awk '/libopus/ {print $3}')" /out/lib/

# Runtime stage: no shell, no package manager; glibc, CA certificates and
# tzdata, and the binary's libopus. Runs as the image's non-root user
# (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/lib/ /usr/local/lib/voipbot/
ENV LD_LIBRARY_PATH=/usr/local/lib/voipbot
COPY --from=build /out/voipbot /usr/local/bin/voipbot
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
USER 65532:65532
VOLUME /data
# Inside a container the listener must not be loopback-only. Override with
# -e VOIPBOT_HTTP_LISTEN=… (the environment wins over the config file).
ENV VOIPBOT_HTTP_LISTEN=0.0.0.0:29333
# Call media on one UDP port shared by every call, so that one published
# port is enough; announce the host's public address with
# -e VOIPBOT_MEDIA_PUBLIC_IPS=… when the container sits behind Docker's NAT.
ENV VOIPBOT_MEDIA_UDP_MUX_PORT=29334
# 4222/udp: the Jami DHT node, when jami.enabled.
EXPOSE 29333 29334/udp 4222/udp
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["/usr/local/bin/voipbot", "-c", "/data/config.yaml", "-healthcheck"]
ENTRYPOINT ["/usr/local/bin/voipbot"]
CMD ["-c", "/data/config.yaml"]
