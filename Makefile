# mediapipe — build, run, test. `make run` and `make test` install what they
# need (ffmpeg and chromium from Debian's packages) on a fresh Debian machine with Go.
GO      ?= go
BIN     := bin
PLUGINS := $(BIN)/plugins
# The version `mediapipe version` prints: the git description of the checkout
# (deploy/docker/Dockerfile passes it in, having no .git).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# -trimpath: the same source builds the same binary wherever it is checked out.
GOBUILD := $(GO) build -trimpath -ldflags "-X github.com/mediapipe/mediapipe/internal/cli.Version=$(VERSION)"
export PATH := $(shell $(GO) env GOPATH)/bin:$(PATH)

.PHONY: all build run test test-short bench soak fuzz plugins proto docs deps lint clean

all: build plugins

## build: the mediapipe binary into bin/
build:
	$(GOBUILD) -o $(BIN)/mediapipe ./cmd/mediapipe

## run: cloud + edge from pipeline.example.toml (push to rtmp://127.0.0.1:1935/live/NAME,
##      play http://127.0.0.1:7001/live/NAME.flv)
run: deps build plugins
	$(BIN)/mediapipe run pipeline.example.toml

## test: every test, integration tests with real ffmpeg and headless chromium included,
##       and the deployment files' checks (deploy/, a module of its own)
test: deps plugins lint
	$(GO) test -count=1 -timeout 15m -artifacts ./...  # -artifacts: failing browser tests keep their screenshot under _artifacts/
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 -timeout 5m ./...

## lint: gofmt, go vet and staticcheck must be clean
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## test-short: unit tests only (no ffmpeg, no browser)
test-short:
	$(GO) test -short -count=1 ./...

## bench: Go benchmarks of the hot path and a short relay benchmark
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./core/... ./host/ ./internal/repair/ ./internal/udpbatch/ \
	  ./stages/rtpfragmenter/ ./stages/flvreassembler/ ./stages/flvtagger/ ./stages/netsim/ ./stages/fec/ \
	  ./stages/quicretransmit/ ./stages/rtpreorder/ ./stages/udpsink/ ./stages/udpsource/ ./stages/httpflvsink/
	$(BIN)/mediapipe bench --streams 2 --viewers 4 --duration 5s --floor

## soak: the relay for SOAK (default 10m) under churn, loss, plugin kills and junk;
##       fails if RSS, goroutines, fds or kernel TCP memory grow, or a tag is corrupt.
##       The report (Markdown) is also written to bin/soak.md.
SOAK ?= 10m
soak: deps build plugins
	$(BIN)/mediapipe bench --soak $(SOAK) --streams 6 --viewers 3 --plugin $(PLUGINS)/stream-filter \
	  > $(BIN)/soak.md; rc=$$?; cat $(BIN)/soak.md; exit $$rc

## fuzz: a run of every fuzz target; FUZZTIME is a duration (15s) or an exec count (1000000x)
FUZZTIME ?= 15s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

## plugins: build the example plugins into bin/plugins/
plugins:
	@mkdir -p $(PLUGINS)
	@for d in plugins/examples/*/; do \
	  [ -f $$d/main.go ] || continue; \
	  $(GOBUILD) -o $(PLUGINS)/$$(basename $$d) ./$$d || exit 1; \
	done

## proto: regenerate the plugin protocol's Go code (installs protoc and its Go plugins when missing)
proto:
	@command -v protoc >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq protobuf-compiler >/dev/null; }
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
	sh plugins/internal/pluginpb/gen.sh

## docs: regenerate docs/stages.md and docs/metrics.md from the code
docs:
	$(GO) run ./cmd/mediapipe stages --markdown > docs/stages.md
	$(GO) run ./cmd/mediapipe metrics --markdown > docs/metrics.md

## deps: install ffmpeg, chromium, systemd-analyze and GStreamer's rtmp2sink (Debian's packages) when missing, in one apt-get
deps:
	@pkgs=; \
	  { command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; } || pkgs=" ffmpeg"; \
	  [ -x /usr/bin/chromium ] || pkgs="$$pkgs chromium"; \
	  command -v systemd-analyze >/dev/null 2>&1 || pkgs="$$pkgs systemd"; \
	  { command -v gst-launch-1.0 >/dev/null 2>&1 && gst-inspect-1.0 rtmp2sink >/dev/null 2>&1; } || pkgs="$$pkgs gstreamer1.0-tools gstreamer1.0-plugins-bad gstreamer1.0-plugins-good"; \
	  [ -z "$$pkgs" ] || { \
	  echo "installing$$pkgs from Debian's packages"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$pkgs >/dev/null; }

clean:
	rm -rf $(BIN)
