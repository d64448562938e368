#!/usr/bin/env bash
# install.sh installs or removes vigil as a systemd service; `make install`
# and `make uninstall` run it.
#
# Usage: scripts/install.sh install|uninstall
#   DESTDIR  staging root (tests, packaging); empty = this machine
#   PREFIX   where the binary goes (default /usr/local): PREFIX/bin/vigil
#   BINARY   the binary to install (default bin/vigil)
#
# Idempotent. It never overwrites /etc/vigil/vigil.yaml or a policy, and
# uninstall never removes the data directory (/var/lib/vigil: the audit log
# and the signing key). systemctl runs only when DESTDIR is empty and
# systemd is the running init.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
BINARY=${BINARY:-bin/vigil}

bin=$DESTDIR$PREFIX/bin/vigil
unit=$DESTDIR/etc/systemd/system/vigil.service
etc=$DESTDIR/etc/vigil
data=$DESTDIR/var/lib/vigil

log() { printf 'install: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

live_systemd() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# put SRC DST MODE: install a file that is ours to replace (binary, unit).
put() {
	if [ -f "$2" ] && cmp -s "$1" "$2"; then
		log "$2: up to date"
		return
	fi
	install -D -m "$3" "$1" "$2"
	log "$2: installed"
}

# keep SRC DST: install a file the administrator owns, only if absent.
keep() {
	if [ -e "$2" ]; then
		log "$2: exists, left as it is"
		return
	fi
	install -D -m 0644 "$1" "$2"
	log "$2: installed"
}

do_install() {
	[ -x "$BINARY" ] || die "$BINARY not found: run make build first"
	if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
		die "installing into / needs root: run sudo make install (or set DESTDIR)"
	fi
	put "$BINARY" "$bin" 0755
	tmpunit=$(mktemp)
	trap 'rm -f "$tmpunit"' EXIT
	sed "s|/usr/local/bin/vigil|$PREFIX/bin/vigil|g" deploy/systemd/vigil.service >"$tmpunit"
	put "$tmpunit" "$unit" 0644
	install -d -m 0755 "$etc"
	keep deploy/vigil.example.yaml "$etc/vigil.yaml"
	keep deploy/policy.example.yaml "$etc/policy.example.yaml"
	install -d -m 0700 "$data"
	log "$data: data directory (the signing key is generated here on first start)"
	if live_systemd; then
		systemctl daemon-reload
		log "start it with: systemctl enable --now vigil; check it with: vigil status --socket /run/vigil/vigil.sock"
	fi
}

# drop FILE SHIPPED: remove a configuration file only if it is unchanged.
drop() {
	[ -e "$1" ] || return 0
	if cmp -s "$1" "$2"; then
		rm -f "$1"
		log "$1: removed (unchanged)"
	else
		log "$1: changed locally, kept"
	fi
}

do_uninstall() {
	if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
		die "uninstalling from / needs root: run sudo make uninstall (or set DESTDIR)"
	fi
	if live_systemd && systemctl list-unit-files vigil.service >/dev/null 2>&1; then
		systemctl disable --now vigil.service 2>/dev/null || true
	fi
	for f in "$unit" "$bin"; do
		if [ -e "$f" ]; then
			rm -f "$f"
			log "$f: removed"
		fi
	done
	live_systemd && systemctl daemon-reload
	drop "$etc/vigil.yaml" deploy/vigil.example.yaml
	drop "$etc/policy.example.yaml" deploy/policy.example.yaml
	rmdir "$etc" 2>/dev/null || true
	[ -d "$etc" ] && log "$etc: kept (holds your configuration or policy)"
	if [ -d "$data" ]; then
		log "$data: kept: it holds the audit log and the signing key; copy it off the host, then remove it yourself if you must"
	fi
}

case "${1:-}" in
install) do_install ;;
uninstall) do_uninstall ;;
*) die "usage: $0 install|uninstall (DESTDIR, PREFIX, BINARY from the environment)" ;;
esac
