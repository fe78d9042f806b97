#!/usr/bin/env bash
# Stop the cluster started by tools/slurm-up.sh. Idempotent: stopping a stopped cluster is fine.
set -u
for daemon in slurmd slurmctld slurmdbd; do pkill -x "$daemon" 2>/dev/null; done
for daemon in slurmd slurmctld slurmdbd; do
  for _ in $(seq 50); do pgrep -x "$daemon" >/dev/null || break; sleep 0.2; done
  pkill -9 -x "$daemon" 2>/dev/null
done
service mariadb stop >/dev/null 2>&1
pkill -x munged 2>/dev/null
echo "slurm-down: stopped" >&2
exit 0
