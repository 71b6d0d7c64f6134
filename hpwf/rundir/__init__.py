"""Files and who may read them: the run directory and its store (`_run`) and lock (`_lock`), trial
folders and durable results (`_trialdir`), permissions and safe writes (`_perms`), every file opened
relative to the run directory's descriptor (`_safe_open`). May import:
`hpwf.wire` (distributions as JSON), `hpwf.errors`, `hpwf.secrets`, `hpwf.progress`.
"""

from __future__ import annotations

from hpwf.rundir import _attrs as attrs
from hpwf.rundir._attrs import (
    ATTEMPT_ATTR, BRACKET_ATTR, CONFIG, FAIL_REASON_ATTR, HEARTBEAT_ATTR, MEMBER, PAUSED_ATTR, PBT_EXPLOITED,
    PBT_GENERATION, PBT_MEMBER, PBT_PARENT, RESTORE_ATTR, RETRY_OF_ATTR, RUN_ATTR, RUN_BEAT_PREFIX, SEED, SEED_ATTR,
    SOURCE, TRACEBACK_ATTR, carried, fail_reason, trial_seed)
from hpwf.rundir._perms import (
    PRIVATE_UMASK, SHARED_UMASK, atomic_write, atomic_writer, check_parents, check_run_trusted, is_shared, make_run_dir,
    run_umask)
from hpwf.rundir._lock import RunLock
from hpwf.rundir._run import (
    DEFAULT_JOURNAL, RUN_FILE, RunRecord, load_study, open_storage, read_summary, write_summary)
from hpwf.rundir._states import is_paused, state_counts
from hpwf.rundir._trialdir import (
    FAILURE, PARAMS, RESULT, TRACEBACK, read_result, trial_folder, write_atomically, write_result)
from hpwf.rundir._perms import read_private
from hpwf.rundir._run import check_run_store, journal_path, open_run_store, open_run_study, read_study, scan_study
from hpwf.rundir._safe_open import held_folder, hold_run_dir, is_dir, is_file, make_folder, open_fd, open_file, read_file
from hpwf.rundir._snapshot import SnapshotKeeper, save_journal_snapshot
from hpwf.rundir._trialdir import close_results_logs, trial_folders

__all__ = ['ATTEMPT_ATTR', 'BRACKET_ATTR', 'CONFIG', 'DEFAULT_JOURNAL', 'FAILURE', 'FAIL_REASON_ATTR', 'HEARTBEAT_ATTR', 'MEMBER', 'PARAMS', 'PAUSED_ATTR', 'PBT_EXPLOITED', 'PBT_GENERATION', 'PBT_MEMBER', 'PBT_PARENT', 'PRIVATE_UMASK', 'RESTORE_ATTR', 'RESULT', 'RETRY_OF_ATTR', 'RUN_ATTR', 'RUN_BEAT_PREFIX', 'RUN_FILE', 'RunLock', 'RunRecord', 'SEED', 'SEED_ATTR', 'SHARED_UMASK', 'SOURCE', 'SnapshotKeeper', 'TRACEBACK', 'TRACEBACK_ATTR', 'atomic_write', 'atomic_writer', 'attrs', 'carried', 'check_parents', 'check_run_store', 'check_run_trusted', 'close_results_logs', 'fail_reason', 'held_folder', 'hold_run_dir', 'is_dir', 'is_file', 'is_paused', 'is_shared', 'journal_path', 'load_study', 'make_folder', 'make_run_dir', 'open_fd', 'open_file', 'open_run_store', 'open_run_study', 'open_storage', 'read_file', 'read_private', 'read_result', 'read_study', 'read_summary', 'run_umask', 'save_journal_snapshot', 'scan_study', 'state_counts', 'trial_folder', 'trial_folders', 'trial_seed', 'write_atomically', 'write_result', 'write_summary']
