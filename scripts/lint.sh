#!/usr/bin/env bash
# lint.sh runs gofmt, go vet and staticcheck over the module and exits
# non-zero if any of them reports a problem. All three always run, so one
# invocation shows every problem.
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

# deploy/ is a module of its own (Kubernetes and image test dependencies
# stay out of the agent's go.mod); the same staticcheck build checks it.
(cd deploy && go vet ./...) || failed+=("go vet (deploy)")
staticcheck=$(go tool -n staticcheck)
(cd deploy && "$staticcheck" ./...) || failed+=("staticcheck (deploy)")

if [ "${#failed[@]}" -gt 0 ]; then
	echo "lint: FAIL: ${failed[*]}" >&2
	exit 1
fi
