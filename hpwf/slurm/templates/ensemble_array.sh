#!/bin/bash
{{header}}
# Written by `hpwf submit --ensemble-array` ({{source}}).
# One ensemble member per array task: task I trains member I into the run's member study
# (RUN_DIR/ensemble) with `hpwf ensemble-member`; a member already trained is not trained again.
# A task whose member fails requeues itself (at most max_requeues times) and trains it again.
# Re-run one index by hand with: sbatch --array=I THIS_SCRIPT
# Every value below is quoted for the shell; only the site's `setup` lines are code.
{{umask}}
{{environment}}
set -u  # after the site's environment: module and conda scripts often read unset variables
hpwf_python={{python}}
hpwf_max_requeues={{max_requeues}}
{{launch}}
cd {{workdir}} || exit 1
hpwf_member=${SLURM_ARRAY_TASK_ID:?not an array task: submit this script with sbatch --array=...}

echo "[hpwf job] $(date '+%F %T') start ${SLURM_RESTART_COUNT:-0}: member $hpwf_member"
"${hpwf_launch[@]}" "$hpwf_python" -P -m hpwf ensemble-member {{member_args}} --member "$hpwf_member"
hpwf_rc=$?
echo "[hpwf job] $(date '+%F %T') member $hpwf_member exited with code $hpwf_rc"

# 1: the member's training failed (2 is bad input: running it again would not help).
if [ "$hpwf_rc" -eq 1 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
    if [ "${SLURM_RESTART_COUNT:-0}" -lt "$hpwf_max_requeues" ]; then
        echo "[hpwf job] requeueing task $hpwf_member (job $SLURM_JOB_ID): the member trains again"
        scontrol requeue "$SLURM_JOB_ID"
    else
        echo "[hpwf job] not requeueing: max_requeues=$hpwf_max_requeues reached; sbatch --array=$hpwf_member "{{script}}" runs it again"
    fi
fi
exit "$hpwf_rc"
