"""Performance model: solo + co-located latency/throughput prediction (docs/artefacts.md, section 2)."""

from igniter.model.perfmodel import LinearTerms, Member, PerfModel, Prediction

__all__ = ["LinearTerms", "Member", "PerfModel", "Prediction"]
