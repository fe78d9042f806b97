#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine, with accounting (slurmdbd + MariaDB)
# so that `sacct` works. Debian/Ubuntu, as root. Idempotent: running it again on a running
# cluster only checks that it answers. Stop it with tools/slurm-down.sh.
#
# The cluster is named "pipeline", has one partition "main" holding this machine (its real
# CPU count and memory), and one account "pipeline" for root.
set -euo pipefail

CLUSTER=pipeline
PARTITION=main
ACCOUNT=pipeline
LOG_DIR=/var/log/slurm
STATE_DIR=/var/lib/slurm

say() { echo "slurm-up: $*" >&2; }
die() { echo "error: slurm-up: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"

packages=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "packages missing (${missing[*]}) and no apt-get to install them"
  say "installing ${missing[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq $((seconds * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "$what did not come up within ${seconds}s; see $LOG_DIR/"
}

host=$(hostname -s)
cpus=$(nproc)
# Leave the operating system 1 GiB; slurmd refuses a node that claims more than it has.
memory=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
mkdir -p /etc/slurm "$LOG_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd"

cat > /etc/slurm/slurm.conf.new <<CONF
# Written by tools/slurm-up.sh: a single-node test cluster.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# Start jobs as soon as they arrive, and keep finished ones visible to squeue for a while.
SchedulerParameters=batch_sched_delay=0
MinJobAge=600
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
# Keep the comment the Snakemake plugin gives each job (rule and wildcards) for sacct.
AccountingStoreFlags=job_comment
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF

cat > /etc/slurm/slurmdbd.conf.new <<CONF
# Written by tools/slurm-up.sh.
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost=localhost
SlurmUser=root
LogFile=$LOG_DIR/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF

# A running cluster with the same configuration is left alone.
if cmp -s /etc/slurm/slurm.conf.new /etc/slurm/slurm.conf && cmp -s /etc/slurm/slurmdbd.conf.new /etc/slurm/slurmdbd.conf \
  && timeout 5 sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && timeout 5 sacct -n -X -S now >/dev/null 2>&1; then
  rm -f /etc/slurm/slurm.conf.new /etc/slurm/slurmdbd.conf.new
  say "already running"
  exit 0
fi
mv /etc/slurm/slurm.conf.new /etc/slurm/slurm.conf
mv /etc/slurm/slurmdbd.conf.new /etc/slurm/slurmdbd.conf
chmod 600 /etc/slurm/slurmdbd.conf

# munge authenticates every message between the daemons and the clients.
[ -s /etc/munge/munge.key ] || { mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; }
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged --force >/dev/null 2>&1 || /usr/sbin/munged --force
  wait_for 10 munged bash -c 'munge -n | unmunge'
fi

if ! mysqladmin ping >/dev/null 2>&1; then
  say "starting MariaDB"
  service mariadb start >/dev/null 2>&1 || die "MariaDB did not start"
  wait_for 30 MariaDB mysqladmin ping
fi
mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

# Restart the SLURM daemons so they read the configuration written above.
for daemon in slurmd slurmctld slurmdbd; do pkill -x "$daemon" 2>/dev/null || true; done
for daemon in slurmd slurmctld slurmdbd; do
  for _ in $(seq 50); do pgrep -x "$daemon" >/dev/null || break; sleep 0.2; done
done

say "starting slurmdbd, slurmctld, slurmd"
/usr/sbin/slurmdbd
wait_for 30 slurmdbd sacctmgr -n show cluster
sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
/usr/sbin/slurmctld
wait_for 30 slurmctld scontrol ping
sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="workflow tests" >/dev/null 2>&1 || true
sacctmgr -i add user root Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null 2>&1 || true
/usr/sbin/slurmd
wait_for 30 "node $host" bash -c "sinfo -h -n $host -o %T | grep -qE '^(idle|mixed|allocated)'"
scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
wait_for 30 "accounting (sacct)" sacct -n -X -S now
say "cluster '$CLUSTER' up: partition '$PARTITION' on $host ($cpus CPUs, $memory MB), account '$ACCOUNT'"
