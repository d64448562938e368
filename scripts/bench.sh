#!/usr/bin/env bash
# bench.sh runs the Go benchmarks in pkg/ and then the end-to-end audit log
# benchmark of the built binary. `make bench` builds bin/vigil first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

[ -x bin/vigil ] || { echo "bench: bin/vigil not found: run make build first" >&2; exit 1; }

go test -run '^$' -bench . -benchtime 2s ./pkg/...

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
bin/vigil bench audit --dir "$dir/log" --entries 200000

if [ "$(id -u)" -eq 0 ]; then
	bin/vigil bench proxy
else
	echo "bench: not root: skipping vigil bench proxy (it attaches BPF programs)" >&2
fi
