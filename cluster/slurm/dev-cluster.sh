#!/usr/bin/env bash
# dev-cluster.sh -- a real single-node SLURM cluster for tvo developers and CI.
#
# Usage (as root, from any directory):
#   cluster/slurm/dev-cluster.sh up     [--gpus N] [--cpus N] [--dir DIR]
#   cluster/slurm/dev-cluster.sh down   [--purge] [--dir DIR]
#   cluster/slurm/dev-cluster.sh status [--dir DIR]
#   cluster/slurm/dev-cluster.sh newdir
#
#   up      Installs the Debian packages if missing, starts munged, mariadbd, slurmdbd,
#           slurmctld and slurmd, registers the cluster in the accounting DB and waits until
#           the node is idle. Prints the partition name ("debug") as the LAST stdout line;
#           everything else goes to stderr, so `part=$(dev-cluster.sh up)` works. Its last
#           stderr line is the `export SLURM_CONF=...` that points client commands at it.
#           Idempotent: when the cluster is already up it only prints the partition name.
#   down    Cancels the cluster's jobs, then stops exactly the daemons `up` started (by the
#           PID files in the state dir; SIGTERM, wait, SIGKILL) in reverse order. Packages
#           stay installed. `--purge` also deletes the state dir (job history, DB, config).
#   status  Lists the daemons (by PID file) and prints `sinfo`. Exit 0 when up, 1 otherwise.
#   newdir  Makes a new, empty state dir (see --dir) and prints its path.
#
# A cluster belongs to whoever started it: many can run on one machine at once, each with its
# own state dir, ports, config and munge socket, and nothing outside its dir is written (no
# /etc/slurm, no /run/munge, no system MariaDB). Client commands (sbatch, squeue, sacct,
# scancel, scontrol, sinfo, srun) and tvo find a cluster through SLURM_CONF=DIR/etc/slurm.conf
# in their environment; slurm.conf's AuthInfo names its munge socket.
#
# Options and environment:
#   --dir DIR                  state dir: config, logs, PID files, DB, spool, munge key and
#                              socket, fake GPU devices, and the daemons' temp files
#                              (TMPDIR=DIR/tmp). Default: $TVO_SLURM_DIR; else the dir whose
#                              etc/slurm.conf SLURM_CONF names; else, for `up`, a new dir as
#                              `newdir` makes: $TMPDIR/tvo-slurm.XXXXXX, or, when that path is
#                              too long for unix sockets (107 bytes) or the munge and mysql
#                              users cannot reach it, /tmp/tvo-slurm.XXXXXX (and it says so).
#   --cpus N                   CPUs the node claims (default: max(8, nproc)). More than the
#                              machine has is fine (SlurmdParameters=config_overrides): it lets
#                              several test jobs run at once on a 2-core machine.
#   --gpus N                   fake GPUs (default 0): Gres=gpu:N backed by /dev/null clones.
#   TVO_SLURM_MAX_ARRAY_SIZE   MaxArraySize (default 1001).
#   TVO_SLURM_CTLD_PORT, TVO_SLURMD_PORT, TVO_SLURM_DBD_PORT, TVO_SLURM_DB_PORT
#                              TCP ports of slurmctld, slurmd, slurmdbd and the private MariaDB
#                              (all on 127.0.0.1). Default: free ports chosen at every `up` from
#                              a stopped cluster, outside the kernel's ephemeral range.
#   TVO_SLURM_UP_TIMEOUT       seconds to wait for each daemon / the idle node (default 60).
#
# The daemons read DIR/etc/slurm.conf via SLURM_CONF (gres.conf, slurmdbd.conf and an empty
# plugstack.conf sit beside it).
#
# State across restarts: `down` keeps DIR; the next `up` REUSES it (munge key, DB, slurmctld
# StateSaveLocation), so job ids keep counting and sacct keeps the history. slurm.conf and
# gres.conf are regenerated on every `up` from a stopped cluster, so options/env take effect.
# `down --purge` then `up` starts fresh: job ids restart at 1 (the Python side uses a fresh
# submitit folder per submission, so a reused id cannot return a stale result).
#
# A small MaxArraySize for a test: restart slurmctld with it (state is reused, ~5 s):
#   dev-cluster.sh down && TVO_SLURM_MAX_ARRAY_SIZE=4 dev-cluster.sh up   # indices 0..3 allowed
#   scontrol show config | grep MaxArraySize      # -> MaxArraySize = 4
# `scontrol reconfigure` is NOT enough (observed on 22.05.8): after editing MaxArraySize in
# DIR/etc/slurm.conf and reconfiguring, `scontrol show config` prints the new value but sbatch
# still enforces the old one until slurmctld restarts. Changing --gpus/--cpus also needs `down`
# first: `up` on a running cluster with different explicit options exits 2 and says so.
#
# Measured on this 2-core Debian 12 VM (SLURM 22.05.8, MariaDB 10.11), wall clock; first
# figure on a quiet machine, second with other work keeping the load average at ~6:
#   up from a bare machine (packages not installed):  15.1 s / 24.3 s  (28 packages, 19 MB
#                                                     fetched; apt-get update, if needed, +1 s)
#   up when installed, fresh state dir:                3.1 s / 4.5-12 s (mariadb-install-db)
#   up after down (state reused):                      2.2-2.6 s  (--gpus 2: 2.3-2.7 s)
#   up when already up:                                0.3-0.7 s
#   down:                                              1.3-2.3 s  (+0.5 s when jobs run)
# Also seen: `scontrol requeue` of a running job -> it runs again after ~12 s (cred_expire=10).
#
# Fake GPUs, observed with `up --gpus 2` (TaskPlugin=task/none, no device cgroup):
#   - The batch script of a GPU job sees all of the job's GPUs: CUDA_VISIBLE_DEVICES=0,1,
#     SLURM_JOB_GPUS=0,1, GPU_DEVICE_ORDINAL=0,1, SLURM_GPUS_ON_NODE=2.
#   - sbatch --ntasks=2 --gpus-per-task=1, then srun: each task sees ONLY its own GPU
#     (SLURM_LOCALID=0 -> CUDA_VISIBLE_DEVICES=0, LOCALID=1 -> 1). The binding is done by the
#     gres plugin, so it happens even with task/none.
#   - sbatch --ntasks=2 --gpus-per-node=2, then srun: EVERY task sees 0,1 (no per-task binding;
#     --gpu-bind=single:1 gives one each; --gpu-bind=closest gives all). This is submitit's
#     gpus_per_node case: set CUDA_VISIBLE_DEVICES from the local rank on the Python side.
#   - Two concurrent 1-GPU jobs get CUDA_VISIBLE_DEVICES=0 and =1 (global indices, since no
#     cgroup renumbers them); a third 1-GPU job waits with reason Resources.
#   - On a node WITH gres gpu, a job that asks for no GPU gets no CUDA_VISIBLE_DEVICES even
#     if the submitting shell exported one (CUDA_VISIBLE_DEVICES=5 sbatch ... -> unset). On a
#     node WITHOUT gres (no --gpus) the submitter's value leaks in (-> 5), via --export=ALL.
#   - Without --gpus, a GPU request is rejected: "Requested node configuration is not
#     available".
#   - sacct -o AllocTRES shows gres/gpu=N (AccountingStorageTRES=gres/gpu).
#
# Other facts found while writing this:
#   - slurmdbd connections (sacct, sacctmgr, slurmctld) take the munge socket from
#     AccountingStoragePass, not from AuthInfo=socket=...; both are set below.
#   - munged insists that its socket directory is world-executable (0755).
#   - Daemons re-parented to PID 1 of a container can stay zombies for ~2 s; a zombie counts
#     as stopped here, else `down` would wait for the reaper.
#   - Right after `sbatch --wait` returns, sacct may not list the job's final state for a
#     fraction of a second (the record reaches slurmdbd asynchronously): poll.
#   - The "can not load PMIx library" errors in slurmctld.log/slurmd.log are harmless
#     (--no-install-recommends skips libpmix; MpiDefault=none).
#
# A failed `up` stops every daemon it started (in reverse order) before it exits, so a broken
# start leaves nothing running; daemons that were already running are left as they were.
#
# Container facts this relies on: no systemd (daemons are started here, not by units), no
# cgroups (proctrack/linuxproc + task/none), everything runs as root except munged (munge user)
# and mariadbd (drops to the mysql user). Each daemon runs in the foreground in its own session
# (setsid), and the script writes its PID file from $!, so `down` only ever signals processes
# this script started. munged uses its own key and socket under DIR (so /run/munge and
# /etc/munge/munge.key are not used); MariaDB uses its own datadir, socket and loopback port;
# slurmctld, slurmd and slurmdbd listen on ports of the cluster's own. `up` refuses to start
# when a foreign process holds one of its ports.
set -euo pipefail

readonly PARTITION=debug
readonly CLUSTER_NAME=tvo
readonly MARKER="# Written by tvo cluster/slurm/dev-cluster.sh"
readonly PACKAGES=(slurmctld slurmd slurm-client slurm-wlm-basic-plugins munge
                   slurmdbd slurm-wlm-mysql-plugin mariadb-server)
# Order matters: each daemon needs the ones before it. `down` walks it backwards.
readonly DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)
# Each port: the variable this script uses, and the environment variable that may set it.
declare -rA PORT_ENV=([CTLD_PORT]=TVO_SLURM_CTLD_PORT [SLURMD_PORT]=TVO_SLURMD_PORT
                      [DBD_PORT]=TVO_SLURM_DBD_PORT [DB_PORT]=TVO_SLURM_DB_PORT)
readonly PORT_NAMES=(CTLD_PORT SLURMD_PORT DBD_PORT DB_PORT)
# Chosen ports lie below the kernel's ephemeral range (32768-60999 by default), so no outgoing
# connection holds one by chance.
readonly PORT_LOW=20000 PORT_SPAN=12000
# Unix sockets live in the state dir: its path plus the longest socket name must stay under
# sun_path's 107 bytes (100 leaves room for a daemon's suffixes).
readonly SOCKET_PATH_MAX=100 LONGEST_SOCKET=/munge/munge.socket.2

UP_TIMEOUT=${TVO_SLURM_UP_TIMEOUT:-60}
MAX_ARRAY_SIZE=${TVO_SLURM_MAX_ARRAY_SIZE:-1001}

log() { echo "[dev-cluster] $*" >&2; }
die() { echo "[dev-cluster] ERROR: $*" >&2; exit 1; }

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
}

short_usage() {
    sed -n '4,8{s/^# \{0,1\}//;p}' "$0" >&2
    echo "(--help for details)" >&2
}

# ---------------------------------------------------------------------------------------------
# Paths. Everything lives under $DIR.
# ---------------------------------------------------------------------------------------------
set_paths() {
    ETC=$DIR/etc
    CONF=$ETC/slurm.conf
    LOGDIR=$DIR/log
    RUNDIR=$DIR/run
    MUNGEDIR=$DIR/munge
    MUNGE_SOCKET=$MUNGEDIR/munge.socket.2
    DBDIR=$DIR/db
    DB_SOCKET=$DBDIR/mariadb.sock
    DEVDIR=$DIR/dev
    PARAMS=$ETC/params
    TMPDIR_OWN=$DIR/tmp
}

# The PID files this script trusts: DIR/run/NAME.pid, written by the script itself from $! the
# moment it launches a daemon in the foreground (see launch). Not the daemons' own PID files:
# those appear only a while after start, so an `up` that failed early could leave a daemon
# nobody knows about; and daemons rewrite (truncate) them at start and delete them while still
# shutting down. The daemons' own files are NAME.daemon.pid beside ours (munged's and
# mariadbd's in directories their users can write).
pidfile_of() { echo "$RUNDIR/$1.pid"; }

logfile_of() {
    case $1 in
        munged) echo "$MUNGEDIR/munged.log" ;;   # munged wants a log dir only munge can write
        *) echo "$LOGDIR/$1.log" ;;
    esac
}

# PID of a daemon this script started, or nothing. The PID must be alive AND its /proc comm
# must be the daemon's name, so a stale PID file whose number was reused by some other process
# is never reported as ours (and never signalled by `down`).
daemon_pid() {
    local name=$1 pidfile pid
    pidfile=$(pidfile_of "$name")
    [[ -r $pidfile ]] || return 0
    pid=$(tr -dc '0-9' 2>/dev/null <"$pidfile" || true)
    [[ -n $pid ]] || return 0
    if alive "$pid" "$name"; then echo "$pid"; fi
}

# Is this exact process (pid + name) still alive? Daemons delete their PID file while they are
# still shutting down, so after SIGTERM we watch the process, not the file.
# A zombie counts as gone (in a container PID 1 may be slow to reap re-parented daemons), but
# only a whole-process zombie: a multi-threaded daemon (mariadbd) whose main thread has exited
# also shows state Z while its other threads still run and hold its port.
alive() {
    local stat tasks
    [[ $(cat "/proc/$1/comm" 2>/dev/null) == "$2" ]] || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }              # fields after "(comm) "; the first is the state letter
    [[ ${stat:0:1} != Z ]] && return 0
    tasks=$(find "/proc/$1/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    ((tasks > 1))
}

running() { [[ -n $(daemon_pid "$1") ]]; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Last lines of a daemon's log (and of its captured stderr: a daemon that dies while parsing
# its config complains there, before it opens its log), for error messages.
show_log_tail() {
    local f shown=0
    for f in "$(logfile_of "$1")" "$LOGDIR/$1.stderr"; do
        [[ -s $f ]] || continue
        echo "----- last lines of $f -----" >&2
        tail -n 25 "$f" >&2
        echo "-----" >&2
        shown=1
    done
    ((shown)) || echo "(no log at $(logfile_of "$1"))" >&2
}

# wait_for NAME DESCRIPTION COMMAND...: poll COMMAND until it succeeds. Fails fast, with the
# log tail, when the daemon died; fails with the log tail after UP_TIMEOUT seconds.
wait_for() {
    local name=$1 what=$2
    shift 2
    local deadline=$((SECONDS + UP_TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        if ! running "$name"; then
            log "$name is not running (waiting for: $what)"
            show_log_tail "$name"
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "timed out after ${UP_TIMEOUT}s waiting for: $what"
            show_log_tail "$name"
            exit 1
        fi
        sleep 0.2
    done
}

# ---------------------------------------------------------------------------------------------
# Install
# ---------------------------------------------------------------------------------------------
missing_packages() {
    local p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
            echo "$p"
    done
}

install_packages() {
    local missing
    missing=$(missing_packages)
    [[ -z $missing ]] && return 0
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    log "installing:" $missing
    command -v apt-get >/dev/null || die "apt-get not found: this script targets Debian 12"
    export DEBIAN_FRONTEND=noninteractive
    # Package post-install scripts would try to start munge/mariadb/slurm services with the
    # system's default paths. We start our own, so forbid that for the duration of the install
    # (the usual container policy-rc.d); an existing policy-rc.d is left as it is.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    local ilog=$LOGDIR/install.log ok=0
    # Another install (a second suite's `up`) holds dpkg's lock: wait for it, do not fail.
    local apt_get=(apt-get -o DPkg::Lock::Timeout=300)
    # apt-get update only when needed: when the package lists do not know a package yet, or
    # when the install fails (stale lists point at files the mirror no longer has).
    # shellcheck disable=SC2086
    if ! apt-cache show --no-all-versions $missing >/dev/null 2>&1; then
        "${apt_get[@]}" update >>"$ilog" 2>&1 || true
    fi
    # shellcheck disable=SC2086
    if "${apt_get[@]}" install -y --no-install-recommends $missing >>"$ilog" 2>&1; then
        ok=1
    else
        log "install failed; running apt-get update and retrying once"
        "${apt_get[@]}" update >>"$ilog" 2>&1 || true
        # shellcheck disable=SC2086
        "${apt_get[@]}" install -y --no-install-recommends $missing >>"$ilog" 2>&1 && ok=1
    fi
    ((made_policy)) && rm -f "$policy"
    if ((!ok)); then
        tail -n 25 "$ilog" >&2
        die "apt-get install failed (full log: $ilog)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
make_dirs() {
    mkdir -p "$ETC" "$LOGDIR" "$RUNDIR" "$DIR/state/slurmctld" "$DIR/state/slurmd" "$DEVDIR"
    chmod 755 "$DIR"
    # The daemons' temp files (mariadbd's above all, which runs as mysql and cannot write to a
    # caller's private TMPDIR) stay in the state dir too.
    mkdir -p "$TMPDIR_OWN"
    chmod 1777 "$TMPDIR_OWN"
    export TMPDIR=$TMPDIR_OWN
    # munged refuses directories that others can write to, and runs as munge: give it its own.
    mkdir -p "$MUNGEDIR"
    chown munge:munge "$MUNGEDIR"
    chmod 755 "$MUNGEDIR"   # munged: "execute permissions for all required" on the socket dir
}

# Our own munge key (not /etc/munge/munge.key), kept across restarts.
ensure_munge_key() {
    local key=$MUNGEDIR/munge.key
    [[ -s $key ]] && return 0
    if command -v mungekey >/dev/null; then
        runuser -u munge -- mungekey --create --keyfile="$key"
    else
        dd if=/dev/urandom of="$key" bs=1 count=1024 status=none
        chown munge:munge "$key"
    fi
    chmod 600 "$key"
}

# Unix socket paths are short: sun_path holds at most 107 bytes, so a deep --dir fails there.
check_socket_paths() {
    local s
    for s in "$MUNGE_SOCKET" "$DB_SOCKET"; do
        ((${#s} < SOCKET_PATH_MAX)) ||
            die "--dir is too long: socket path $s exceeds the 107-byte limit"
    done
}

# A new state dir (mktemp: a name no other cluster has): in TMPDIR when the munge and mysql
# users can reach it and the socket paths fit, else in /tmp, and then say why.
new_state_dir() {
    local base=${TMPDIR:-/tmp} dir="" why=""
    base=${base%/}
    if [[ -n $base && $base != /tmp ]]; then
        if ((${#base} + ${#LONGEST_SOCKET} + 17 >= SOCKET_PATH_MAX)); then
            why="is too long for the cluster's unix socket paths (107 bytes)"
        elif [[ ! -d $base ]]; then
            why="is not a directory"
        elif ! reachable_by_others "$base"; then
            why="is not reachable by the munge and mysql users (a dir on its path lacks o+x)"
        elif ! dir=$(mktemp -d "$base/tvo-slurm.XXXXXX" 2>/dev/null); then
            why="is not writable"
        fi
        if [[ -z $why ]]; then
            echo "$dir"
            return 0
        fi
        log "TMPDIR=$base $why: the state dir goes in /tmp instead"
    fi
    mktemp -d /tmp/tvo-slurm.XXXXXX || die "cannot create a state dir in /tmp"
}

# Can users other than root enter this dir (every dir on its path has o+x)?
reachable_by_others() {
    local path=$1 mode
    while :; do
        mode=$(stat -c %A "$path" 2>/dev/null) || return 1
        [[ ${mode:9:1} == [xt] ]] || return 1
        [[ $path == / ]] && return 0
        path=$(dirname "$path")
    done
}

# The state dir whose config SLURM_CONF names, if that config is one this script wrote.
conf_dir() {
    local conf=${SLURM_CONF:-}
    [[ $conf == */etc/slurm.conf && -f $conf ]] && grep -qF "$MARKER" "$conf" || return 0
    echo "${conf%/etc/slurm.conf}"
}

# Ports for a cluster coming up from stopped: each from its environment variable, else a
# random free one. (Two clusters choosing at once: a clash shows as "port in use" at start.)
choose_ports() {
    local var env_var port taken=" "
    for var in "${PORT_NAMES[@]}"; do
        env_var=${PORT_ENV[$var]}
        port=${!env_var:-}
        if [[ -n $port ]]; then
            [[ $port =~ ^[1-9][0-9]{0,4}$ ]] && ((port <= 65535)) ||
                die "$env_var must be a TCP port number"
        else
            local tries=0
            until [[ -n $port && $taken != *" $port "* ]] && ! port_in_use "$port"; do
                ((++tries <= 200)) || die "no free TCP port found in $PORT_LOW-$((PORT_LOW + PORT_SPAN - 1))"
                port=$((PORT_LOW + RANDOM % PORT_SPAN))
            done
        fi
        taken+="$port "
        printf -v "$var" '%s' "$port"
    done
}

# The ports of a cluster that is (partly) running, as its `up` wrote them.
load_ports() {
    local var
    for var in "${PORT_NAMES[@]}"; do
        printf -v "$var" '%s' "$(sed -n "s/^$var=//p" "$PARAMS" 2>/dev/null)"
        [[ -n ${!var} ]] || die "$PARAMS lacks $var; stop the cluster (down) and start it again"
    done
}

# Read the hardware line from `slurmd -C` (NodeName, RealMemory); sets NODE and NODE_LINE,
# claiming $CPUS CPUs. (Not a $(...) function: it must set globals.)
detect_node() {
    local hw realmem mem
    hw=$(slurmd -C 2>/dev/null | head -n 1 || true)
    NODE=$(sed -n 's/.*NodeName=\([^ ]*\).*/\1/p' <<<"$hw")
    realmem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
    [[ -n $NODE ]] || NODE=$(hostname -s)
    [[ -n $realmem ]] || realmem=$(($(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024))
    # DefMemPerCPU=1000: the node must offer at least 1000 MB per claimed CPU or the extra
    # CPUs could never all be used. config_overrides lets it claim more than it has.
    mem=$realmem
    ((mem >= CPUS * 1000)) || mem=$((CPUS * 1000))
    NODE_LINE="NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS Boards=1 SocketsPerBoard=1"
    NODE_LINE+=" CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$mem State=UNKNOWN"
    if ((GPUS > 0)); then NODE_LINE+=" Gres=gpu:$GPUS"; fi
}

write_slurm_conf() {
    detect_node
    cat >"$CONF.tmp" <<EOF
$MARKER on $(date -u +%FT%TZ); regenerated by every 'up'.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
# Our own (empty) SPANK plugin list, not /etc/slurm/plugstack.conf.
PlugStackConfig=$ETC/plugstack.conf
AuthType=auth/munge
CredType=cred/munge
# cred_expire=10: a requeued job would otherwise wait 120 s before it may run again.
# socket=: our own munged, so a system munge (if any) is never involved.
AuthInfo=cred_expire=10,socket=$MUNGE_SOCKET
StateSaveLocation=$DIR/state/slurmctld
SlurmdSpoolDir=$DIR/state/slurmd
SlurmctldPidFile=$RUNDIR/slurmctld.daemon.pid
SlurmdPidFile=$RUNDIR/slurmd.daemon.pid
SlurmctldLogFile=$(logfile_of slurmctld)
SlurmdLogFile=$(logfile_of slurmd)
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in a container.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
# Share the node between jobs; without DefMemPerCPU one job takes all the memory = the node.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
# Let the node claim more CPUs/memory than the hardware has (several test jobs at once).
SlurmdParameters=config_overrides
# Submit-to-start in about 1 s instead of several.
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000,bf_interval=1,sched_interval=2
MailProg=/bin/true
MaxArraySize=$MAX_ARRAY_SIZE
JobRequeue=1
# Short grace between SIGTERM and SIGKILL when a job ends/is cancelled/preempted.
KillWait=5
# A node that comes back after a restart is usable again without 'scontrol update'.
ReturnToService=2
InactiveLimit=0
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
Waittime=0
# Accounting through slurmdbd, so sacct works (submitit needs it to see a job that died).
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# For the slurmdbd connection the munge socket comes from here, not from AuthInfo (man slurm.conf).
AccountingStoragePass=$MUNGE_SOCKET
# Record GPU allocations too (sacct -o AllocTRES shows gres/gpu=N).
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
GresTypes=gpu
$NODE_LINE
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    chmod 644 "$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
    echo "$MARKER" >"$ETC/plugstack.conf"

    # gres.conf: fake GPUs are /dev/null clones (char 1:3); slurmd only needs character
    # devices to exist, jobs just get CUDA_VISIBLE_DEVICES.
    {
        echo "$MARKER"
        echo "AutoDetect=off"
        if ((GPUS > 0)); then
            make_fake_gpus
            echo "NodeName=$NODE Name=gpu File=$DEVDIR/nvidia[0-$((GPUS - 1))]"
        fi
    } >"$ETC/gres.conf"
    chmod 644 "$ETC/gres.conf"
    {
        printf 'GPUS=%s\nCPUS=%s\nMAX_ARRAY_SIZE=%s\n' "$GPUS" "$CPUS" "$MAX_ARRAY_SIZE"
        local var
        for var in "${PORT_NAMES[@]}"; do printf '%s=%s\n' "$var" "${!var}"; done
    } >"$PARAMS"
}

make_fake_gpus() {
    local i
    rm -f "$DEVDIR"/nvidia*
    for ((i = 0; i < GPUS; i++)); do
        mknod -m 666 "$DEVDIR/nvidia$i" c 1 3 ||
            die "mknod $DEVDIR/nvidia$i failed (need root and a filesystem that allows devices)"
    done
}

db_password() {
    local f=$ETC/db.pass
    if [[ ! -s $f ]]; then
        (umask 077 && od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$f")
    fi
    cat "$f"
}

write_slurmdbd_conf() {
    local pass
    pass=$(db_password)
    (
        umask 077
        cat >"$ETC/slurmdbd.conf" <<EOF
$MARKER
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUNDIR/slurmdbd.daemon.pid
LogFile=$(logfile_of slurmdbd)
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$pass
StorageLoc=slurm_acct_db
EOF
    )
    chmod 600 "$ETC/slurmdbd.conf"
}

# ---------------------------------------------------------------------------------------------
# Daemons
# ---------------------------------------------------------------------------------------------
# launch NAME CMD...: run a daemon in the FOREGROUND, detached: setsid gives it its own session
# (a caller killing its process group, or closing a terminal, does not take it down; without job
# control the background child is no group leader, so setsid execs in place and $! is the
# daemon); no inherited stdio (else `$(dev-cluster.sh up)` would wait forever on the pipe).
# stderr is kept: a daemon that dies while parsing its config says why there.
launch() {
    local name=$1 pid i comm
    shift
    setsid "$@" </dev/null >>"$LOGDIR/$name.stderr" 2>&1 &
    pid=$!
    echo "$pid" >"$(pidfile_of "$name")"
    STARTED+=("$name")
    # Until the exec chain (bash -> setsid [-> setpriv] -> daemon) is done, /proc/PID/comm is
    # not the daemon's name and `running` would call it dead: wait for the name (or death).
    for ((i = 0; i < 100; i++)); do
        comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 0   # died: wait_for reports it
        [[ $comm == "$name" ]] && return 0
        sleep 0.05
    done
    die "launched $name as pid $pid, but that process is '$comm' after 5 s"
}

# Refuse to start next to a foreign daemon holding our port: the error would otherwise be a
# confusing "address in use" deep in a log.
check_port_free() {
    local name=$1 port=$2
    if port_in_use "$port"; then
        die "port $port (for $name) is already in use by a process this script did not start"
    fi
}

munge_works() { munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET"; }

start_munged() {
    running munged && return 0
    ensure_munge_key
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    log "starting munged"
    # As the munge user, as the package would. setpriv execs (runuser would fork and stay the
    # parent, so $! would not be munged).
    launch munged setpriv --reuid=munge --regid=munge --init-groups munged --foreground \
        --socket="$MUNGE_SOCKET" --key-file="$MUNGEDIR/munge.key" \
        --pid-file="$MUNGEDIR/munged.daemon.pid" --log-file="$(logfile_of munged)" \
        --seed-file="$MUNGEDIR/munged.seed"
    wait_for munged "munge credential round trip" munge_works
}

db_ping() { mariadb-admin --no-defaults --socket="$DB_SOCKET" -uroot ping; }

start_mariadbd() {
    running mariadbd && return 0
    check_port_free mariadbd "$DB_PORT"
    if [[ ! -d $DBDIR/mysql ]]; then
        log "initialising MariaDB datadir $DBDIR"
        mkdir -p "$DBDIR"
        chown mysql:mysql "$DBDIR"
        chmod 750 "$DBDIR"
        mariadb-install-db --no-defaults --datadir="$DBDIR" --user=mysql --tmpdir="$TMPDIR_OWN" \
            --auth-root-authentication-method=socket --skip-test-db \
            >>"$LOGDIR/mariadb-install-db.log" 2>&1 ||
            { tail -n 25 "$LOGDIR/mariadb-install-db.log" >&2; die "mariadb-install-db failed"; }
    fi
    log "starting mariadbd on 127.0.0.1:$DB_PORT"
    # --no-defaults: ignore /etc/mysql (a system MariaDB's config); loopback only; own socket.
    launch mariadbd mariadbd --no-defaults --user=mysql --datadir="$DBDIR" \
        --socket="$DB_SOCKET" --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --tmpdir="$TMPDIR_OWN" \
        --pid-file="$DBDIR/mariadbd.daemon.pid" --log-error="$(logfile_of mariadbd)" \
        --innodb-buffer-pool-size=512M --innodb-lock-wait-timeout=900 --skip-log-bin
    wait_for mariadbd "mariadb-admin ping" db_ping
    local pass
    pass=$(db_password)
    mariadb --no-defaults --socket="$DB_SOCKET" -uroot <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
}

sacctmgr_ok() { timeout 10 sacctmgr -n -P show cluster format=cluster; }

start_slurmdbd() {
    running slurmdbd && return 0
    check_port_free slurmdbd "$DBD_PORT"
    log "starting slurmdbd"
    SLURM_CONF=$CONF launch slurmdbd slurmdbd -D
    wait_for slurmdbd "sacctmgr reaching slurmdbd" sacctmgr_ok
}

register_cluster() {
    if ! sacctmgr -n -P show cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
        log "registering cluster $CLUSTER_NAME in the accounting DB"
        sacctmgr -i add cluster "$CLUSTER_NAME" >&2
    fi
}

ctld_up() { scontrol ping | grep -q 'is UP'; }

start_slurmctld() {
    running slurmctld && return 0
    check_port_free slurmctld "$CTLD_PORT"
    log "starting slurmctld"
    SLURM_CONF=$CONF launch slurmctld slurmctld -D
    wait_for slurmctld "scontrol ping" ctld_up
}

start_slurmd() {
    running slurmd && return 0
    check_port_free slurmd "$SLURMD_PORT"
    log "starting slurmd"
    SLURM_CONF=$CONF launch slurmd slurmd -D
}

node_state() { sinfo -h -o %T 2>/dev/null | head -n 1; }

node_usable() {
    case $(node_state) in
        idle | mixed | allocated | completing) return 0 ;;
        *) return 1 ;;
    esac
}

wait_node_idle() {
    local deadline=$((SECONDS + UP_TIMEOUT)) resumed=0 state
    until node_usable; do
        state=$(node_state)
        # A node left drained/down by an earlier run stays so; this is a dev cluster: resume it.
        if ((!resumed)) && [[ $state == drain* || $state == down ]]; then
            log "node is '$state' from an earlier run; resuming it"
            scontrol update NodeName="$NODE" State=RESUME >&2 || true
            resumed=1
        fi
        if ! running slurmd; then
            log "slurmd is not running"
            show_log_tail slurmd
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "timed out after ${UP_TIMEOUT}s waiting for the node to be idle (state: '$state')"
            sinfo -R >&2 || true
            show_log_tail slurmd
            show_log_tail slurmctld
            exit 1
        fi
        sleep 0.2
    done
}

any_running() {
    local d
    for d in "${DAEMONS[@]}"; do running "$d" && return 0; done
    return 1
}

all_running() {
    local d
    for d in "${DAEMONS[@]}"; do running "$d" || return 1; done
    return 0
}

# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
cmd_up() {
    [[ $(id -u) == 0 ]] || die "run as root (it installs packages and starts system daemons)"
    [[ $MAX_ARRAY_SIZE =~ ^[1-9][0-9]*$ ]] || die "TVO_SLURM_MAX_ARRAY_SIZE must be a positive integer"
    mkdir -p "$DIR/log"
    export SLURM_CONF=$CONF   # the script's own client calls never depend on /etc
    trap stop_started_on_failure EXIT
    install_packages
    [[ -n $CPUS ]] || { CPUS=$(nproc); ((CPUS >= 8)) || CPUS=8; }
    check_socket_paths
    make_dirs

    if any_running; then
        # Already (partly) up: keep the running config; refuse explicit options it lacks.
        local want var val
        for var in GPUS CPUS MAX_ARRAY_SIZE; do
            want=${EXPLICIT[$var]:-}
            [[ -n $want ]] || continue
            val=$(sed -n "s/^$var=//p" "$PARAMS" 2>/dev/null)
            if [[ $val != "$want" ]]; then
                echo "[dev-cluster] ERROR: cluster in $DIR is running with $var=$val, asked for $want;" \
                    "run \`$0 down\` first" >&2
                exit 2
            fi
        done
        NODE=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$CONF" | head -n 1)
        load_ports
        all_running || log "some daemons are down; starting them"
    else
        choose_ports
        write_slurm_conf
        write_slurmdbd_conf
    fi

    start_munged
    start_mariadbd
    start_slurmdbd
    register_cluster
    start_slurmctld
    start_slurmd
    wait_node_idle
    trap - EXIT
    log "up in ${SECONDS}s: node $NODE, $(node_state); slurmctld on 127.0.0.1:$CTLD_PORT (state dir $DIR)"
    log "export SLURM_CONF=$CONF   # so that sbatch, squeue, ... and tvo find this cluster"
    echo "$PARTITION"
}

# EXIT trap of `up`: when it fails, stop what this `up` started, newest first.
stop_started_on_failure() {
    local code=$? i
    ((code != 0)) || return 0
    if ((${#STARTED[@]})); then
        log "up failed: stopping the daemons it started (${STARTED[*]})"
        for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
            stop_daemon "${STARTED[i]}" || true
        done
    fi
    exit "$code"
}

# Ask slurmctld to cancel every job, and wait briefly, so that no slurmstepd or job process
# (children of our slurmd, but detached from it) outlives the cluster.
cancel_jobs() {
    running slurmctld || return 0
    local ids
    ids=$(timeout 10 squeue -h -o %i 2>/dev/null | sort -u | tr '\n' ' ' || true)
    [[ -n ${ids// /} ]] || return 0
    log "cancelling jobs: $ids"
    # shellcheck disable=SC2086
    timeout 10 scancel $ids >&2 || true
    local deadline=$((SECONDS + 15))
    while [[ -n $(timeout 10 squeue -h -o %i 2>/dev/null || true) ]] && ((SECONDS < deadline)); do
        sleep 0.5
    done
}

stop_daemon() {
    local name=$1 pid i
    pid=$(daemon_pid "$name")
    if [[ -z $pid ]]; then
        rm -f "$(pidfile_of "$name")"   # stale or absent
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do          # up to 20 s (mariadbd flushes InnoDB)
        alive "$pid" "$name" || break
        sleep 0.2
    done
    if alive "$pid" "$name"; then
        log "$name did not stop after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 25; i++)); do alive "$pid" "$name" || break; sleep 0.2; done
    fi
    rm -f "$(pidfile_of "$name")"
}

cmd_down() {
    export SLURM_CONF=$CONF
    if [[ ! -d $DIR ]]; then
        log "no state dir $DIR: nothing to stop"
        return 0
    fi
    cancel_jobs
    local i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        stop_daemon "${DAEMONS[i]}"
    done
    local left
    left=$(pgrep -x slurmstepd | tr '\n' ' ' || true)
    [[ -z $left ]] || log "note: slurmstepd processes still exist ($left); not ours to kill by PID file"
    if ((PURGE)); then
        log "removing $DIR"
        rm -rf -- "$DIR"
    fi
    log "down"
}

cmd_status() {
    export SLURM_CONF=$CONF
    local d pid up=1
    for d in "${DAEMONS[@]}"; do
        pid=$(daemon_pid "$d")
        if [[ -n $pid ]]; then
            printf '%-10s running (pid %s)\n' "$d" "$pid"
        else
            printf '%-10s not running\n' "$d"
            up=0
        fi
    done
    if running slurmctld && command -v sinfo >/dev/null; then
        timeout 10 sinfo || up=0
        node_usable || up=0
    else
        up=0
    fi
    ((up)) && echo "cluster is up (state dir $DIR)" || echo "cluster is down (state dir $DIR)"
    ((up))
}

main() {
    local cmd=${1:-}
    [[ -n $cmd ]] || { short_usage; exit 2; }
    shift
    DIR=${TVO_SLURM_DIR:-}
    GPUS=0 CPUS='' PURGE=0
    STARTED=()
    declare -gA EXPLICIT=()
    [[ -n ${TVO_SLURM_MAX_ARRAY_SIZE:-} ]] && EXPLICIT[MAX_ARRAY_SIZE]=$MAX_ARRAY_SIZE
    while (($#)); do
        case $1 in
            --gpus) GPUS=${2:?--gpus needs a number}; EXPLICIT[GPUS]=$GPUS; shift 2 ;;
            --cpus) CPUS=${2:?--cpus needs a number}; EXPLICIT[CPUS]=$CPUS; shift 2 ;;
            --dir) DIR=${2:?--dir needs a path}; shift 2 ;;
            --purge) PURGE=1; shift ;;
            -h | --help) usage; exit 0 ;;
            *) short_usage; die "unknown argument: $1" ;;
        esac
    done
    if [[ $cmd == newdir ]]; then
        new_state_dir
        exit 0
    fi
    if [[ -z $DIR ]]; then
        DIR=$(conf_dir)
        if [[ -z $DIR && $cmd == up ]]; then
            DIR=$(new_state_dir)
        elif [[ -z $DIR ]]; then
            log "no dev cluster found (no --dir, no TVO_SLURM_DIR, and SLURM_CONF names no" \
                "config of this script)"
            [[ $cmd == status ]] && exit 1
            exit 0
        fi
    fi
    [[ $GPUS =~ ^[0-9]+$ ]] || die "--gpus must be a non-negative integer"
    [[ -z $CPUS || $CPUS =~ ^[1-9][0-9]*$ ]] || die "--cpus must be a positive integer"
    DIR=$(realpath -m -- "$DIR")
    [[ $DIR != / ]] || die "refusing --dir /"
    set_paths
    case $cmd in
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        -h | --help | help) usage ;;
        *) short_usage; die "unknown command: $cmd" ;;
    esac
}

main "$@"
