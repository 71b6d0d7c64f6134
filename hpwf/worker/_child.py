"""An agent in a child process of its worker (local and Dask backends): started again when it dies,
ended with its parent, and started safely (no code from the working directory)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Any, Callable
from hpwf.wire import connect


CHILD_ENV = "HPWF_AGENT_CHILD"


QUICK_EXIT_S = 5.0  # a child that ends sooner than this, three times in a row, is not restarted


def serve_in_child(target: Callable[..., Any], *args: Any, child_env: dict[str, str] | None = None,
                   **kwargs: Any) -> int:
    """Run ``target(*args)`` (`serve`, or a function that calls it) in a child process, started
    again whenever it ends abnormally.

    For agents that live inside a Dask worker: a trial that is aborted (a lost peer, a
    timeout) ends its agent process with `ABORT_EXIT`; in a child, that leaves the Dask worker
    alive, so a long search never exhausts Dask's ``allowed-failures`` and loses its slots.
    Returns how many children ran. ``target`` (a module-level function) and its arguments reach
    the child pickled in its environment (readable by this user only); ``child_env`` adds to that
    environment (e.g. `hpwf.worker._threads.AGENTS_ENV`). The child's temporary files go into a
    fresh private folder (`hpwf.worker._scratch`), removed when this returns.
    """
    import base64
    import pickle
    import shutil

    from hpwf.progress import say
    from hpwf.worker._scratch import private_scratch, worker_folder_warning
    from hpwf.worker._start import child_pythonpath, python_command

    warning = worker_folder_warning()
    if warning:
        say(warning)
    scratch = private_scratch("hpwf-agent-")  # the agent's temporary files: never a folder someone else made
    env = {**os.environ, **(child_env or {}), CHILD_ENV: base64.b64encode(pickle.dumps((target, args, kwargs))).decode(),
           "PYTHONPATH": child_pythonpath(), "TMPDIR": scratch, "DASK_TEMPORARY_DIRECTORY": scratch}
    try:
        return _serve_children(env, python_command("hpwf.worker._child"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _serve_children(env: dict[str, str], command: list[str]) -> int:
    import subprocess

    runs, quick = 0, 0
    while True:
        start = time.time()
        with subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                              preexec_fn=_die_with_parent) as child:
            with _CHILDREN_LOCK:
                _CHILDREN.add(child)
            try:
                code = child.wait()
            finally:
                with _CHILDREN_LOCK:
                    _CHILDREN.discard(child)
        runs += 1
        if code == 0 or _STOPPING.is_set():  # told to stop, the coordinator is gone, or `end_children`
            return runs
        quick = quick + 1 if time.time() - start < QUICK_EXIT_S else 0
        if quick >= 3:
            raise RuntimeError(f"the agent process exited {code} three times within {QUICK_EXIT_S:g} s of starting")


_CHILDREN: set[Any] = set()  # the agent processes `serve_in_child` runs in this process
_CHILDREN_LOCK = threading.Lock()


_STOPPING = threading.Event()


def allow_children() -> None:
    """`serve_in_child` may start agents again (a new run in this process)."""
    _STOPPING.clear()


def end_children(grace_s: float = 2.0) -> None:
    """End the agent processes this process started, for good (the local backend's close).

    An agent still connecting (its run ended before it arrived) would otherwise keep the Dask
    worker thread that waits for it, and so the cluster's close, for its whole connect timeout.
    """
    _STOPPING.set()
    with _CHILDREN_LOCK:
        children = list(_CHILDREN)
    for child in children:
        child.terminate()
    deadline = time.time() + grace_s
    for child in children:
        with contextlib.suppress(Exception):
            child.wait(max(0.0, deadline - time.time()))
        if child.poll() is None:
            child.kill()


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the Dask worker that started it goes (Linux)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _child_main() -> int:
    import base64
    import pickle

    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the coordinator, which stops us
    target, args, kwargs = pickle.loads(base64.b64decode(os.environ.pop(CHILD_ENV)))
    try:
        target(*args, **kwargs)
    except (OSError, EOFError):
        return 0  # the coordinator is gone: nothing left to serve
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
