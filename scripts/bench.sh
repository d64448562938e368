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

# pgbench and redis-benchmark direct, through the proxy without L7 and
# through the L7 relay (ECDSA and Ed25519 keys), alternating rounds; about
# two minutes. Needs root and the servers of scripts/e2e-env.sh.
if [ "$(id -u)" -eq 0 ]; then
	VIGIL_BENCH=1 go test -count=1 -timeout 10m -run '^TestL7Bench$' -v ./test/e2e/
else
	echo "bench: not root: skipping the L7 client benchmark (it attaches BPF programs)" >&2
fi
