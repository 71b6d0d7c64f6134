"""The wire (private to hpwf): coordinator <-> agent transport.

Messages (`_protocol`), distributions as plain tuples (`_dists`), the authenticated hub and
channel (`_channel`), network interfaces (`_netif`), and reports of agents that could not
reach the hub (`_reach`). May import: the standard library, `hpwf.errors`, `hpwf.progress`.
Nothing else of hpwf; every other folder may import it.
"""

from __future__ import annotations

from hpwf.wire import _dists as dists
from hpwf.wire._channel import Hub, send_quietly
from hpwf.wire._dists import Dist, from_optuna, suggest, to_json, to_optuna
from hpwf.wire._handshake import Address, connect, format_address, parse_address
from hpwf.wire._netif import HOSTFILE_FLAGS, HOSTS_FLAGS, INTERFACE_ENV, choose, job_hosts, job_slots
from hpwf.wire._protocol import (
    Abort, Assign, Done, DoneState, Heartbeat, Hello, PAUSE, Reply, Report, Setup, Stop, Suggest, Used, UserAttr)
from hpwf.wire._reach import (
    Announcing, REPORT_DIR_ENV, UNREACHABLE_EXIT, Unreachable, arrivals, connect_or_report, fresh_report_dir,
    mark_arrival)
from hpwf.wire._dists import float_dist
from hpwf.wire._framed import Frames, encode

__all__ = ['Abort', 'Address', 'Announcing', 'Assign', 'Dist', 'Done', 'DoneState', 'Frames', 'HOSTFILE_FLAGS', 'HOSTS_FLAGS', 'Heartbeat', 'Hello', 'Hub', 'INTERFACE_ENV', 'PAUSE', 'REPORT_DIR_ENV', 'Reply', 'Report', 'Setup', 'Stop', 'Suggest', 'UNREACHABLE_EXIT', 'Unreachable', 'Used', 'UserAttr', 'arrivals', 'choose', 'connect', 'connect_or_report', 'dists', 'encode', 'float_dist', 'format_address', 'fresh_report_dir', 'from_optuna', 'job_hosts', 'job_slots', 'mark_arrival', 'parse_address', 'send_quietly', 'suggest', 'to_json', 'to_optuna']
