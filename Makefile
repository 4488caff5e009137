# voipbot: `make run` runs the bot, `make test` runs every check and test
# (what .ci/run calls). Tools are built from their pinned modules in tools/;
# the Go module and build caches make rebuilds cheap.

GO         ?= go
TAGS       := goolm
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT     ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BUILD_TIME ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS    := -s -w -X main.Tag=$(VERSION) -X main.Commit=$(COMMIT) -X main.BuildTime=$(BUILD_TIME)
CONFIG     ?= config.yaml

BIN      := $(CURDIR)/bin
DENDRITE := $(BIN)/dendrite
LIVEKIT  := $(BIN)/livekit-server
LINT     := $(BIN)/golangci-lint

.PHONY: build run test lint unit soak bench bench-go bench-media screenshot tools clean

## build: the voipbot binary (pure Go: CGO_ENABLED=0, pure-Go Olm via -tags goolm)
build:
	CGO_ENABLED=0 $(GO) build -tags $(TAGS) -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/voipbot ./cmd/voipbot

## run: build and run the bot with $(CONFIG); with no config.yaml (and no
## CONFIG given), the local demo instead: the pinned Dendrite on 127.0.0.1
## with a demo user, and the bot answering with a tone (state in .demo/)
DEMO_DIR ?= $(CURDIR)/.demo
ifneq ($(wildcard $(CONFIG))$(filter-out file,$(origin CONFIG)),)
run: build
	$(BIN)/voipbot -c $(CONFIG)
else
run: build $(DENDRITE)
	$(BIN)/voipbot demo -dir $(DEMO_DIR) -dendrite $(DENDRITE)
endif

## test: lint, then every test (unit, and end-to-end against the pinned Dendrite) with the race detector
test: lint unit

lint: $(LINT)
	$(LINT) run ./...

# unit also tests the live Opus encoder (cgo, -tags opus), which the default
# build replaces by embedded tones.
unit: $(DENDRITE) $(LIVEKIT)
	DENDRITE_BIN=$(DENDRITE) LIVEKIT_BIN=$(LIVEKIT) $(GO) test -tags $(TAGS) -race -count=1 -timeout 30m ./...
	$(GO) test -tags $(TAGS),opus -race -count=1 ./voip/media/...

## soak: a ten-minute Matrix ⇄ Jami call through the bot (both tones checked
## every 10 s, the call report's numbers at the end); SOAK sets the length
SOAK ?= 10m
soak: $(DENDRITE)
	DENDRITE_BIN=$(DENDRITE) $(GO) test -tags $(TAGS) -count=1 -timeout 30m -run '^TestJamiBridgeLongCall$$' -v ./e2e/ -args -jami-call $(SOAK)

## bench: every benchmark, each with its baseline measured in the same run
## (about 45 minutes; the media suite needs root and Debian's janus)
bench: bench-go bench-media

## bench-go: the Go benchmarks (startup, intake, forward hop, impaired call)
bench-go: $(DENDRITE)
	DENDRITE_BIN=$(DENDRITE) $(GO) test -tags $(TAGS) -run '^$$' -bench . -benchmem -count 5 -timeout 60m ./...

## bench-media: the media suite (CPU per packet, latency, capacity, memory)
## against raw pion and Janus; report in bin/bench-media.md and .json
SUITE_FLAGS ?= -rounds 5
bench-media:
	$(GO) build -tags $(TAGS) -o $(BIN)/voipbot-bench ./cmd/voipbot-bench
	$(BIN)/voipbot-bench suite $(SUITE_FLAGS) -out $(BIN)/bench-media.json | tee $(BIN)/bench-media.md

## screenshot: docs/call-page.png, the browser guest's call page in a connected
## video call (Chromium, against the test's fake bot), for the README
screenshot:
	$(GO) test -tags $(TAGS) -count=1 -run '^TestScreenshot$$' ./internal/testbed/guestclient/ -args -screenshot=$(CURDIR)/docs/call-page.png

tools: $(DENDRITE) $(LIVEKIT) $(LINT)

$(DENDRITE): tools/dendrite/go.mod tools/dendrite/go.sum
	cd tools/dendrite && $(GO) build -o $@ github.com/element-hq/dendrite/cmd/dendrite

# livekit-server: the SFU of the Element Call (MatrixRTC) test bed, pinned in
# its own module so its newer livekit and pion modules stay out of go.mod.
$(LIVEKIT): tools/livekit-server/go.mod tools/livekit-server/go.sum
	cd tools/livekit-server && $(GO) build -o $@ github.com/livekit/livekit-server/cmd/server

$(LINT): tools/golangci-lint/go.mod tools/golangci-lint/go.sum
	cd tools/golangci-lint && $(GO) build -o $@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint

clean:
	rm -rf $(BIN)
