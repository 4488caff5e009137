# voipbot container image: a static, pure-Go binary on a distroless base.
#
#   docker build -t voipbot .
#   docker run --rm -v voipbot-data:/data voipbot            # first start writes /data/config.yaml
#   docker run -d --name voipbot -v voipbot-data:/data -p 29333:29333 -p 29334:29334/udp \
#       -e VOIPBOT_MEDIA_PUBLIC_IPS=<the host's public IP> voipbot
#
# /data holds config.yaml, registration.yaml (appservice mode) and voipbot.db.

# Build stage: pinned Go toolchain; GOTOOLCHAIN=local keeps it from
# downloading another one.
FROM golang:1.26.8-bookworm AS build
ENV GOTOOLCHAIN=local CGO_ENABLED=0
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ARG BUILD_TIME=unknown
RUN go build -tags goolm -trimpath \
      -ldflags "-s -w -X main.Tag=${VERSION} -X main.Commit=${COMMIT} -X main.BuildTime=${BUILD_TIME}" \
      -o /out/voipbot ./cmd/voipbot \
 && mkdir -p /out/data

# Runtime stage: no shell, no package manager; CA certificates and tzdata
# only. Runs as the image's non-root user (65532).
FROM gcr.io/distroless/static-debian12:nonroot
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
