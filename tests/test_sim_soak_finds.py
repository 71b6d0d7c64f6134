"""What the 30-minute soak on the merged simulator found (issue 20), each replayed here."""

from __future__ import annotations

import os

from hpwf.sim import run_seed


def test_a_frozen_agent_dropped_before_it_read_a_members_assignment_is_not_a_member_trained_twice() -> None:
    """Seed 4,014,913: an agent frozen without beats is dropped; its member is retried and completes;
    the agent thaws and reads the assignment sent before the hang-up. That work is wasted and its
    result never told (the ticket is retired): the simulator no longer counts it as training the
    member again (it did, and stopped the soak's verdict)."""
    outcome = run_seed(4_014_913)
    assert outcome.config.ensemble and ("kill_coordinator",) in outcome.actions
    assert outcome.violations == []


def test_schedules_leave_no_descriptor_open() -> None:
    """The soak ran out of descriptors after ~15,000 schedules: each simulated run left its agents'
    results logs and its pollers open (one process runs them all)."""
    before = len(os.listdir("/proc/self/fd"))
    for seed in range(4_000_000, 4_000_060):  # plain, ensemble and two-run schedules among them
        run_seed(seed)
    assert len(os.listdir("/proc/self/fd")) <= before
