"""Old path of ``hpwf.replay`` (`hpwf.api.replay`), kept as an alias for now."""

from hpwf.api import replay
from hpwf.engine.schedulers import ReplaySearch, replay_workflow

__all__ = ["ReplaySearch", "replay", "replay_workflow"]
