#!/usr/bin/env bash
# Start a single-node Slurm cluster on localhost (Debian bookworm, as root, no systemd) for the
# cluster tests (tests/test_slurm_*.py, marked `slurm`). Stop it with tests/slurm/stop.sh.
# Measured on a 2-core VM: ~17 s from a clean machine (apt install + start), ~2 s when installed.
#   SLURM_ACCOUNTING=1 (default) -> also MariaDB + slurmdbd so `sacct` works
#                                    (submitit needs sacct for job.state and to notice
#                                    jobs that died without a result, e.g. scancel)
#   SLURM_ACCOUNTING=0           -> no accounting (sacct fails; submitit warns, state UNKNOWN)
#   SLURM_LOCAL_CPUS=N           -> advertise N CPUs (default nproc; may exceed nproc)
#   SLURM_LOCAL_STATE=DIR        -> state/log folder (default /tmp/slurm-local)
#   SLURM_MAX_ARRAY_SIZE=N       -> MaxArraySize (default 4: array indices 0-3, so a sweep of 5+ runs
#                                    is split into several arrays, as on a cluster with the usual 1001)
# PIDs of started daemons go to $SLURM_LOCAL_STATE/*.pid; stop.sh kills exactly those.
# Already up (slurmctld + slurmd recorded and alive, sinfo answers): prints sinfo, exits 0.
set -euo pipefail
ACCT=${SLURM_ACCOUNTING:-1}
STATE=${SLURM_LOCAL_STATE:-/tmp/slurm-local}
export DEBIAN_FRONTEND=noninteractive

PKGS="slurmctld slurmd slurm-client munge"      # (slurm-wlm = same + many unneeded plugins)
[ "$ACCT" = 1 ] && PKGS="$PKGS slurmdbd mariadb-server"
if ! dpkg -s $PKGS >/dev/null 2>&1; then
  apt-get install -y -q --no-install-recommends $PKGS >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $PKGS >/dev/null; }
fi

NODE=$(hostname -s)
CPUS=${SLURM_LOCAL_CPUS:-$(nproc)}
MEM=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 512 ))
mkdir -p "$STATE"/{ctld,d,logs}
running() { [ -s "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }
if running slurmctld && running slurmd && sinfo >/dev/null 2>&1; then
  if [ "$ACCT" != 1 ] || sacct -n >/dev/null 2>&1; then
    echo "local Slurm already running (state in $STATE)"; sinfo; exit 0
  fi
  echo "local Slurm is up but its accounting (sacct) is not: restarting it"
  bash "$(dirname "$0")/stop.sh"
fi

# ---------- munge ----------
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged --force        # daemonizes itself
  for i in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$STATE/munged.pid"
fi
munge -n | unmunge >/dev/null

# ---------- accounting: mariadb + slurmdbd ----------
if [ "$ACCT" = 1 ]; then
  mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
  if ! mariadb -e 'select 1' >/dev/null 2>&1; then
    nohup /usr/sbin/mariadbd --user=mysql --skip-networking \
      --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid \
      >"$STATE/logs/mariadb.log" 2>&1 &
    echo $! > "$STATE/mariadbd.pid"
    for i in $(seq 150); do mariadb -e 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  # fresh slurmctld state => job ids restart at 1: drop old accounting records, or
  # sacct (and so submitit) would mix up old and new jobs with the same id
  if [ ! -e "$STATE/ctld/job_state" ] && ! running slurmdbd; then
    mariadb -e "DROP DATABASE IF EXISTS slurm_acct_db;"
  fi
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  cat > /etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
DebugLevel=info
LogFile=${STATE}/logs/slurmdbd.log
PidFile=${STATE}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
EOF
  chmod 600 /etc/slurm/slurmdbd.conf
  running slurmdbd || /usr/sbin/slurmdbd              # daemonizes, writes PidFile
  for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/6819) 2>/dev/null && break; sleep 0.1; done
  ACCT_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
  ACCT_LINES="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

# ---------- slurm.conf ----------
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=localcluster
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# requeued jobs wait cred_expire+1 s before they can start again (default 120 s)
AuthInfo=cred_expire=10
CryptoType=crypto/munge
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default, every job is given ALL node memory and jobs run one at a time
DefMemPerCPU=1024
# allow CPUs/topology in NodeName to differ from the hardware (no drain)
SlurmdParameters=config_overrides
MailProg=/bin/true
ReturnToService=2
SlurmctldPidFile=${STATE}/slurmctld.pid
SlurmdPidFile=${STATE}/slurmd.pid
SlurmdSpoolDir=${STATE}/d
StateSaveLocation=${STATE}/ctld
SlurmctldLogFile=${STATE}/logs/slurmctld.log
SlurmdLogFile=${STATE}/logs/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldPort=6817
SlurmdPort=6818
${ACCT_LINES}
JobCompType=jobcomp/none
SchedulerType=sched/backfill
MinJobAge=300
MaxArraySize=${SLURM_MAX_ARRAY_SIZE:-4}
KillWait=5
InactiveLimit=0
Waittime=0
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} Sockets=1 CoresPerSocket=${CPUS} ThreadsPerCore=1 RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF

# ---------- slurm daemons (daemonize themselves, write PidFiles) ----------
if running slurmctld || running slurmd; then
  echo "slurmctld/slurmd half running: run tests/slurm/stop.sh first" >&2; exit 1
fi
/usr/sbin/slurmctld
/usr/sbin/slurmd
for i in $(seq 150); do
  sinfo -h -o '%T' 2>/dev/null | grep -qx idle && break
  sleep 0.2
done
sinfo -h -o '%T' 2>/dev/null | grep -qx idle \
  || { echo "node did not become idle; see $STATE/logs/slurmd.log" >&2; sinfo >&2; exit 1; }
sinfo
