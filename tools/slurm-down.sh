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
# With slurm.conf in place but no controller, `scontrol show config` waits 10 s for an
# answer, and Snakemake's SLURM plugin runs it at import time: every `snakemake` call
# on this machine would then cost 10 s more. Without slurm.conf it fails at once.
# tools/slurm-up.sh writes the file again.
[ -f /etc/slurm/slurm.conf ] && mv /etc/slurm/slurm.conf /etc/slurm/slurm.conf.stopped
echo "slurm-down: stopped" >&2
exit 0
