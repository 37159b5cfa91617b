#!/usr/bin/env bash
# Stop the local Slurm cluster started by tests/slurm/setup.sh: kills only the daemons whose
# PIDs it recorded (never by name), TERM first, KILL after 10 s.
STATE=${SLURM_LOCAL_STATE:-/tmp/slurm-local}
for d in slurmd slurmctld slurmdbd mariadbd munged; do
  f=$STATE/$d.pid
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$f"
done
