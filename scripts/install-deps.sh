#!/usr/bin/env bash
# install-deps.sh installs the Debian packages that vigil's build and tests
# need. It is idempotent: it installs only what is missing, runs
# `apt-get update` only when something is missing, and prints nothing when
# everything is already there.
#
# Usage: scripts/install-deps.sh [PACKAGE...]
#   With no arguments it installs the default set for `make test`.
#   Run as root (or with sudo) when something needs installing.
#
# Target: Debian 12 (bookworm) with Go installed at /usr/local/go.
set -euo pipefail

# Default packages for `make test`: one package per line, so adding one is a
# one-line change.
DEFAULT_PACKAGES=(
	bpftool
	ca-certificates
	clang
	git
	iproute2
	libbpf-dev
	llvm
	make
	systemd
)

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

if [ "$#" -gt 0 ]; then
	packages=("$@")
else
	packages=("${DEFAULT_PACKAGES[@]}")
fi

command -v dpkg-query >/dev/null 2>&1 ||
	die "dpkg-query not found: this script supports Debian/Ubuntu only; install these packages by hand: ${packages[*]}"

installed() {
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
for pkg in "${packages[@]}"; do
	installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
	[ "$(id -u)" -eq 0 ] ||
		die "missing packages: ${missing[*]}; run as root (sudo $0 ${missing[*]}) or install them with apt-get"

	aptlog=$(mktemp)
	trap 'rm -f "$aptlog"' EXIT
	export DEBIAN_FRONTEND=noninteractive
	log "installing: ${missing[*]}"
	if ! apt-get update -qq >"$aptlog" 2>&1; then
		cat "$aptlog" >&2
		die "apt-get update failed"
	fi
	if ! apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 \
		"${missing[@]}" >"$aptlog" 2>&1; then
		cat "$aptlog" >&2
		die "apt-get install failed for: ${missing[*]}"
	fi
fi

# Go is not a Debian package here (bookworm's is too old): it is expected at
# /usr/local/go, or anywhere on PATH.
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
	die "go not found on PATH or at /usr/local/go/bin/go: install the Go version named in go.mod from the official tarball into /usr/local/go"
fi
