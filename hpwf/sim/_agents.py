"""Simulated agents: the agent contract of `hpwf.worker._agent`, in virtual time.

An agent says `Hello`, beats every heartbeat, runs each `Assign` for the length its plan says
(asking for ``x`` by round trip unless it was proposed ahead), writes the trial's durable
``result.json`` before it sends `Done`, and dies on `Abort` (a Dask agent's child process;
`World` restarts it). Faults are switches on the agent: frozen (with or without beats), a hung
non-leader rank, a link delay, a half-sent frame (its next `Done` stops after the length and part
of the payload; then it is silent for good, or its process dies).

With a scheduler (`Config.scheduler`) a trial reports each of its ``steps`` steps and obeys the
answer (`ending_of`, shared with `hpwf.sim._virtual`'s agents): go on, prune, or pause (the
world keeps the checkpoint; the Done says PAUSED); an attempt whose Assign names a checkpoint
(`restore_point`) continues from that step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpwf.rundir import write_result
from hpwf.sim._ensemble import member_started
from hpwf.sim._net import SimConn
from hpwf.sim._plans import ending_of, restore_point
from hpwf.engine.health import SILENT_BEATS
from hpwf.engine.ledger import AgentState
from hpwf.wire import Abort, Assign, Done, DoneState, Heartbeat, Hello, Reply, Report, Setup, Stop, Suggest, \
    encode, float_dist

if TYPE_CHECKING:
    from hpwf.sim._world import World



LIVE = (AgentState.CONNECTING, AgentState.IDLE, AgentState.BUSY, AgentState.RESERVED)


@dataclass
class SimAgent:
    world: World
    name: str
    host: str
    rank: int | None
    conn: SimConn | None = None
    setup: Setup | None = None
    task: Assign | None = None
    tickets: set[int] = field(default_factory=set)  # every ticket it was handed
    frozen: bool = False
    beats_when_frozen: bool = False
    hangs_after_done: bool = False  # a non-leader rank that never returns after the leader's Done
    hangs_as_leader: bool = False  # the next trial it leads never returns (its heartbeat thread still beats)
    dead: bool = False
    stopped: bool = False
    delay: float = 0.0
    half_frame: str | None = None  # "silent" | "die": its next Done is cut mid-frame, then that
    _waiting_for_x: bool = False
    _params: dict[str, Any] = field(default_factory=dict)
    _epoch: int = 0  # bumped at each new task: stale timers of an older one do nothing
    _step: int = 0  # the step the running trial trains next (with a scheduler)
    _reporting: bool = False  # a Report sent, its reply not read yet
    _task_folder: Path | None = None  # the run directory of its task's phase (a later phase's Setup may come)

    # --- life -------------------------------------------------------------------------------
    def connect(self, hub_conn: SimConn, agent_conn: SimConn) -> None:
        self.conn = agent_conn
        agent_conn.on_message = self.on_message
        agent_conn.delay = lambda: self.delay
        hub_conn.delay = lambda: self.delay
        self._send(Hello(self.name, self.host, 1, self.rank, None))
        self.world.events.after(0.0, self._beat)

    def die(self) -> None:
        """The process is gone: its connection closes; nothing more comes from it."""
        if self.dead:
            return
        self.dead = True
        if self.conn is not None:
            self.conn.close()

    def _send(self, message: Any) -> None:
        if self.dead or self.conn is None:
            return
        try:
            if self.half_frame and isinstance(message, Done):
                self._half_send(message)
            else:
                self.conn.send(message)
        except BrokenPipeError:
            self.dead = True

    def _half_send(self, message: Done) -> None:
        """The real frame of ``message``, cut after its length and half its payload; then silence
        for good (a node frozen mid-write: no beat either) or death. The coordinator must read
        on without waiting for the rest, and drop this agent within the silence limit."""
        assert self.conn is not None
        frame, hub_end, world = encode(message), self.conn.peer, self.world
        self.conn.send_bytes(frame[:4 + (len(frame) - 4) // 2])
        world.log.append(f"t={world.clock.t:.3f} {self.name} sent half a frame, then {self.half_frame}")
        if self.half_frame == "die":
            self.die()
            world.restart(self)
        else:
            self.dead = True  # nothing more comes from it; its connection stays open
        session, limit = world.session, (SILENT_BEATS + 2) * world.config.heartbeat + 1.0 + world.config.turn_s

        def dropped() -> None:  # (a retired MPI rank stays connected, given no work, until the run ends)
            record = session.ledger.agents.get(hub_end) if session is not None else None
            if world.session is session and not world.finished and record is not None and record.state in LIVE:
                world.violation(f"{self.name} sent half a frame {limit:g} s ago and is still {record.state.value}")
        world.events.after(limit, dropped)

    def _beat(self) -> None:
        if self.dead or self.stopped:
            return
        if not self.frozen or self.beats_when_frozen:
            self._send(Heartbeat(self.task.ticket if self.task else None))
        every = self.setup.heartbeat_s if self.setup else 1.0
        self.world.events.after(every, self._beat)

    # --- messages ---------------------------------------------------------------------------
    def on_message(self) -> None:
        conn = self.conn
        if conn is None or self.dead:
            return
        if not conn.inbox and conn.peer is not None and conn.peer.closed:
            self.world.coordinator_gone(self)
            return
        if self.frozen:
            return  # it reads nothing while frozen (messages wait in its inbox)
        for message in conn.take() if conn.inbox else []:
            self._handle(message)

    def _handle(self, message: Any) -> None:
        if isinstance(message, Setup):
            self.setup = message
        elif isinstance(message, Assign):
            self._start(message)
        elif isinstance(message, Reply):
            if self.task is None or message.ticket != self.task.ticket:
                return
            if self._waiting_for_x:
                self._waiting_for_x = False
                if isinstance(message.value, BaseException):
                    self._finish(self._epoch, "error")
                else:
                    self._params["x"] = message.value
                    self._run(self._epoch)
            elif self._reporting:
                self._reporting = False
                ending = ending_of(message.value)
                if ending is None:
                    self._step += 1
                    self._next_step(self._epoch)
                elif ending == DoneState.PAUSED:
                    self._pause()
                else:
                    self._finish(self._epoch, "pruned" if ending == DoneState.PRUNED else "error")
        elif isinstance(message, Abort):
            self.world.aborted(self, message)
            if self.task is not None and message.ticket == self.task.ticket:
                self.die()
                self.world.restart(self)
        elif isinstance(message, Stop):
            self.world.stopped(self)
            if self.task is None or self.world.config.group_mode != "mpi":
                self.stopped = True
                self.die()

    def _start(self, task: Assign) -> None:
        self.task, self._epoch, self._reporting = task, self._epoch + 1, False
        self.tickets.add(task.ticket)
        self._params = dict(task.params)
        self._task_folder = self.folder
        if self.setup is not None and self.setup.entry == "ensemble":  # a member: its configuration is fixed
            hung_up = self.conn is None or self.conn.peer is None or self.conn.peer.closed
            if self.leader and not member_started(self.world, task, hung_up):
                self._finish(self._epoch, "error")  # `hpwf.Member`: "carries no member attributes"
                return
            self._run(self._epoch)
        elif self.leader and "x" not in self._params:
            self._waiting_for_x = True
            self._send(Suggest(task.ticket, "x", float_dist(-1.0, 1.0, None, False)))
        else:
            self._run(self._epoch)

    @property
    def folder(self) -> Path:
        """The phase's run directory (the ensemble's: ``RUN_DIR/ensemble``)."""
        return Path(self.setup.run_dir) if self.setup is not None else Path(self.world.run_dir)

    @property
    def leader(self) -> bool:
        return self.task is None or not self.task.group or self.task.group[0] == self.rank

    def _run(self, epoch: int) -> None:
        assert self.task is not None
        plan = self.world.plan_for(self.task.number)
        if not self.world.config.scheduler:
            self.world.events.after(plan.seconds, lambda: self._finish(epoch))
            return
        if not self.leader:  # it trains in step with its leader and leaves when the leader does (the
            self.world.followers.setdefault(self.task.ticket, []).append((self, epoch))  # decision is shared)
            return
        self._step = self.world.invariants.start_step(self.task, restore_point(self.task))
        self._next_step(epoch)

    def _next_step(self, epoch: int) -> None:
        """Train step ``_step`` (its share of the plan's length), then report it; past the last, end."""
        assert self.task is not None
        steps = self.world.config.steps
        if self._step >= steps:
            self._finish(epoch)
            return

        def stepped() -> None:
            task = self.task
            if task is None or epoch != self._epoch or self.dead:
                return
            if self.frozen:
                self.world.events.after(1.0, stepped)
                return
            self._reporting = True
            x = float(self._params.get("x", 0.0))
            self._send(Report(task.ticket, self._step, x * x + (steps - self._step) / steps))
        self.world.events.after(self.world.plan_for(self.task.number).seconds / steps, stepped)

    def _used_params(self, task: Assign) -> dict[str, Any] | None:
        return {"x": float(self._params.get("x", 0.0))} if "x" in task.params else None

    def _pause(self) -> None:
        """Told to pause: the checkpoint (the step it continues from) is saved, then Done PAUSED."""
        task = self.task
        assert task is not None
        seconds = self.world.plan_for(task.number).seconds * (self._step + 1) / self.world.config.steps
        write_result(self._task_folder or self.folder, task.number, "PAUSED", None, dict(self._params), seconds,
                     {"x": float_dist(-1.0, 1.0, None, False)})
        self.world.invariants.saved(task.number, self._step + 1)
        self.task = None
        self._release_group(task)
        self._send(Done(task.ticket, DoneState.PAUSED, None, None, seconds, used=self._used_params(task)))

    def _finish(self, epoch: int, ending: str | None = None) -> None:
        task = self.task
        if task is None or epoch != self._epoch or self.dead:
            return
        if self.frozen:  # it ends once it thaws
            self.world.events.after(1.0, lambda: self._finish(epoch, ending))
            return
        if not self.leader:
            if self.hangs_after_done:
                return  # the rank never comes back (its heartbeat thread still beats)
            self.task = None
            self._send(Done(task.ticket, DoneState.MEMBER, None, None, 0.0))
            return
        if self.hangs_as_leader:
            return
        plan = self.world.plan_for(task.number)
        ending = ending or plan.ending
        if ending == "pruned" and self.setup is not None and self.setup.entry == "ensemble":
            ending = "complete"  # members are never pruned
        x = float(self._params.get("x", 0.0))
        used = self._used_params(task)
        if ending == "complete":
            state, values, text = "complete", [x * x], None
        elif ending == "pruned":
            state, values, text = "pruned", None, None
        else:
            state, values = "fail", None
            text = "Traceback ...\nValueError: the objective returned a non-finite value: nan" if ending == "nan" \
                else "Traceback ...\nRuntimeError: boom"
        write_result(self._task_folder or self.folder, task.number, state.upper(), values, dict(self._params),
                     plan.seconds, {"x": float_dist(-1.0, 1.0, None, False)})
        self.world.durable(task.number, state, self._task_folder or self.folder, self)
        self.task = None
        self._release_group(task)
        self._send(Done(task.ticket, DoneState(state), values, text, plan.seconds, used=used))

    def _release_group(self, task: Assign) -> None:
        """The leader leaves the trial (done, pruned, failed or paused): so do its other ranks, which
        learn it from the shared decision (`hpwf.Trial.report` broadcasts it) and report as members."""
        for rank, epoch in self.world.followers.pop(task.ticket, []):
            rank.leave(epoch)

    def leave(self, epoch: int) -> None:
        """A non-leader rank: its leader left the trial of ``epoch``; it reports as a member (or hangs)."""
        self._finish(epoch)
