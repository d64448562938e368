# vigil — see README.md for what each target does.

SHELL := /bin/bash
GO    ?= go

# `sudo make ...` resets PATH; find Go where the install docs put it.
ifeq ($(shell command -v $(GO) 2>/dev/null),)
export PATH := /usr/local/go/bin:$(PATH)
endif

MODULE  := github.com/vigil-ebpf/vigil
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X $(MODULE)/pkg/version.Version=$(VERSION) -X $(MODULE)/pkg/version.Commit=$(COMMIT)

FUZZTIME ?= 30s

.DEFAULT_GOAL := build

.PHONY: build test lint bench run fuzz generate install uninstall image clean

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/vigil ./cmd/vigil

test:
	scripts/test.sh $(TESTFLAGS)

lint:
	scripts/lint.sh

bench: build
	scripts/bench.sh

run: build
	@if [ "$$(id -u)" -ne 0 ]; then \
		echo "make run: the agent needs root (BPF, cgroups, /var/lib/vigil): run sudo make run" >&2; \
		exit 1; \
	fi
	./bin/vigil agent

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

generate:
	$(GO) generate ./...

# DESTDIR stages the install (packaging, tests); PREFIX places the binary.
DESTDIR ?=
PREFIX  ?= /usr/local

install: build
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" BINARY=bin/vigil scripts/install.sh install

uninstall:
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" scripts/install.sh uninstall

# A minimal OCI image without a container engine: bin/vigil-image.tar.
image:
	scripts/image.sh

clean:
	rm -rf bin/ coverage.out coverage.html *.coverprofile
