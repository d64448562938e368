#!/usr/bin/env bash
# check-generate.sh regenerates the BPF objects and their Go bindings in bpf/
# (go generate runs bpf2go, which compiles bpf/*.c with clang) and fails if
# the result differs from what is committed: the committed *_bpfel.go and
# *_bpfel.o must be exactly what `make generate` produces from the sources.
#
# The output is byte-for-byte reproducible for a given clang (bpf2go passes
# -fdebug-prefix-map and -fno-ident, and strips DWARF while keeping BTF), so
# use the clang that scripts/install-deps.sh installs (Debian 12: clang 14).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

for tool in clang llvm-strip; do
	command -v "$tool" >/dev/null 2>&1 ||
		{ echo "check-generate: $tool not found: run scripts/install-deps.sh" >&2; exit 1; }
done

go generate ./bpf/...

if ! git diff --exit-code --stat -- bpf/; then
	echo "check-generate: bpf/ differs from the committed output: run make generate and commit the result" >&2
	exit 1
fi
