#!/usr/bin/env bash
# A real one-node Slurm on 127.0.0.1 for the integration tests (tests/test_slurm.py).
#
#   tests/slurm/localslurm.sh start [STATE_DIR]   install if missing, start munge/slurmctld/slurmd,
#                                                  wait until `srun -n1 true` works; prints SLURM_CONF=...
#   tests/slurm/localslurm.sh stop  [STATE_DIR]   cancel our jobs, stop the daemons this script started
#   tests/slurm/localslurm.sh status [STATE_DIR]  exit 0 when the cluster answers
#
# STATE_DIR (default $HPWF_SLURM_DIR, else /tmp/hpwf-slurm) holds slurm.conf, state, logs, pid files.
# Clients need SLURM_CONF=STATE_DIR/slurm.conf (nothing is written to /etc/slurm).
# Needs root, Debian's slurm-wlm 22.05 (apt-installed here when missing) and free ports 6817/6818.
# Facts behind the settings: /work/shared/notes/slurm.md (cred_expire=10 and sched_interval=2 make a
# requeue take ~11 s instead of minutes; MinJobAge=4; MpiDefault=pmi2 for PyPI's mpich).
set -euo pipefail

ACTION=${1:-start}
P=${2:-${HPWF_SLURM_DIR:-/tmp/hpwf-slurm}}
CPUS=${HPWF_SLURM_CPUS:-8}
export SLURM_CONF="$P/slurm.conf"

log() { echo "[localslurm] $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "needs root (apt-get, munged, slurmctld and slurmd); run it as root or with sudo"
    exit 1
fi

alive() {  # alive PIDFILE: the process exists and is not a zombie (exited daemons linger as zombies here)
    local pid state
    [ -s "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -r "/proc/$pid/stat" ] || return 1
    state=$(sed 's/^[^)]*) \(.\).*/\1/' "/proc/$pid/stat")
    [ "$state" != Z ]
}

answers() { timeout 20 srun -n1 -t1 true >/dev/null 2>&1; }

install_if_missing() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        return
    fi
    log "installing slurmctld slurmd slurm-client munge with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

start_munge() {
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    fi
    if alive /run/munge/munged.pid; then
        return
    fi
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
    runuser -u munge -- /usr/sbin/munged
    echo started >"$P/run/munge.ours"
}

write_conf() {
    local h
    h=$(hostname -s)
    # The state is fresh on every start, so job ids would start at 1 again and meet the
    # /dev/shm leftovers of killed MPI steps of the earlier cluster's jobs with the same id
    # (MPICH names its segments after JOBID.STEPID): start from a number that moves with time.
    FIRST_JOB_ID=$(( ($(date +%s) % 600000) * 100 + 1000 ))
    cat >"$SLURM_CONF" <<EOF
# Written by tests/slurm/localslurm.sh: a one-node Slurm on 127.0.0.1 for hpwf's tests.
ClusterName=hpwftest
SlurmctldHost=$h(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
StateSaveLocation=$P/state/ctld
SlurmdSpoolDir=$P/state/d
SlurmctldPidFile=$P/run/slurmctld.pid
SlurmdPidFile=$P/run/slurmd.pid
SlurmctldLogFile=$P/log/slurmctld.log
SlurmdLogFile=$P/log/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=pmi2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
InactiveLimit=0
MinJobAge=4
FirstJobId=$FIRST_JOB_ID
NodeName=$h NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    mkdir -p "$P/run" "$P/log"
    if alive "$P/run/slurmctld.pid" && alive "$P/run/slurmd.pid" && answers; then
        log "already running ($SLURM_CONF)"
        echo "SLURM_CONF=$SLURM_CONF"
        return
    fi
    stop_daemons
    install_if_missing
    for port in 6817 6818; do
        if ss -ltn "sport = :$port" 2>/dev/null | grep -q LISTEN; then
            log "port $port is in use by another process: stop that Slurm first"
            exit 1
        fi
    done
    start_munge
    rm -rf "$P/state"  # a fresh cluster: no jobs recovered from an earlier session
    mkdir -p "$P/state/ctld" "$P/state/d"
    write_conf
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    local deadline=$((SECONDS + 60))
    until [ "$(sinfo -h -o %t 2>/dev/null)" = idle ] && answers; do
        if [ $SECONDS -ge $deadline ]; then
            log "Slurm did not come up in 60 s; logs in $P/log"
            tail -n 20 "$P/log/slurmctld.log" "$P/log/slurmd.log" >&2 || true
            exit 1
        fi
        alive "$P/run/slurmctld.pid" || { log "slurmctld exited"; tail -n 20 "$P/log/slurmctld.log" >&2; exit 1; }
        sleep 0.5
    done
    log "ready ($SLURM_CONF)"
    echo "SLURM_CONF=$SLURM_CONF"
}

wait_gone() {  # wait_gone PIDFILE: up to 15 s, then SIGKILL
    local i
    for i in $(seq 1 30); do
        alive "$1" || return 0
        sleep 0.5
    done
    kill -9 "$(cat "$1")" 2>/dev/null || true
}

stop_daemons() {
    local f
    for f in "$P/run/slurmd.pid" "$P/run/slurmctld.pid"; do
        if alive "$f"; then
            kill "$(cat "$f")" 2>/dev/null || true
            wait_gone "$f"
        fi
        rm -f "$f"
    done
}

stop() {
    if [ -f "$SLURM_CONF" ] && alive "$P/run/slurmctld.pid"; then
        squeue -h -o %i 2>/dev/null | xargs -r scancel --full --quiet 2>/dev/null || true  # our private cluster
        local deadline=$((SECONDS + 15))
        while [ -n "$(squeue -h -o %i 2>/dev/null)" ] && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
    fi
    stop_daemons
    if [ -f "$P/run/munge.ours" ]; then
        if alive /run/munge/munged.pid; then
            kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
            wait_gone /run/munge/munged.pid
        fi
        rm -f "$P/run/munge.ours"
    fi
    log "stopped"
}

case "$ACTION" in
    start) start ;;
    stop) stop ;;
    status) alive "$P/run/slurmctld.pid" && alive "$P/run/slurmd.pid" && answers ;;
    *) echo "usage: $0 start|stop|status [STATE_DIR]" >&2; exit 2 ;;
esac
