#!/bin/bash
#SBATCH --job-name=hpwf-toy
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --cpus-per-task=4
#SBATCH --mem=64G
#SBATCH --time=00:30:00
#SBATCH --partition="gpu; rm -rf ~"
#SBATCH --account="$(touch PWNED_ACCOUNT)"
#SBATCH --qos="`touch PWNED_QOS` \"quoted\" 'single' #hash"
#SBATCH --constraint="a&b|c"
#SBATCH --output=/scratch/user/runs/toy/slurm-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --comment="$(touch PWNED_SBATCH)"
#SBATCH --exclusive
# Written by `hpwf submit` (site config tests/slurm/hostile.yaml).
# Runs the workflow with `hpwf run --backend mpi` over every rank of the allocation: rank 0
# coordinates, the others run trials. On USR1 (Slurm's walltime warning) or TERM (preemption,
# scancel) the run stops handing out trials and records the running ones. After USR1 the job
# requeues itself (at most max_requeues times); a requeued job resumes the run from its storage.
# Every value below is quoted for the shell; only the site's `setup` lines are code. No secret
# is written here: the site config's env values are in job.env beside this script (mode 0600).
umask 077  # what the run writes: readable by you only
module load 'gcc; touch PWNED_MODULE'
module load '$(touch PWNED_MODULE2)
next'
# the site config's env (HPWF_EVIL OMP_NUM_THREADS): its values stay in job.env, readable by you only
. /scratch/user/runs/toy/job.env || exit 1
export SRUN_CPUS_PER_TASK=4
set -u  # after the site's environment: module and conda scripts often read unset variables
hpwf_python='/opt/py thon/$(touch PWNED_PY)/bin/python'
hpwf_run_dir=/scratch/user/runs/toy
hpwf_max_requeues=3
hpwf_launch=(srun --kill-on-bad-exit=1 --mpi=pmi2 '--label; touch PWNED_ARG' '$(touch PWNED_ARG2)' 'multi
line `touch PWNED_ARG3`')
if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then  # shared memory the killed MPI step left on each node
    srun --mpi=none --ntasks-per-node=1 --ntasks="${SLURM_NNODES:-1}" "$hpwf_python" -P -m hpwf.slurm clean-shm "$SLURM_JOB_ID"
fi
cd /home/user/project || exit 1

if [ -e "$hpwf_run_dir/run.json" ]; then
    hpwf_args=(resume "$hpwf_run_dir" --backend mpi)
else
    hpwf_args=(run /home/user/project/workflows/toy.py --backend mpi --run-dir /scratch/user/runs/toy --storage 'postgresql://us;er$(x)@db.example/hpwf')
fi

export HPWF_STEP_TOKEN="${SLURM_JOB_ID:-local}.${SLURM_RESTART_COUNT:-0}.$$"
hpwf_signal=
hpwf_woken=
hpwf_step=
hpwf_forward() {  # to rank 0 (the coordinator) only: it stops the other ranks itself
    hpwf_signal=$1
    hpwf_woken=1
    echo "[hpwf job] $(date '+%F %T') SIG$1: stopping the run"
    "$hpwf_python" -P -m hpwf.slurm signal-rank0 "$1" "$HPWF_STEP_TOKEN" \
        || kill -s "$1" "$hpwf_step" 2>/dev/null
}
trap 'hpwf_forward USR1' USR1
trap 'hpwf_forward TERM' TERM

echo "[hpwf job] $(date '+%F %T') start ${SLURM_RESTART_COUNT:-0}: hpwf ${hpwf_args[0]} ${hpwf_run_dir}"
"${hpwf_launch[@]}" "$hpwf_python" -P -m hpwf "${hpwf_args[@]}" &
hpwf_step=$!
while :; do  # a trapped signal cuts `wait` short: then wait again for the step's own exit code
    hpwf_woken=
    wait "$hpwf_step"
    hpwf_rc=$?
    [ -n "$hpwf_woken" ] && [ "$hpwf_rc" -gt 128 ] || break
done
trap - USR1 TERM
echo "[hpwf job] $(date '+%F %T') hpwf ${hpwf_args[0]} exited with code $hpwf_rc"

# Only the walltime warning requeues from here. TERM comes with preemption (Slurm requeues a
# preempted job itself), `scontrol requeue` (likewise) and `scancel` (which must stay cancelled).
if [ "$hpwf_signal" = USR1 ] && [ "$hpwf_rc" -ne 0 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
    if [ "${SLURM_RESTART_COUNT:-0}" -lt "$hpwf_max_requeues" ]; then
        echo "[hpwf job] requeueing job $SLURM_JOB_ID: the run resumes when it starts again"
        scontrol requeue "$SLURM_JOB_ID"
    else
        echo "[hpwf job] not requeueing: max_requeues=$hpwf_max_requeues reached; submit again with --run-dir $hpwf_run_dir to go on"
    fi
elif [ "$hpwf_signal" = TERM ]; then
    echo "[hpwf job] stopped by SIGTERM; if Slurm requeues the job, the run resumes when it starts again"
fi
exit "$hpwf_rc"
