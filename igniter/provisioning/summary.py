"""What `igniter provision` reports about a plan, per workload, read from the typed Plan.

Per workload: the model (variant) serving it, its replicas, batch and share, the predicted p99 beside its SLO, its
price per hour, and the accuracy term apart. A GPU's price is split over its servers in proportion to their
shares, so the workloads' prices add up to the plan's cost. The cost is always the price; with variants the
objective the strategy minimised (cost - accuracy term) is reported beside it, never in its place.
"""

from __future__ import annotations

from igniter.provisioning.plan import Plan

DIGITS = 4


def summary(plan: Plan) -> dict:
    price_of: dict[str, float] = {}
    gpus_of: dict[str, list[str]] = {}
    for g in plan.gpus:
        total_share = sum(s.share for s in g.servers)
        for s in g.servers:
            price_of[s.workload] = price_of.get(s.workload, 0.0) + g.price_per_hour * s.share / total_share
            gpus_of.setdefault(s.workload, []).append(g.id)
    rows = []
    for name, servers in plan.by_workload().items():
        first = servers[0]
        accuracy = first.accuracy
        rows.append({
            "workload": name, "model": first.model, "replicas": len(servers), "batch": first.batch,
            "share": first.share, "rate": round(sum(s.rate for s in servers), DIGITS), "slo_ms": first.slo_ms,
            "predicted_p99_ms": worst_p99([s.predicted_p99_ms for s in servers]),
            "price_per_hour": round(price_of[name], DIGITS),
            "accuracy": accuracy,
            "accuracy_term": round(plan.accuracy_weight * accuracy, DIGITS) if accuracy is not None else 0.0,
            "gpus": sorted(set(gpus_of[name])), "servers": [s.name for s in servers],
        })
    t = plan.totals
    return {"strategy": plan.strategy, "status": t.status, "gpus": t.gpus, "cost": t.cost,
            "accuracy_weight": plan.accuracy_weight, "accuracy_term": t.accuracy_term, "objective": t.objective,
            "lower_bound": t.lower_bound, "gap": t.gap, "misses": [m.model_dump(exclude_none=True) for m in t.misses],
            "workloads": rows}


def worst_p99(p99s: list[float | None]) -> float | None:
    """The slowest replica's p99; None (unbounded) when any replica cannot carry its rate."""
    return None if None in p99s else max(p99s)
