"""Scrape a Triton server's Prometheus endpoint into per-model figures (prometheus_client's parser, no regexes).

Counters are cumulative; ``interval(before, after)`` turns two scrapes into per-request averages over the window.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from igniter.errors import UserError

# Triton metric name -> our field name (cumulative counters, microseconds for durations).
_COUNTERS = {
    "nv_inference_request_success": "request_success",
    "nv_inference_request_failure": "request_failure",
    "nv_inference_count": "inference_count",
    "nv_inference_exec_count": "exec_count",
    "nv_inference_request_duration_us": "request_us",
    "nv_inference_queue_duration_us": "queue_us",
    "nv_inference_compute_input_duration_us": "compute_input_us",
    "nv_inference_compute_infer_duration_us": "compute_infer_us",
    "nv_inference_compute_output_duration_us": "compute_output_us",
}
_GAUGES = {"nv_inference_pending_request_count": "pending"}
_SUMMARIES = {
    "nv_inference_request_summary_us": "request",
    "nv_inference_queue_summary_us": "queue",
    "nv_inference_compute_infer_summary_us": "compute_infer",
}


@dataclass
class ModelMetrics:
    """Cumulative figures of one model version on one server at one scrape."""

    model: str
    version: str
    request_success: float = 0.0
    request_failure: float = 0.0
    inference_count: float = 0.0
    exec_count: float = 0.0
    request_us: float = 0.0
    queue_us: float = 0.0
    compute_input_us: float = 0.0
    compute_infer_us: float = 0.0
    compute_output_us: float = 0.0
    pending: float = 0.0
    quantiles_us: dict[str, dict[float, float]] = field(default_factory=dict)  # "request" -> {0.99: us}


@dataclass
class ServerMetrics:
    models: dict[str, ModelMetrics]
    cpu_utilization: float | None = None
    gpu: dict[str, float] = field(default_factory=dict)  # e.g. nv_gpu_utilization, nv_gpu_power_usage


def parse_metrics(text: str) -> ServerMetrics:
    models: dict[str, ModelMetrics] = {}
    server = ServerMetrics(models=models)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "nv_cpu_utilization":
                server.cpu_utilization = sample.value
            elif sample.name.startswith("nv_gpu_") or sample.name.startswith("nv_energy"):
                server.gpu[f"{sample.name}{{{labels.get('gpu_uuid', '')}}}"] = sample.value
            if "model" not in labels:
                continue
            row = models.setdefault(labels["model"], ModelMetrics(labels["model"], labels.get("version", "")))
            _absorb(row, family.name, sample.name, labels, sample.value)
    return server


def _absorb(row: ModelMetrics, family: str, sample: str, labels: dict, value: float) -> None:
    if family in _SUMMARIES:
        key = _SUMMARIES[family]
        if "quantile" in labels:
            row.quantiles_us.setdefault(key, {})[float(labels["quantile"])] = value
        return
    name = _COUNTERS.get(sample.removesuffix("_total")) or _COUNTERS.get(family) or _GAUGES.get(sample)
    if name:
        setattr(row, name, getattr(row, name) + value)


def scrape(metrics_endpoint: str, timeout_s: float = 5.0) -> ServerMetrics:
    url = metrics_endpoint if "://" in metrics_endpoint else f"http://{metrics_endpoint}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return parse_metrics(resp.read().decode())
    except OSError as err:
        raise UserError(f"cannot read Triton metrics at {url}: {err}",
                        "check the server is running and its metrics port is reachable") from err


def interval(before: ModelMetrics | None, after: ModelMetrics) -> dict:
    """Per-request averages (ms) and counts between two cumulative scrapes of the same model."""
    base = before or ModelMetrics(after.model, after.version)
    delta = {k: getattr(after, k) - getattr(base, k) for k in _COUNTERS.values()}
    requests = delta["request_success"] or float("nan")
    executions = delta["exec_count"] or float("nan")
    return {
        "model": after.model,
        "requests": delta["request_success"],
        "failures": delta["request_failure"],
        "inferences": delta["inference_count"],
        "executions": delta["exec_count"],
        "avg_batch": delta["inference_count"] / executions,
        "request_ms": delta["request_us"] / requests / 1e3,
        "queue_ms": delta["queue_us"] / requests / 1e3,
        "compute_ms": (delta["compute_input_us"] + delta["compute_infer_us"] + delta["compute_output_us"]) / requests / 1e3,
        "p99_request_ms": after.quantiles_us.get("request", {}).get(0.99, float("nan")) / 1e3,
    }
