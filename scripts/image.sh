#!/usr/bin/env bash
# image.sh builds vigil's container image without a container engine or a
# registry (`make image`): a static binary (CGO_ENABLED=0) plus Debian's CA
# bundle in one layer FROM scratch, written to bin/vigil-image.tar.
#
# Load it with:  docker load -i bin/vigil-image.tar
#                ctr -n k8s.io images import bin/vigil-image.tar
#
# Environment: VERSION, COMMIT (labels and tag), SOURCE_DATE_EPOCH (image
# time; default the last commit's, so rebuilding a commit gives the same
# digest), OUT (default bin/vigil-image.tar).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
OUT=${OUT:-bin/vigil-image.tar}
CA=/etc/ssl/certs/ca-certificates.crt

[ -f "$CA" ] || scripts/install-deps.sh ca-certificates

mkdir -p bin
module=github.com/vigil-ebpf/vigil
CGO_ENABLED=0 go build -trimpath \
	-ldflags "-X $module/pkg/version.Version=$VERSION -X $module/pkg/version.Commit=$COMMIT" \
	-o bin/vigil-static ./cmd/vigil

# Tags allow [A-Za-z0-9_.-]; a git describe may hold other characters.
tag="vigil:$(printf '%s' "$VERSION" | tr -c 'A-Za-z0-9_.-' '-')"
out=$(realpath -m "$OUT")
(cd deploy && go run ./image -binary ../bin/vigil-static -ca "$CA" -tag "$tag" \
	-version "$VERSION" -revision "$COMMIT" -created "$SOURCE_DATE_EPOCH" -out "$out")
