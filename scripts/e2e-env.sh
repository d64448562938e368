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
#   versitygw   VIGIL_E2E_S3_PORT     57070  (S3 with versioning and Object
#               Lock, posix backend; access key vigil-e2e, secret
#               vigil-e2e-secret, region us-east-1)
#   nats-server VIGIL_E2E_NATS_PORT   54222  (JetStream enabled)
#   MariaDB     VIGIL_E2E_MARIADB_PORT 33069 (user root, password test, over TCP)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PG_PORT=${VIGIL_E2E_PG_PORT:-54329}
REDIS_PORT=${VIGIL_E2E_REDIS_PORT:-63799}
BASE=${VIGIL_E2E_DIR:-/tmp/vigil-e2e}
S3_PORT=${VIGIL_E2E_S3_PORT:-57070}
NATS_PORT=${VIGIL_E2E_NATS_PORT:-54222}
S3_ACCESS=vigil-e2e
S3_SECRET=vigil-e2e-secret
# Pinned server versions, installed with go install into /usr/local/bin.
VERSITYGW_VERSION=v1.8.0
NATS_SERVER_VERSION=v2.15.2
MARIADB_PORT=${VIGIL_E2E_MARIADB_PORT:-33069}
MARIADB_PASSWORD=test

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

# go_install installs a Go program at a pinned version unless that version
# is already there (the binary records the version it was built from).
go_install() {
	local bin=$1 pkg=$2 ver=$3 go=${GO:-/usr/local/go/bin/go}
	if [ -x "/usr/local/bin/$bin" ] && "$go" version -m "/usr/local/bin/$bin" 2>/dev/null | grep -q "[[:space:]]$ver[[:space:]]"; then
		return
	fi
	log "installing $bin $ver"
	(cd /tmp && GOBIN=/usr/local/bin "$go" install "$pkg@$ver") || die "go install $pkg@$ver failed"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
	for _ in $(seq 100); do
		port_open "$1" && return 0
		sleep 0.1
	done
	return 1
}

start_s3() {
	if port_open "$S3_PORT"; then return; fi
	mkdir -p "$BASE/s3/data" "$BASE/s3/versions"
	ROOT_ACCESS_KEY_ID=$S3_ACCESS ROOT_SECRET_ACCESS_KEY=$S3_SECRET \
		setsid versitygw --port "127.0.0.1:$S3_PORT" --quiet \
		posix --versioning-dir "$BASE/s3/versions" "$BASE/s3/data" \
		>"$BASE/s3.log" 2>&1 </dev/null &
	echo $! >"$BASE/s3.pid"
	wait_port "$S3_PORT" || die "versitygw did not start (see $BASE/s3.log)"
	log "versitygw (S3, Object Lock) on 127.0.0.1:$S3_PORT"
}

start_nats() {
	if port_open "$NATS_PORT"; then return; fi
	mkdir -p "$BASE/nats"
	setsid nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$BASE/nats" \
		>"$BASE/nats.log" 2>&1 </dev/null &
	echo $! >"$BASE/nats.pid"
	wait_port "$NATS_PORT" || die "nats-server did not start (see $BASE/nats.log)"
	log "nats-server (JetStream) on 127.0.0.1:$NATS_PORT"
}

stop_pidfile() {
	local f=$BASE/$1.pid
	if [ -s "$f" ]; then
		kill "$(cat "$f")" 2>/dev/null || true
		rm -f "$f"
	fi
}

mariadb_up() {
	mariadb-admin --no-defaults --protocol=tcp -h 127.0.0.1 -P "$MARIADB_PORT" -u root \
		-p"$MARIADB_PASSWORD" --connect-timeout=2 ping >/dev/null 2>&1
}

start_mariadb() {
	if mariadb_up; then return; fi
	local data=$BASE/mariadb run=$BASE/mariadbrun
	local sock=$run/mariadb.sock
	mkdir -p "$BASE"
	install -d -o mysql -g mysql "$run"
	if [ ! -d "$data/mysql" ]; then
		rm -rf "$data"
		install -d -o mysql -g mysql -m 0700 "$data"
		mariadb-install-db --no-defaults --user=mysql --datadir="$data" \
			--skip-test-db >"$BASE/mariadb-install.log" 2>&1 ||
			{ cat "$BASE/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
	fi
	setsid runuser -u mysql -- /usr/sbin/mariadbd --no-defaults --datadir="$data" \
		--port="$MARIADB_PORT" --bind-address=127.0.0.1 --socket="$sock" \
		--pid-file="$run/mariadb.pid" --log-error="$run/mariadb.log" \
		--skip-name-resolve --innodb-flush-log-at-trx-commit=0 </dev/null >/dev/null 2>&1 &
	for _ in $(seq 100); do
		[ -S "$sock" ] && mariadb-admin --no-defaults --socket="$sock" -u root ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	# root gets a password for TCP clients; the socket keeps unix_socket
	# authentication for this script.
	mariadb --no-defaults --socket="$sock" -u root -e "
		CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '$MARIADB_PASSWORD';
		GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
		CREATE DATABASE IF NOT EXISTS test;" ||
		die "MariaDB: creating the TCP user failed (see $run/mariadb.log)"
	mariadb_up || die "MariaDB did not start (see $run/mariadb.log)"
	log "MariaDB on 127.0.0.1:$MARIADB_PORT"
}

case "${1:-start}" in
start)
	[ "$(id -u)" -eq 0 ] || die "run as root: the servers run as their own users"
	# postgresql brings pgbench (/usr/lib/postgresql/*/bin, off PATH) and
	# redis-tools brings redis-benchmark: the L7 client tests and make bench
	# use both.
	scripts/install-deps.sh postgresql postgresql-client redis-server redis-tools curl iproute2
	scripts/install-deps.sh mariadb-server mariadb-client
	# The Debian packages start their own instances on the default ports;
	# the tests use their own on other ports and leave those alone.
	start_pg
	start_redis
	go_install versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION"
	go_install nats-server github.com/nats-io/nats-server/v2 "$NATS_SERVER_VERSION"
	start_s3
	start_nats
	start_mariadb
	;;
stop)
	if [ -s "$BASE/pg/PG_VERSION" ]; then
		runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$BASE/pg" -m fast stop >/dev/null 2>&1 || true
	fi
	redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
	stop_pidfile s3
	stop_pidfile nats
	mariadb-admin --no-defaults --socket="$BASE/mariadbrun/mariadb.sock" -u root shutdown >/dev/null 2>&1 || true
	;;
env)
	echo "VIGIL_E2E_PG_PORT=$PG_PORT"
	echo "VIGIL_E2E_REDIS_PORT=$REDIS_PORT"
	echo "VIGIL_E2E_S3_ENDPOINT=127.0.0.1:$S3_PORT"
	echo "VIGIL_E2E_S3_ACCESS_KEY=$S3_ACCESS"
	echo "VIGIL_E2E_S3_SECRET_KEY=$S3_SECRET"
	echo "VIGIL_E2E_NATS_URL=nats://127.0.0.1:$NATS_PORT"
	echo "VIGIL_E2E_MARIADB_PORT=$MARIADB_PORT"
	echo "VIGIL_E2E_MARIADB_USER=root"
	echo "VIGIL_E2E_MARIADB_PASSWORD=$MARIADB_PASSWORD"
	;;
*)
	die "usage: $0 start|stop|env"
	;;
esac
