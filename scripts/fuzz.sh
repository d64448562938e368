#!/usr/bin/env bash
# fuzz.sh runs every Go fuzz target in the module, one after another, for
# FUZZTIME each (default 30s). New failing inputs are written by go test to
# the package's testdata/fuzz/ directory; commit them as regression seeds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

FUZZTIME=${FUZZTIME:-30s}

# `go test -list` prints the matching names of a package, then a line
# "ok <tab> <import path> <tab> <time>" that names the package.
listing=$(go test -list '^Fuzz' ./...)
targets=()
names=()
while IFS= read -r line; do
	case "$line" in
	Fuzz*) names+=("$line") ;;
	ok*)
		pkg=$(printf '%s\n' "$line" | awk '{print $2}')
		for name in "${names[@]}"; do
			targets+=("$pkg $name")
		done
		names=()
		;;
	esac
done <<<"$listing"

if [ "${#targets[@]}" -eq 0 ]; then
	echo "fuzz: no fuzz targets found"
	exit 0
fi

failed=()
for target in "${targets[@]}"; do
	read -r pkg name <<<"$target"
	echo "==> $pkg $name ($FUZZTIME)"
	# A short minimize time: the default 60 s of shrinking per new input
	# would eat most of a short run on the slower targets.
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 2s "$pkg" ||
		failed+=("$pkg.$name")
done

if [ "${#failed[@]}" -gt 0 ]; then
	echo "fuzz: FAIL: ${failed[*]}" >&2
	exit 1
fi
