"""igniter watch: the online control loop over a deployed plan (layer: above deployment, below cli).

observe.py turns two Triton metric scrapes into Observations, detect.py holds the pure drift rules, loop.py the
Watcher that adapts the perf model, re-plans and applies through a hook. Nothing imports this package but the cli
and igniter/replay.
"""
