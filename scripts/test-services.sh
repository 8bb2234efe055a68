#!/usr/bin/env bash
# Test services for stele's live tests (docs/contracts.md §6):
#   - Ceph RADOS Gateway: 1 mon + 1 memstore OSD + radosgw (beast) on 127.0.0.1:7480
#   - ministack (AWS emulator) on 127.0.0.1:4566
#   - PostgreSQL: the machine's on 127.0.0.1:5432 if it answers, else a throwaway cluster
#
# Usage: scripts/test-services.sh start|stop|status
#
# Everything lives under one state dir, ${STELE_SERVICES_DIR:-<repo>/.test-services};
# `start` writes <state dir>/env (export lines) for tests to source.
# `stop` stops only what this script started (pid files) and discards the
# Ceph cluster (its memstore data) and the throwaway PostgreSQL.
#
# Knobs (environment):
#   STELE_SERVICES_DIR        state dir (default <repo>/.test-services)
#   STELE_TEST_PG_PROBE_PORT  port probed for an existing PostgreSQL (default 5432)
#   STELE_SERVICES_TIMEOUT    seconds to wait for each service (default 60)
#   STELE_MINISTACK_VERSION   ministack version from PyPI (default 1.5.33)
#   STELE_MEMSTORE_BYTES      memstore OSD capacity, held in RAM (default 8 GiB: the
#                             evidence tests upload a 1 GiB file, and locked objects stay)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${STELE_SERVICES_DIR:-$REPO/.test-services}
case $STATE in /*) ;; *) STATE=$PWD/$STATE ;; esac
LOGS=$STATE/logs
CEPH_DIR=$STATE/ceph
CEPH_CONF_FILE=$CEPH_DIR/ceph.conf
VENV=$STATE/venv
MS_DIR=$STATE/ministack
PG_DIR=$STATE/pg
ENV_FILE=$STATE/env

WAIT=${STELE_SERVICES_TIMEOUT:-60}
ADMIN_TIMEOUT=15 # every ceph admin call is wrapped in `timeout` (no mgr: some calls hang)
PG_PROBE_PORT=${STELE_TEST_PG_PROBE_PORT:-5432}
MINISTACK_VERSION=${STELE_MINISTACK_VERSION:-1.5.33}
# Property-based API testing of the gateway against its /openapi.json.
SCHEMATHESIS_VERSION=${STELE_SCHEMATHESIS_VERSION:-4.32.5}
MEMSTORE_BYTES=${STELE_MEMSTORE_BYTES:-8589934592}

HOST=127.0.0.1
RGW_PORT=7480
MON_V2_PORT=3300
MON_V1_PORT=6789
MS_PORT=4566

# Fixed test credentials (test-only; never use outside this harness).
RGW_OWNER_UID=stele-owner
RGW_OWNER_ACCESS=STELEOWNERACCESSKEY1
RGW_OWNER_SECRET=steleOwnerSecretKeyForTestsOnly0000000001
RGW_USER2_UID=stele-other
RGW_USER2_ACCESS=STELEOTHERACCESSKEY2
RGW_USER2_SECRET=steleOtherSecretKeyForTestsOnly0000000002
# SSE-KMS keys for RGW's `testing` KMS backend: <key id>=<base64 of 32 bytes>.
KMS_KEY_ID=stele-test-key-1
KMS_KEY_ID2=stele-test-key-2
KMS_KEY1=QaYzBrkWYQaWqzmcz2VILbaNLPw0J3CkfEIzJuComLo=
KMS_KEY2=Lll73ETYJrNf8FdIkxROlt/e476TB4TnCeVb8JiNXaI=

# chromium: the HTML verification report is checked in a real headless browser.
# golang-go, golang-golang-x-mod-dev: receipts' proofs are checked with Go's
# golang.org/x/mod/sumdb (note, tlog), built offline in GOPATH mode.
APT_PACKAGES=(ceph-mon ceph-osd radosgw ceph-common uuid-runtime curl openssl chromium
    golang-go golang-golang-x-mod-dev)
# Where Debian's golang-*-dev packages put their sources (a GOPATH).
DEBIAN_GOPATH=/usr/share/gocode

export CEPH_CONF=$CEPH_CONF_FILE

log() { printf '[test-services] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# Print the tail of log files (for "did not come up" failures).
show_logs() {
    local f
    for f in "$@"; do
        [[ -f $f ]] || continue
        printf -- '----- tail of %s -----\n' "$f" >&2
        tail -n 40 "$f" >&2 || true
    done
}

fail_with_logs() {
    local msg=$1
    shift
    log "ERROR: $msg"
    show_logs "$@"
    exit 1
}

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run: $*"
    fi
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

ensure_port_free() {
    local port=$1 what=$2
    if port_open "$port"; then
        log "ERROR: $HOST:$port (for $what) is already in use by something this script did not start:"
        if command -v ss >/dev/null 2>&1; then ss -ltnp "sport = :$port" >&2 || true; fi
        die "free port $port (another checkout's test services? run its 'scripts/test-services.sh stop')"
    fi
}

# pid_alive PIDFILE PATTERN: the pid in PIDFILE is running and its command line matches PATTERN.
pid_alive() {
    local pidfile=$1 pattern=$2 pid
    [[ -s $pidfile ]] || return 1
    pid=$(tr -dc '0-9' <"$pidfile")
    [[ -n $pid ]] && [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$pattern"
}

# stop_pid PIDFILE PATTERN NAME GRACE [group]: TERM, wait up to GRACE seconds,
# then KILL; only if the pid in PIDFILE is ours.
stop_pid() {
    local pidfile=$1 pattern=$2 name=$3 grace=$4 group=${5:-} pid target i
    if ! pid_alive "$pidfile" "$pattern"; then
        rm -f "$pidfile"
        return 0
    fi
    pid=$(tr -dc '0-9' <"$pidfile")
    target=$pid
    # A process that leads its own group (started with setsid) is stopped with its children.
    if [[ -n $group ]] && [[ $(ps -o pgid= -p "$pid" | tr -d ' ') == "$pid" ]]; then target=-$pid; fi
    log "stopping $name (pid $pid)"
    kill -TERM -- "$target" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL -- "$target" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile"
}

# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND until it succeeds.
wait_for() {
    local secs=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "$what did not come up within ${secs}s"
            return 1
        fi
        sleep 0.2
    done
}

# ---------------------------------------------------------------- installs

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

install_debian_packages() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
    ((${#missing[@]} == 0)) && return 0
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq >/dev/null ||
        die "apt-get update failed"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >"$LOGS/apt-install.log" 2>&1 ||
        fail_with_logs "apt-get install ${missing[*]} failed" "$LOGS/apt-install.log"
}

ministack_bin() { echo "$VENV/bin/ministack"; }

install_ministack() {
    local want=$MINISTACK_VERSION have=""
    if [[ -x $VENV/bin/python ]] && [[ -x $(ministack_bin) ]]; then
        have=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("ministack"))' 2>/dev/null || true)
        [[ $have == "$want" ]] && return 0
    fi
    local py
    py=$(command -v python3.11 || command -v python3 || true)
    [[ -n $py ]] || die "python3 not found (needed for ministack)"
    log "installing ministack $want into $VENV (python: $py)"
    if [[ ! -x $VENV/bin/python ]]; then
        rm -rf "$VENV"
        "$py" -m venv "$VENV" >"$LOGS/venv.log" 2>&1 ||
            fail_with_logs "python3 -m venv failed (Debian's python3 needs python3-venv)" "$LOGS/venv.log"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "ministack==$want" >"$LOGS/pip-install.log" 2>&1 ||
        fail_with_logs "pip install ministack==$want failed" "$LOGS/pip-install.log"
    [[ -x $(ministack_bin) ]] || die "ministack installed but $(ministack_bin) is missing"
}

install_schemathesis() {
    local want=$SCHEMATHESIS_VERSION have=""
    have=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true)
    [[ $have == "$want" && -x $VENV/bin/schemathesis ]] && return 0
    log "installing schemathesis $want into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "schemathesis==$want" >"$LOGS/pip-schemathesis.log" 2>&1 ||
        fail_with_logs "pip install schemathesis==$want failed" "$LOGS/pip-schemathesis.log"
}

# ---------------------------------------------------------------- Ceph

# --foreground keeps the command in our process group, so an interrupted
# `start` can stop it together with everything else it was doing.
ceph_admin() { timeout --foreground "$ADMIN_TIMEOUT" ceph --connect-timeout 5 "$@"; }
rgw_admin() { timeout --foreground "$ADMIN_TIMEOUT" radosgw-admin "$@"; }

# name:command:grace seconds, in stop order. The cluster is thrown away on
# stop, so a daemon slow to shut down (radosgw takes ~6 s) is simply killed.
CEPH_DAEMONS=("client.rgw.gw:radosgw:1" "osd.0:ceph-osd:5" "mon.a:ceph-mon:5")
ceph_d_name() { echo "${1%%:*}"; }
ceph_d_cmd() { local r=${1#*:}; echo "${r%%:*}"; }
ceph_d_grace() { echo "${1##*:}"; }

ceph_pidfile() { echo "$CEPH_DIR/run/$1.pid"; }

rgw_answers() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://$HOST:$RGW_PORT/") == 200 ]]; }

ceph_running() {
    local d
    for d in "${CEPH_DAEMONS[@]}"; do pid_alive "$(ceph_pidfile "$(ceph_d_name "$d")")" "$(ceph_d_cmd "$d")" || return 1; done
    rgw_answers
}

ceph_any_running() {
    local d
    for d in "${CEPH_DAEMONS[@]}"; do pid_alive "$(ceph_pidfile "$(ceph_d_name "$d")")" "$(ceph_d_cmd "$d")" && return 0; done
    return 1
}

stop_ceph() {
    local d
    if [[ -d $CEPH_DIR/run ]]; then
        for d in "${CEPH_DAEMONS[@]}"; do
            stop_pid "$(ceph_pidfile "$(ceph_d_name "$d")")" "$(ceph_d_cmd "$d")" "$(ceph_d_name "$d")" "$(ceph_d_grace "$d")"
        done
    fi
    # The cluster is disposable: memstore keeps objects in RAM (and dumps them
    # to osd_data on shutdown); a new cluster is made on every start.
    rm -rf "$CEPH_DIR"
}

write_ceph_conf() {
    local fsid=$1
    cat >"$CEPH_CONF_FILE" <<EOF
# Written by scripts/test-services.sh: single-node throwaway test cluster.
[global]
fsid = $fsid
mon_host = [v2:$HOST:$MON_V2_PORT,v1:$HOST:$MON_V1_PORT]
public_addr = $HOST
cluster_addr = $HOST
ms_bind_ipv6 = false
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
run_dir = $CEPH_DIR/run
admin_socket = $CEPH_DIR/run/\$name.asok
pid_file = $CEPH_DIR/run/\$name.pid
log_file = $LOGS/ceph-\$name.log
crash_dir = $CEPH_DIR/crash
log_to_stderr = false
err_to_stderr = false
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
osd_pool_default_pg_autoscale_mode = off
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_max_pg_per_osd = 1000

[mon]
mon_data = $CEPH_DIR/mon-\$id
keyring = $CEPH_DIR/mon-\$id/keyring
paxos_propose_interval = 0.05
paxos_min_wait = 0.01

[osd]
osd_data = $CEPH_DIR/osd-\$id
keyring = $CEPH_DIR/osd-\$id/keyring
osd_objectstore = memstore
memstore_device_bytes = $MEMSTORE_BYTES
osd_max_object_name_len = 460
osd_max_object_namespace_len = 64

[client.admin]
keyring = $CEPH_DIR/client.admin.keyring

[client.bootstrap-osd]
keyring = $CEPH_DIR/client.bootstrap-osd.keyring

[client.rgw.gw]
keyring = $CEPH_DIR/client.rgw.gw.keyring
rgw_data = $CEPH_DIR/rgw
rgw_frontends = beast endpoint=$HOST:$RGW_PORT
rgw_crypt_require_ssl = false
rgw_crypt_s3_kms_backend = testing
rgw_crypt_s3_kms_encryption_keys = $KMS_KEY_ID=$KMS_KEY1 $KMS_KEY_ID2=$KMS_KEY2
EOF
}

osd_up() { ceph_admin osd stat -f json | grep -q '"num_up_osds":1'; }

start_ceph() {
    if ceph_running; then
        log "ceph: already running (rgw on $HOST:$RGW_PORT)"
        return 0
    fi
    if ceph_any_running; then log "ceph: partly running; restarting it"; fi
    stop_ceph
    ensure_port_free "$MON_V2_PORT" ceph-mon
    ensure_port_free "$MON_V1_PORT" ceph-mon
    ensure_port_free "$RGW_PORT" radosgw

    local t0=$SECONDS fsid osd_uuid osd_id
    mkdir -p "$CEPH_DIR"/{run,crash,mon-a,osd-0,rgw}
    rm -f "$LOGS"/ceph-*.log
    fsid=$(uuidgen)
    write_ceph_conf "$fsid"

    local k=$CEPH_DIR
    {
        ceph-authtool --create-keyring "$k/mon.keyring" --gen-key -n mon. --cap mon 'allow *'
        ceph-authtool --create-keyring "$k/client.admin.keyring" --gen-key -n client.admin \
            --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *'
        ceph-authtool --create-keyring "$k/client.bootstrap-osd.keyring" --gen-key -n client.bootstrap-osd \
            --cap mon 'profile bootstrap-osd' --cap mgr 'allow r'
        ceph-authtool "$k/mon.keyring" --import-keyring "$k/client.admin.keyring"
        ceph-authtool "$k/mon.keyring" --import-keyring "$k/client.bootstrap-osd.keyring"
        monmaptool --create --fsid "$fsid" --addv a "[v2:$HOST:$MON_V2_PORT,v1:$HOST:$MON_V1_PORT]" "$k/monmap"
        ceph-mon --mkfs -i a --monmap "$k/monmap" --keyring "$k/mon.keyring"
    } >"$LOGS/ceph-bootstrap.log" 2>&1 ||
        fail_with_logs "ceph: creating the monitor failed" "$LOGS/ceph-bootstrap.log" "$LOGS/ceph-mon.a.log"

    ceph-mon -i a >>"$LOGS/ceph-bootstrap.log" 2>&1 ||
        fail_with_logs "ceph-mon failed to start" "$LOGS/ceph-bootstrap.log" "$LOGS/ceph-mon.a.log"
    wait_for "$WAIT" ceph-mon ceph_admin mon stat ||
        fail_with_logs "ceph-mon did not answer" "$LOGS/ceph-mon.a.log"

    osd_uuid=$(uuidgen)
    osd_id=$(ceph_admin osd new "$osd_uuid" 2>>"$LOGS/ceph-bootstrap.log") ||
        fail_with_logs "ceph osd new failed" "$LOGS/ceph-bootstrap.log" "$LOGS/ceph-mon.a.log"
    [[ $osd_id == 0 ]] || die "ceph osd new returned id '$osd_id', expected 0"
    {
        ceph-osd -i 0 --mkfs --mkkey --no-mon-config --osd-uuid "$osd_uuid"
        ceph_admin auth add osd.0 osd 'allow *' mon 'allow profile osd' mgr 'allow profile osd' \
            -i "$k/osd-0/keyring"
        ceph-osd -i 0
    } >>"$LOGS/ceph-bootstrap.log" 2>&1 ||
        fail_with_logs "ceph-osd failed to start" "$LOGS/ceph-bootstrap.log" "$LOGS/ceph-osd.0.log"
    wait_for "$WAIT" ceph-osd osd_up ||
        fail_with_logs "ceph-osd did not come up" "$LOGS/ceph-osd.0.log" "$LOGS/ceph-mon.a.log"

    {
        ceph_admin auth get-or-create client.rgw.gw mon 'allow rw' osd 'allow rwx' mgr 'allow rw' \
            -o "$k/client.rgw.gw.keyring"
        radosgw -n client.rgw.gw
    } >>"$LOGS/ceph-bootstrap.log" 2>&1 ||
        fail_with_logs "radosgw failed to start" "$LOGS/ceph-bootstrap.log" "$LOGS/ceph-client.rgw.gw.log"
    wait_for "$WAIT" radosgw rgw_answers ||
        fail_with_logs "radosgw did not answer on $HOST:$RGW_PORT" "$LOGS/ceph-client.rgw.gw.log" "$LOGS/ceph-osd.0.log"

    {
        rgw_admin user create --uid="$RGW_OWNER_UID" --display-name="stele test owner" \
            --access-key="$RGW_OWNER_ACCESS" --secret-key="$RGW_OWNER_SECRET"
        rgw_admin user create --uid="$RGW_USER2_UID" --display-name="stele test non-owner" \
            --access-key="$RGW_USER2_ACCESS" --secret-key="$RGW_USER2_SECRET"
    } >>"$LOGS/ceph-bootstrap.log" 2>&1 ||
        fail_with_logs "radosgw-admin user create failed" "$LOGS/ceph-bootstrap.log" "$LOGS/ceph-client.rgw.gw.log"
    log "ceph: mon + memstore osd + rgw up on http://$HOST:$RGW_PORT in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- ministack

MS_PIDFILE=$MS_DIR/ministack.pid

ministack_answers() { curl -fsS --max-time 3 "http://$HOST:$MS_PORT/_localstack/health" >/dev/null; }

ministack_running() { pid_alive "$MS_PIDFILE" ministack && ministack_answers; }

stop_ministack() { stop_pid "$MS_PIDFILE" ministack ministack 5 group; }

start_ministack() {
    if ministack_running; then
        log "ministack: already running on $HOST:$MS_PORT"
        return 0
    fi
    stop_ministack
    ensure_port_free "$MS_PORT" ministack
    local t0=$SECONDS
    rm -rf "$MS_DIR"
    mkdir -p "$MS_DIR"/{s3,state,tmp}
    # setsid: own process group, so `stop` takes any children with it and a
    # Ctrl-C in the calling terminal does not kill it behind our back.
    BIND_HOST=$HOST GATEWAY_PORT=$MS_PORT \
        S3_DATA_DIR=$MS_DIR/s3 STATE_DIR=$MS_DIR/state TMPDIR=$MS_DIR/tmp \
        setsid "$(ministack_bin)" </dev/null >"$LOGS/ministack.log" 2>&1 &
    echo $! >"$MS_PIDFILE"
    wait_for "$WAIT" ministack ministack_answers ||
        fail_with_logs "ministack did not answer on $HOST:$MS_PORT/_localstack/health" "$LOGS/ministack.log"
    log "ministack: up on http://$HOST:$MS_PORT in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- PostgreSQL

PG_URL=""

pg_bindir() {
    local d
    d=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1)
    [[ -n $d ]] && dirname "$d"
}

# Run a command as the cluster owner: PostgreSQL refuses to run as root.
pg_as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# The throwaway cluster's data dir (recorded, since it may live outside the state dir).
pg_data_dir() { [[ -s $PG_DIR/datadir ]] && cat "$PG_DIR/datadir"; }

throwaway_pg_running() {
    local data bin
    data=$(pg_data_dir) || return 1
    bin=$(pg_bindir) || return 1
    [[ -s $PG_DIR/port ]] || return 1
    pg_as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1
}

pg_accepts() {
    local port=$1
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$HOST" -p "$port" -t 3 || return 1
    else
        port_open "$port" || return 1
    fi
    # The URL must also work with trust auth as user postgres.
    if command -v psql >/dev/null 2>&1; then
        PGCONNECT_TIMEOUT=3 psql -X -q -At "postgres://postgres@$HOST:$port/postgres" -c 'select 1' >/dev/null 2>&1 || return 1
    fi
}

free_port() {
    local p
    for ((p = 54329; p < 54429; p++)); do
        port_open "$p" || {
            echo "$p"
            return 0
        }
    done
    return 1
}

stop_pg() {
    local data bin
    data=$(pg_data_dir) || {
        rm -rf "$PG_DIR"
        return 0
    }
    bin=$(pg_bindir) || true
    if [[ -n $bin ]] && [[ -f $data/postmaster.pid ]]; then
        log "stopping throwaway PostgreSQL ($data)"
        pg_as_owner "$bin/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$data" "$PG_DIR"
    case $data in /tmp/stele-test-pg.*/data) rm -rf "${data%/data}" ;; esac
}

start_pg() {
    if throwaway_pg_running; then
        PG_URL="postgres://postgres@$HOST:$(cat "$PG_DIR/port")/postgres"
        log "postgres: throwaway cluster already running ($PG_URL)"
        return 0
    fi
    stop_pg
    if pg_accepts "$PG_PROBE_PORT"; then
        PG_URL="postgres://postgres@$HOST:$PG_PROBE_PORT/postgres"
        log "postgres: using the running server at $HOST:$PG_PROBE_PORT"
        return 0
    fi
    log "postgres: nothing usable on $HOST:$PG_PROBE_PORT; starting a throwaway cluster"
    local t0=$SECONDS bin port data pglog
    bin=$(pg_bindir) || die "no PostgreSQL server installed (/usr/lib/postgresql/*/bin/initdb); install Debian's postgresql"
    if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        die "running as root but there is no 'postgres' user to own the throwaway cluster"
    fi
    port=$(free_port) || die "no free port in 54329..54428 for the throwaway PostgreSQL"
    mkdir -p "$PG_DIR"
    data=$PG_DIR/data
    # As root the cluster belongs to `postgres`, which must be able to reach the data dir.
    if [[ $(id -u) -eq 0 ]] && ! runuser -u postgres -- test -x "$PG_DIR"; then
        data=$(mktemp -d /tmp/stele-test-pg.XXXXXX)/data
    fi
    mkdir -p "$data"
    echo "$data" >"$PG_DIR/datadir"
    echo "$port" >"$PG_DIR/port"
    pglog=${data%/data}/postgres.log # written by the cluster owner
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres: "${data%/data}" "$data"
    fi
    pg_as_owner "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync \
        >"$LOGS/postgres-initdb.log" 2>&1 ||
        fail_with_logs "initdb failed" "$LOGS/postgres-initdb.log"
    # TLS as Debian's server has it (a self-signed, non-CA certificate for
    # localhost, like its snakeoil one): the TLS tests connect with every sslmode.
    local ssl_opts=""
    if command -v openssl >/dev/null 2>&1 &&
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
            -subj /CN=localhost -addext subjectAltName=DNS:localhost \
            -addext basicConstraints=critical,CA:FALSE \
            -keyout "$data/server.key" -out "$data/server.crt" >>"$LOGS/postgres-initdb.log" 2>&1; then
        chmod 600 "$data/server.key"
        chmod 644 "$data/server.crt"
        if [[ $(id -u) -eq 0 ]]; then chown postgres: "$data/server.key" "$data/server.crt"; fi
        ssl_opts="-c ssl=on -c ssl_cert_file=$data/server.crt -c ssl_key_file=$data/server.key"
    fi
    pg_as_owner "$bin/pg_ctl" -D "$data" -l "$pglog" -w -t "$WAIT" \
        -o "-c listen_addresses=$HOST -p $port -c unix_socket_directories='$data' -c fsync=off -c synchronous_commit=off -c full_page_writes=off $ssl_opts" \
        start >>"$LOGS/postgres-initdb.log" 2>&1 ||
        fail_with_logs "throwaway PostgreSQL did not start on $HOST:$port" "$LOGS/postgres-initdb.log" "$pglog"
    wait_for "$WAIT" "PostgreSQL on $port" pg_accepts "$port" ||
        fail_with_logs "throwaway PostgreSQL does not accept connections on $HOST:$port" "$pglog"
    PG_URL="postgres://postgres@$HOST:$port/postgres"
    log "postgres: throwaway cluster up at $PG_URL in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- env file

write_env() {
    local tmp=$ENV_FILE.tmp
    cat >"$tmp" <<EOF
# Written by scripts/test-services.sh start; source it before running live tests.
export STELE_SERVICES_DIR='$STATE'
export STELE_TEST_PG_URL='$PG_URL'
export STELE_TEST_RGW_ENDPOINT='http://$HOST:$RGW_PORT'
export STELE_TEST_RGW_ACCESS_KEY='$RGW_OWNER_ACCESS'
export STELE_TEST_RGW_SECRET_KEY='$RGW_OWNER_SECRET'
export STELE_TEST_RGW_USER_ID='$RGW_OWNER_UID'
export STELE_TEST_RGW_USER2_ACCESS_KEY='$RGW_USER2_ACCESS'
export STELE_TEST_RGW_USER2_SECRET_KEY='$RGW_USER2_SECRET'
export STELE_TEST_RGW_USER2_ID='$RGW_USER2_UID'
export STELE_TEST_RGW_KMS_KEY_ID='$KMS_KEY_ID'
export STELE_TEST_RGW_KMS_KEY_ID2='$KMS_KEY_ID2'
export STELE_TEST_MINISTACK_ENDPOINT='http://$HOST:$MS_PORT'
export STELE_TEST_SCHEMATHESIS='$VENV/bin/schemathesis'
export AWS_REGION='us-east-1'
EOF
    local go
    go=$(command -v go || true)
    if [[ -n $go && -d $DEBIAN_GOPATH/src/golang.org/x/mod/sumdb/note ]]; then
        printf "export STELE_TEST_GO='%s'\nexport STELE_TEST_GOPATH='%s'\n" "$go" "$DEBIAN_GOPATH" >>"$tmp"
    fi
    mv "$tmp" "$ENV_FILE"
}

# ---------------------------------------------------------------- commands

cmd_start() {
    local t0=$SECONDS
    mkdir -p "$STATE" "$LOGS"
    install_debian_packages
    install_ministack
    install_schemathesis
    local t1=$SECONDS
    start_ceph
    start_ministack
    start_pg
    write_env
    log "all services up in $((SECONDS - t1))s (installs: $((t1 - t0))s); env: $ENV_FILE"
}

# `start` runs as a job in its own process group so that an interrupt
# (Ctrl-C, TERM) is acted on at once, even while a child that ignores or
# swallows SIGINT is running: the job is killed, whatever it had started is
# stopped, and the signal is re-raised so the caller sees it too.
run_start() {
    local worker rc=0
    set -m
    cmd_start &
    worker=$!
    set +m
    # shellcheck disable=SC2064 # expand $worker now
    for sig in INT TERM HUP; do trap "abort_start $worker $sig" "$sig"; done
    wait "$worker" || rc=$?
    trap - INT TERM HUP
    return "$rc"
}

# shellcheck disable=SC2317 # invoked by trap
abort_start() {
    local worker=$1 sig=$2
    trap - INT TERM HUP
    log "interrupted (SIG$sig); stopping what was started"
    kill -TERM -- "-$worker" 2>/dev/null || true
    wait "$worker" 2>/dev/null || true
    cmd_stop
    kill -s "$sig" $$
}

cmd_stop() {
    [[ -d $STATE ]] || return 0
    # ministack stops (≈2 s) in parallel with the ordered Ceph shutdown.
    stop_ministack &
    local ms=$!
    stop_ceph
    stop_pg
    wait "$ms" || true
    rm -rf "$MS_DIR"
    rm -f "$ENV_FILE"
    log "stopped"
}

cmd_status() {
    local ok=0 pg
    if ceph_running; then
        echo "ceph-rgw:   running  http://$HOST:$RGW_PORT"
    elif ceph_any_running; then
        echo "ceph-rgw:   PARTLY running (run stop, then start)"
        ok=1
    else
        echo "ceph-rgw:   stopped"
        ok=1
    fi
    if ministack_running; then
        echo "ministack:  running  http://$HOST:$MS_PORT"
    else
        echo "ministack:  stopped"
        ok=1
    fi
    if throwaway_pg_running; then
        echo "postgres:   running  postgres://postgres@$HOST:$(cat "$PG_DIR/port")/postgres (throwaway)"
    elif [[ -s $ENV_FILE ]] && pg=$(sed -n "s/^export STELE_TEST_PG_URL='\(.*\)'$/\1/p" "$ENV_FILE") &&
        [[ -n $pg ]] && pg_accepts "$(sed -E 's#.*:([0-9]+)/.*#\1#' <<<"$pg")"; then
        echo "postgres:   running  $pg (not started by this script)"
    else
        echo "postgres:   not set up"
        ok=1
    fi
    return "$ok"
}

case ${1:-} in
start) run_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
