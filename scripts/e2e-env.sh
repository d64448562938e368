#!/usr/bin/env bash
# e2e-env.sh installs and starts the real servers the end-to-end tests talk
# to, on loopback only, with their data under /tmp/vigil-e2e. Idempotent:
# a server that already answers is left alone.
#
# Usage: scripts/e2e-env.sh start|stop|env
#   env prints the VIGIL_E2E_* variables the tests read.
#
# Ports (override with the same variables):
#   PostgreSQL  VIGIL_E2E_PG_PORT     54329  (user postgres, trust auth)
#   Redis       VIGIL_E2E_REDIS_PORT  63799
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PG_PORT=${VIGIL_E2E_PG_PORT:-54329}
REDIS_PORT=${VIGIL_E2E_REDIS_PORT:-63799}
BASE=${VIGIL_E2E_DIR:-/tmp/vigil-e2e}

log() { printf 'e2e-env: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

pg_bin() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
	[ -n "$d" ] || die "PostgreSQL binaries not found under /usr/lib/postgresql"
	echo "$d"
}

start_pg() {
	if pg_isready -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; then return; fi
	local bin data
	bin=$(pg_bin)
	data=$BASE/pg
	mkdir -p "$BASE"
	if [ ! -s "$data/PG_VERSION" ]; then
		rm -rf "$data"
		install -d -o postgres -g postgres -m 0700 "$data"
		runuser -u postgres -- "$bin/initdb" -D "$data" -A trust -U postgres >/dev/null
	fi
	install -d -o postgres -g postgres "$BASE/pgsock"
	runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$BASE/pgsock/pg.log" -w -o \
		"-p $PG_PORT -k $BASE/pgsock -c listen_addresses='127.0.0.1,::1' -c fsync=off" start >/dev/null ||
		{ cat "$BASE/pgsock/pg.log" >&2; die "PostgreSQL did not start"; }
	log "PostgreSQL on 127.0.0.1:$PG_PORT and [::1]:$PG_PORT"
}

start_redis() {
	if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then return; fi
	mkdir -p "$BASE/redis"
	redis-server --port "$REDIS_PORT" --bind "127.0.0.1 ::1" --daemonize yes \
		--save '' --appendonly no --dir "$BASE/redis" --logfile "$BASE/redis.log" \
		--pidfile "$BASE/redis.pid" >/dev/null
	for _ in $(seq 50); do
		redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 || die "Redis did not start (see $BASE/redis.log)"
	log "Redis on 127.0.0.1:$REDIS_PORT and [::1]:$REDIS_PORT"
}

case "${1:-start}" in
start)
	[ "$(id -u)" -eq 0 ] || die "run as root: the servers run as their own users"
	scripts/install-deps.sh postgresql postgresql-client redis-server redis-tools curl iproute2
	# The Debian packages start their own instances on the default ports;
	# the tests use their own on other ports and leave those alone.
	start_pg
	start_redis
	;;
stop)
	if [ -s "$BASE/pg/PG_VERSION" ]; then
		runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$BASE/pg" -m fast stop >/dev/null 2>&1 || true
	fi
	redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
	;;
env)
	echo "VIGIL_E2E_PG_PORT=$PG_PORT"
	echo "VIGIL_E2E_REDIS_PORT=$REDIS_PORT"
	;;
*)
	die "usage: $0 start|stop|env"
	;;
esac
