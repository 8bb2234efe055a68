#!/usr/bin/env bash
# The test command: start the test services (scripts/test-services.sh), run the
# whole workspace's tests against them, stop the services again.
#
#   scripts/test.sh [ARGS...]   ARGS go to the test runner, e.g. `-p stele-it`
#
# Uses `cargo nextest run` when cargo-nextest is installed, else `cargo test`.
# Exits with the test runner's exit code. Services that were already running
# before this script (started by hand with `scripts/test-services.sh start`)
# are left running; set STELE_KEEP_SERVICES=1 to always leave them running.
set -uo pipefail # no -e: the runner's exit code is ours to return

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
SERVICES=$REPO/scripts/test-services.sh
export STELE_SERVICES_DIR=${STELE_SERVICES_DIR:-$REPO/.test-services}

stop_on_exit=1
if [[ ${STELE_KEEP_SERVICES:-0} == 1 ]]; then
    stop_on_exit=0
elif bash "$SERVICES" status >/dev/null 2>&1; then
    stop_on_exit=0
    echo "[test.sh] test services were already running; leaving them running" >&2
fi

# shellcheck disable=SC2317 # invoked by trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((stop_on_exit)); then bash "$SERVICES" stop || true; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash "$SERVICES" start || {
    echo "[test.sh] test services did not start (see the log tail above)" >&2
    exit 1
}
# shellcheck source=/dev/null
source "$STELE_SERVICES_DIR/env"
# Every live test runs here: a missing service fails its test instead of
# skipping it (plain `cargo test` skips them), so CI never skips silently.
export STELE_TEST_REQUIRE_LIVE=1

pg_kind="existing server"
[[ -s $STELE_SERVICES_DIR/pg/port ]] && pg_kind="throwaway cluster"
cat <<BANNER
==== stele tests against live services ====
  Ceph RGW ($(radosgw --version 2>/dev/null | awk '{print $1, $2, $3}'))  $STELE_TEST_RGW_ENDPOINT
  ministack $("$STELE_SERVICES_DIR/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("ministack"))' 2>/dev/null)  $STELE_TEST_MINISTACK_ENDPOINT
  PostgreSQL ($pg_kind)  $STELE_TEST_PG_URL
BANNER

# Offline static checks of the Terraform module and the bucket policy template.
# They run first so the test runner's summary is the last thing printed.
if (($# == 0)); then
    echo "==== scripts/check-terraform.sh ===="
    bash "$REPO/scripts/check-terraform.sh" || {
        echo "[test.sh] the Terraform/policy checks failed (see above)" >&2
        exit 1
    }
fi

if cargo nextest --version >/dev/null 2>&1; then
    runner=(cargo nextest run --workspace --no-fail-fast)
else
    runner=(cargo test --workspace --no-fail-fast)
fi
echo "==== ${runner[*]} $* ===="
"${runner[@]}" "$@"
rc=$?
# Benchmarks are run by hand (see README); make sure they still build.
if ((rc == 0)) && (($# == 0)); then
    echo "==== cargo build --benches (compile check) ===="
    cargo build -q -p stele-store -p stele-anchorer -p stele-evidence --features stele-store/testkit --benches || rc=$?
fi
exit $rc
