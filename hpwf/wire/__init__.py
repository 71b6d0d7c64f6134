"""The wire (private to hpwf): coordinator <-> agent transport.

Messages (`_protocol`), distributions as plain tuples (`_dists`), the authenticated hub and
channel (`_channel`), network interfaces (`_netif`), and reports of agents that could not
reach the hub (`_reach`). May import: the standard library, `hpwf.errors`, `hpwf.progress`.
Nothing else of hpwf; every other folder may import it.
"""
