#!/usr/bin/env bash
# lint.sh runs gofmt, go vet and staticcheck over the module, builds the
# CLI for another platform it runs on (darwin/arm64; CROSS_TARGETS names
# others) and vets the module for it when it is not Linux, and exits
# non-zero if any of them reports a problem. Every check always runs, so
# one invocation shows every problem.
#
# staticcheck is pinned as a Go tool dependency in go.mod and run with
# `go tool staticcheck`, so no separate install is needed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

failed=()

# gofmt: every .go file outside vendor/ and .git/.
unformatted=$(find . \( -path ./vendor -o -path ./.git \) -prune -o \
	-type f -name '*.go' -print0 | xargs -0 -r gofmt -l)
if [ -n "$unformatted" ]; then
	echo "lint: gofmt: these files need gofmt -w:" >&2
	printf '%s\n' "$unformatted" | sed 's/^/  /' >&2
	failed+=(gofmt)
fi

go vet ./... || failed+=("go vet")
# KMS providers are compiled only behind build tags; vet those files too.
go vet -tags kms_aws,kms_gcp,kms_hashivault,kms_azure ./pkg/keys/ || failed+=("go vet (kms tags)")

go tool staticcheck ./... || failed+=(staticcheck)

# Cross builds: auditors run the CLI off Linux (verify, events --data-dir,
# keys, policy, archive pull; often on a macOS laptop), and nodes may be
# arm64. Files split by build tag (_linux.go / _other.go) are only compiled
# for the platform at hand, so build vigil for another target, and vet every
# package for it when it is not Linux (their tests included). One target
# by default: each one compiles every dependency again, minutes on a cold
# build cache; darwin/arm64 covers the !linux files, and linux/arm64 and
# darwin/amd64 differ from the platforms built already only in GOARCH:
#   CROSS_TARGETS="linux/arm64 darwin/amd64 darwin/arm64" scripts/lint.sh
for target in ${CROSS_TARGETS:-darwin/arm64}; do
	goos=${target%/*} goarch=${target#*/}
	GOOS=$goos GOARCH=$goarch CGO_ENABLED=0 go build -o /dev/null ./cmd/vigil ||
		failed+=("go build ($target)")
	if [ "$goos" != linux ]; then
		GOOS=$goos GOARCH=$goarch CGO_ENABLED=0 go vet ./... || failed+=("go vet ($target)")
	fi
done

# deploy/ is a module of its own (Kubernetes and image test dependencies
# stay out of the agent's go.mod); the same staticcheck build checks it.
(cd deploy && go vet ./...) || failed+=("go vet (deploy)")
staticcheck=$(go tool -n staticcheck)
(cd deploy && "$staticcheck" ./...) || failed+=("staticcheck (deploy)")

if [ "${#failed[@]}" -gt 0 ]; then
	echo "lint: FAIL: ${failed[*]}" >&2
	exit 1
fi
