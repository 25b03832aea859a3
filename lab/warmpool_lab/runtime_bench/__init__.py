"""`warmpool bench runtime`: pool, reset, call-path and HTTP costs, each against a baseline from the same run.

Reset has two strategies, chosen per module from its binary (`layout.scan`): in place (copy the
post-start memory image back, restore the exported mutable globals) or recycling (drop the Store,
stamp a fresh instance from the InstancePre). The bench serves one module of each kind, and
measures both strategies on modules that qualify for the in-place one.
"""
