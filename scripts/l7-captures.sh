#!/usr/bin/env bash
# l7-captures.sh re-records the conversations the SQL parser tests replay:
# psql and an extended-protocol client against the e2e PostgreSQL, the
# mariadb client and a binary-protocol client against the e2e MariaDB. It
# rewrites pkg/l7/{postgres,mysql}/testdata/*.cap, the fuzz seeds made from
# them, and the expected results (*.want); review them with `git diff`.
#
# Usage: sudo scripts/l7-captures.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

scripts/e2e-env.sh start
eval "$(scripts/e2e-env.sh env | sed 's/^/export /')"
export VIGIL_L7_CAPTURE=1
go test -count=1 -run '^TestRecordCaptures$' ./pkg/l7/postgres/ ./pkg/l7/mysql/
go test -count=1 -run '^TestCaptures$' ./pkg/l7/postgres/ ./pkg/l7/mysql/ -args -update
