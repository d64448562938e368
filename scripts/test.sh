#!/usr/bin/env bash
# test.sh is what `make test` runs: install dependencies, check that go.mod
# and go.sum are tidy, build everything, lint, and run every test.
#
# Usage: scripts/test.sh [GO TEST ARGS...]
#   Extra arguments go to `go test` after ./..., e.g.
#   scripts/test.sh -run TestChain -v
#
# With CI=true it exports VIGIL_REQUIRE_PRIVILEGED=1: CI runs as root, so a
# test that would skip for lack of privileges (BPF, cgroup v2) fails instead.
#
# Exits non-zero if any step fails. Later steps still run after a tidy or
# lint failure so one run shows every problem; a build failure stops it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

if [ "${CI:-}" = "true" ]; then
	export VIGIL_REQUIRE_PRIVILEGED=1
fi

scripts/install-deps.sh

# Real servers for the end-to-end tests (PostgreSQL, Redis), on loopback.
if [ "$(id -u)" -eq 0 ]; then
	scripts/e2e-env.sh start
else
	echo "test: not root: end-to-end servers not started; privileged tests will skip" >&2
fi

failed=()

echo "==> go mod tidy -diff"
if ! go mod tidy -diff; then
	echo "test: go.mod/go.sum are not tidy: run go mod tidy" >&2
	failed+=("go mod tidy")
fi
if ! (cd deploy && go mod tidy -diff); then
	echo "test: deploy/go.mod and go.sum are not tidy: run (cd deploy && go mod tidy)" >&2
	failed+=("go mod tidy (deploy)")
fi

echo "==> go build ./..."
go build ./...

echo "==> scripts/lint.sh"
scripts/lint.sh || failed+=(lint)

# The committed bpf/ output must match its C sources; install-deps.sh
# installs clang, so this only skips where that could not run.
if command -v clang >/dev/null 2>&1; then
	echo "==> scripts/check-generate.sh"
	scripts/check-generate.sh || failed+=("check-generate")
else
	echo "test: clang not found: skipping scripts/check-generate.sh" >&2
fi

echo "==> go test -race (concurrent packages)"
# The writer, sequencer, proxy and policy holder are where a data race
# would lose or misorder audit entries; the race detector runs them again.
if [ "$#" -eq 0 ]; then
	go test -race -count=1 -timeout 10m ./pkg/auditlog/ ./pkg/proxy/ ./pkg/policy/ ./agent/ || failed+=("go test -race")
fi

echo "==> go test ./..."
go test -count=1 -timeout 25m ./... "$@" || failed+=("go test")

echo "==> go test ./... (deploy module: manifests, image)"
(cd deploy && go test -count=1 -timeout 10m ./... "$@") || failed+=("go test (deploy)")

if [ "${#failed[@]}" -gt 0 ]; then
	echo "test: FAIL: ${failed[*]}" >&2
	exit 1
fi
