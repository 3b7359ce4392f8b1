"""A plan as Kubernetes manifests (`igniter export kubernetes`); docs/kubernetes.md explains the choices.

Per planned server (one workload replica): a Deployment of one Triton pod, a Service, a ConfigMap with its
model configs. Per planned GPU: one ResourceClaim (Dynamic Resource Allocation) that every server of that GPU
references, so the scheduler puts them on the node and the device the claim was allocated; the NVIDIA DRA
driver runs the claim's MPS control daemon and each Triton container's CUDA_MPS_ACTIVE_THREAD_PERCENTAGE is its
planned share. Per workload: a Service over its replicas. One PodMonitor scrapes every server's metrics port.

Output is byte-deterministic (YAML with sorted keys, files in a sorted kustomization) and written atomically:
a temporary sibling directory renamed into place, replacing only a directory that carries our marker file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from igniter import backends
from igniter.atomic import swap_in_directory
from igniter.errors import UserError
from igniter.provisioning.plan import read_launch, read_plan
from igniter.schema import read_json, read_text
from igniter.triton.config import parse_config

# Triton 2.51.0 (24.10): the tritonserver the nvidia-pytriton wheel bundles, which the plan's configs were
# written and verified against.
DEFAULT_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
# Without --model-store the model files come from the image itself (an image built FROM Triton's).
DEFAULT_MODEL_STORE = "image:///models"
MARKER = ".igniter-export"          # no .yaml/.json suffix: `kubectl apply -f DIR` does not try to read it
EXPORT_FORMAT = "igniter-kubernetes-export"

PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
REPO_DIR = "/igniter/repo"          # emptyDir the init container fills: the model repository Triton serves
CONFIG_DIR = "/igniter/configs"     # the server's ConfigMap
STORE_DIR = "/igniter/model-store"  # a pvc:// model store, read-only
EXIT_TIMEOUT_S = 30

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"   # set by GPU feature discovery (GPU operator)
DEVICE_CLASS = "gpu.nvidia.com"                # the NVIDIA DRA driver's device class
# Host-side needs of a GPU server (HTTP/gRPC threads, pinned buffers); patch with a kustomize overlay if needed.
GPU_SERVER_REQUESTS = {"cpu": "1", "memory": "2Gi"}
SERVER_MEMORY = "2Gi"                          # CPU servers: request = limit (Guaranteed QoS)

LABEL_SERVER = "igniter.io/server"
LABEL_WORKLOAD = "igniter.io/workload"
LABEL_GPU = "igniter.io/gpu"
COMMON_LABELS = {"app.kubernetes.io/name": "triton", "app.kubernetes.io/managed-by": "igniter"}

DNS_LABEL_MAX = 63
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")                # DNS-1123 label
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# -- the plan, through the one plan reader (igniter.provisioning.plan) --------------------------------------------

@dataclass(frozen=True)
class PlannedServer:
    name: str
    workload: str
    replica: int
    gpu: str
    gpu_type: str
    on_gpu: bool
    share: float
    env: dict[str, str]            # launch.json's: the MPS share or the thread count
    threads: int                   # CPU hosts: the whole cores the plan pins (0: none given)
    configs: dict[str, str]        # model -> config.pbtxt text


def read_plan_servers(plan: Path) -> list[PlannedServer]:
    """The servers of a plan (PLAN is plan.json or its directory), with their launch specs and model configs."""
    plan_path = plan / "plan.json" if plan.is_dir() else plan
    fix = "pass the plan.json written by `igniter provision` (or regenerate it)"
    servers = []
    for gpu, entry in read_plan(plan_path).servers():
        repo = plan_path.parent / "triton_repo" / entry.name
        launch = read_launch(repo / "launch.json")
        if launch.server != entry.name or launch.share != entry.share:
            raise UserError(f"{entry.name}/launch.json is for server {launch.server!r} at {launch.share:g} %, "
                            f"the plan says {entry.name!r} at {entry.share:g} %", fix)
        configs = {}
        for model in launch.models:
            path = repo / model / "config.pbtxt"
            text = read_text(path, "model config")
            parse_config(text, str(path))  # refuse a broken config here, not in a crash-looping pod
            configs[model] = text
        servers.append(PlannedServer(entry.name, entry.workload, entry.replica, gpu.id, gpu.type,
                                     backends.get(gpu.backend).gpu, entry.share, dict(launch.env),
                                     launch.threads or len(launch.cpus or []), configs))
    if not servers:
        raise UserError(f"plan {plan_path} has no servers", "provision at least one workload")
    return servers


# -- options -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelStore:
    """Where the init container copies the planned models' files from."""
    path: str                      # inside the init container
    volume: dict | None = None     # a volume to mount there (pvc://)


@dataclass(frozen=True)
class ExportOptions:
    image: str = DEFAULT_IMAGE
    namespace: str | None = None
    model_store: str = DEFAULT_MODEL_STORE
    gpu_products: tuple[tuple[str, str], ...] = ()   # (plan GPU type, nvidia.com/gpu.product value)


def parse_model_store(uri: str) -> ModelStore:
    """pvc://CLAIM[/SUBPATH] (a PersistentVolumeClaim holding a model repository) or image:///PATH (a directory
    of the image itself)."""
    fix = "give pvc://CLAIM[/SUBPATH] or image:///ABSOLUTE/PATH of a model repository"
    if uri.startswith("pvc://"):
        claim, _, sub = uri[len("pvc://"):].partition("/")
        if not SUBDOMAIN.match(claim) or len(claim) > 253:
            raise UserError(f"--model-store {uri!r}: {claim!r} is not a PersistentVolumeClaim name", fix)
        _check_path(sub, uri, fix)
        mount = {"name": "model-store", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        return ModelStore(f"{STORE_DIR}/{sub}".rstrip("/"), mount)
    if uri.startswith("image:///"):
        path = uri[len("image://"):].rstrip("/") or "/"
        _check_path(path.lstrip("/"), uri, fix)
        return ModelStore(path)
    raise UserError(f"--model-store {uri!r} is neither pvc:// nor image://", fix)


def _check_path(path: str, uri: str, fix: str) -> None:
    if any(part in ("..", ".") for part in path.split("/")) or not re.fullmatch(r"[A-Za-z0-9._/-]*", path):
        raise UserError(f"--model-store {uri!r}: the path may hold only letters, digits, '.', '_', '-', '/' "
                        "and no '.' or '..' component", fix)


def _check_options(options: ExportOptions) -> None:
    namespace = options.namespace
    if namespace is not None and (not NAMESPACE.match(namespace) or len(namespace) > DNS_LABEL_MAX):
        raise UserError(f"--namespace {namespace!r} is not a Kubernetes namespace name",
                        "use lowercase letters, digits and '-', at most 63 characters, starting and ending alphanumeric")
    if not options.image or any(c.isspace() for c in options.image):
        raise UserError(f"--image {options.image!r} is not an image reference", "give e.g. " + DEFAULT_IMAGE)


def gpu_product(gpu_type: str, options: ExportOptions) -> str:
    """The nvidia.com/gpu.product value of a plan's GPU type: --gpu-product's, else the type as GPU feature
    discovery writes an NVML name (spaces become '-')."""
    given = dict(options.gpu_products)
    product = given.get(gpu_type, gpu_type.replace(" ", "-"))
    if product and len(product) <= DNS_LABEL_MAX and LABEL_VALUE.match(product):
        return product
    if gpu_type in given:
        raise UserError(f"--gpu-product {gpu_type}={product}: {product!r} is not a label value",
                        "give the node's nvidia.com/gpu.product value, e.g. Tesla-V100-SXM2-16GB")
    raise UserError(f"GPU type {gpu_type!r} is not a valid nvidia.com/gpu.product label value",
                    f"pass --gpu-product '{gpu_type}=VALUE' with the value your nodes carry")


# -- names -------------------------------------------------------------------------------------------------------

def dns_names(raw_names: Iterable[str], prefix: str = "") -> dict[str, str]:
    """raw name -> a DNS-1035 label (valid as every object's name and as a label value): ``prefix`` + the name
    lowercased, every character but [a-z0-9-] turned into '-', '-' trimmed at the ends, 'x-' in front of a
    leading digit. Where two names map alike, or a name is too long, each gets '-' + 6 hex digits of the
    SHA-256 of its raw name (cut to fit 63 characters)."""
    raws = sorted(set(raw_names))
    mapped = {raw: _dns_base(prefix + raw) for raw in raws}
    counts = Counter(mapped.values())
    names = {}
    for raw, base in mapped.items():
        if counts[base] > 1 or len(base) > DNS_LABEL_MAX:
            digest = hashlib.sha256(raw.encode()).hexdigest()[:6]
            base = base[:DNS_LABEL_MAX - 7].rstrip("-") + "-" + digest
        names[raw] = base
    clashes = sorted(n for n, c in Counter(names.values()).items() if c > 1)
    if clashes:
        raise UserError(f"names {', '.join(clashes)} are used twice after mapping to Kubernetes names",
                        "rename one of the workloads whose names differ only in case, '.' or '_'")
    return names


def _dns_base(raw: str) -> str:
    name = re.sub(r"[^a-z0-9-]", "-", raw.lower()).strip("-")
    return name if name[:1].isalpha() else f"x-{name}".rstrip("-")


@dataclass(frozen=True)
class Names:
    server: dict[str, str]      # plan server name -> Deployment/Service name and igniter.io/server value
    workload: dict[str, str]    # workload -> igniter.io/workload value
    workload_service: dict[str, str]
    gpu: dict[str, str]         # GPU id -> igniter.io/gpu value
    claim: dict[str, str]       # GPU id -> ResourceClaim name

    @classmethod
    def of(cls, servers: list[PlannedServer]) -> "Names":
        workloads = [s.workload for s in servers]
        gpu_types = {s.gpu: s.gpu_type for s in servers if s.on_gpu}
        claims = dns_names(f"{gpu}-{t}" for gpu, t in gpu_types.items())
        return cls(server=dns_names(s.name for s in servers), workload=dns_names(workloads),
                   workload_service=dns_names(workloads, prefix="workload-"), gpu=dns_names(s.gpu for s in servers),
                   claim={gpu: claims[f"{gpu}-{t}"] for gpu, t in gpu_types.items()})


# -- manifests ---------------------------------------------------------------------------------------------------

def manifests(servers: list[PlannedServer], names: Names, options: ExportOptions) -> dict[str, dict]:
    """file name -> Kubernetes object, every object of the export (without the kustomization)."""
    _check_options(options)
    store = parse_model_store(options.model_store)
    objects = []
    for gpu in sorted({s.gpu for s in servers if s.on_gpu}):
        objects.append(_claim(gpu, names, options))
    for s in servers:
        objects += [_config_map(s, names, options), _deployment(s, names, options, store),
                    _service(names.server[s.name], {LABEL_SERVER: names.server[s.name]}, PORTS, options,
                             _server_labels(s, names))]
    for workload in sorted({s.workload for s in servers}):
        labels = {**COMMON_LABELS, LABEL_WORKLOAD: names.workload[workload]}
        ports = {k: v for k, v in PORTS.items() if k != "metrics"}
        objects.append(_service(names.workload_service[workload], {LABEL_WORKLOAD: names.workload[workload]},
                                ports, options, labels))
    objects.append(_pod_monitor(options))
    files: dict[str, dict] = {}
    for o in objects:
        kind, name = o["kind"], o["metadata"]["name"]
        if f"{kind.lower()}-{name}.yaml" in files:  # e.g. a server named like another workload's Service
            raise UserError(f"two {kind} objects would both be named {name!r}",
                            "rename the server or workload so that their Kubernetes names differ")
        files[f"{kind.lower()}-{name}.yaml"] = o
    return files


def _metadata(name: str, options: ExportOptions, labels: dict, annotations: dict | None = None) -> dict:
    meta = {"name": name, "labels": labels}
    if options.namespace:
        meta["namespace"] = options.namespace
    if annotations:
        meta["annotations"] = annotations
    return meta


def _server_labels(s: PlannedServer, names: Names) -> dict:
    return {**COMMON_LABELS, LABEL_SERVER: names.server[s.name], LABEL_WORKLOAD: names.workload[s.workload],
            LABEL_GPU: names.gpu[s.gpu]}


def _server_annotations(s: PlannedServer) -> dict:
    """The plan's own names and share, which the labels can only carry mapped."""
    return {"igniter.io/server-name": s.name, "igniter.io/workload-name": s.workload,
            "igniter.io/replica": str(s.replica), "igniter.io/share": f"{s.share:g}"}


def _claim(gpu: str, names: Names, options: ExportOptions) -> dict:
    """One planned GPU: a claim every server of that GPU shares, with MPS sharing by the NVIDIA DRA driver. The
    daemon's default stays 100 %: a client's CUDA_MPS_ACTIVE_THREAD_PERCENTAGE can only lower its limit."""
    sharing = {"strategy": "MPS", "mpsConfig": {"defaultActiveThreadPercentage": 100}}
    spec = {"devices": {
        "requests": [{"name": "gpu", "exactly": {"deviceClassName": DEVICE_CLASS}}],
        "config": [{"requests": ["gpu"], "opaque": {"driver": DEVICE_CLASS, "parameters": {
            "apiVersion": "resource.nvidia.com/v1beta1", "kind": "GpuConfig", "sharing": sharing}}}]}}
    labels = {**COMMON_LABELS, LABEL_GPU: names.gpu[gpu]}
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": _metadata(names.claim[gpu], options, labels, {"igniter.io/gpu-name": gpu}), "spec": spec}


def _config_key(model: str) -> str:
    return f"{model}.config.pbtxt"


def _config_map(s: PlannedServer, names: Names, options: ExportOptions) -> dict:
    data = {_config_key(m): text for m, text in sorted(s.configs.items())}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _metadata(f"{names.server[s.name]}-models", options, _server_labels(s, names)), "data": data}


def _deployment(s: PlannedServer, names: Names, options: ExportOptions, store: ModelStore) -> dict:
    name = names.server[s.name]
    labels = _server_labels(s, names)
    config_digest = hashlib.sha256(json.dumps(s.configs, sort_keys=True).encode()).hexdigest()[:16]
    volumes = [{"name": "repo", "emptyDir": {}}, {"name": "configs", "configMap": {"name": f"{name}-models"}}]
    if store.volume:
        volumes.append(store.volume)
    pod = {"initContainers": [_fetch_models(s, options, store)], "containers": [_triton(s, options)],
           "volumes": volumes, "terminationGracePeriodSeconds": EXIT_TIMEOUT_S + 10,
           "enableServiceLinks": False}  # a Service per server would flood every pod with *_SERVICE_HOST variables
    if s.on_gpu:
        pod["nodeSelector"] = {GPU_PRODUCT_LABEL: gpu_product(s.gpu_type, options)}
        pod["resourceClaims"] = [{"name": "gpu", "resourceClaimName": names.claim[s.gpu]}]
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    else:
        # the plan's interference predictions assume this host's servers are neighbours: keep them on one node
        pod["affinity"] = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {LABEL_GPU: names.gpu[s.gpu]}},
            "topologyKey": "kubernetes.io/hostname"}]}}
    template_annotations = {**_server_annotations(s), "igniter.io/config-digest": config_digest}
    spec = {"replicas": 1, "selector": {"matchLabels": {LABEL_SERVER: name}},
            # like `igniter apply`: the new server is ready before the old one goes
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": labels, "annotations": template_annotations}, "spec": pod}}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _metadata(name, options, labels, _server_annotations(s)), "spec": spec}


def _resources(s: PlannedServer) -> dict:
    if s.on_gpu:
        return {"requests": dict(GPU_SERVER_REQUESTS)}
    cores = {"cpu": _cores(s), "memory": SERVER_MEMORY}
    return {"requests": cores, "limits": dict(cores)}  # requests = limits, whole cores: Guaranteed, pinnable


def _cores(s: PlannedServer) -> str:
    """The plan's share of the host in cores: launch.json's threads = round(share x host cores), the whole cores
    `igniter apply` pins (the count of its pinned cpus where it gives no threads)."""
    if s.threads < 1:
        raise UserError(f"CPU server {s.name!r} has neither threads nor cpus in its launch.json",
                        "regenerate the plan with `igniter provision`")
    return str(s.threads)


def _triton(s: PlannedServer, options: ExportOptions) -> dict:
    command = ["tritonserver", f"--model-repository={REPO_DIR}", "--model-control-mode=explicit",
               *(f"--load-model={m}" for m in sorted(s.configs)), "--disable-auto-complete-config",
               "--strict-readiness=true", f"--http-port={PORTS['http']}", f"--grpc-port={PORTS['grpc']}",
               f"--metrics-port={PORTS['metrics']}", f"--allow-gpu-metrics={'true' if s.on_gpu else 'false'}",
               "--metrics-config=summary_latencies=true", f"--exit-timeout-secs={EXIT_TIMEOUT_S}", "--log-verbose=0"]
    resources = _resources(s)
    if s.on_gpu:
        resources["claims"] = [{"name": "gpu"}]
    return {"name": "triton", "image": options.image, "command": command,
            "env": [{"name": k, "value": v} for k, v in sorted(s.env.items())],
            "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in PORTS.items()],
            "resources": resources, "volumeMounts": [{"name": "repo", "mountPath": REPO_DIR}],
            "readinessProbe": _probe("/v2/health/ready", period=5, failures=3),
            "livenessProbe": _probe("/v2/health/live", period=10, failures=3),
            # loading large models can take minutes before the HTTP endpoint answers
            "startupProbe": _probe("/v2/health/live", period=10, failures=60)}


def _probe(path: str, period: int, failures: int) -> dict:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "failureThreshold": failures,
            "timeoutSeconds": 2}


# The names arrive as arguments ($1 the store, then the models), never spliced into the script.
FETCH_SCRIPT = """set -eu
store="$1"; shift
for model in "$@"; do
  if [ ! -d "$store/$model" ]; then echo "model store $store has no $model/" >&2; exit 1; fi
  mkdir -p "%(repo)s/$model"
  cp -R "$store/$model/." "%(repo)s/$model/"
  cp "%(configs)s/$model.config.pbtxt" "%(repo)s/$model/config.pbtxt"
done
""" % {"repo": REPO_DIR, "configs": CONFIG_DIR}


def _fetch_models(s: PlannedServer, options: ExportOptions, store: ModelStore) -> dict:
    """Init container: the planned models' files from the model store, each with its planned config."""
    mounts = [{"name": "repo", "mountPath": REPO_DIR}, {"name": "configs", "mountPath": CONFIG_DIR, "readOnly": True}]
    if store.volume:
        mounts.append({"name": "model-store", "mountPath": STORE_DIR, "readOnly": True})
    return {"name": "fetch-models", "image": options.image,
            "command": ["sh", "-c", FETCH_SCRIPT, "fetch-models", store.path, *sorted(s.configs)],
            "resources": _resources(s), "volumeMounts": mounts}


def _service(name: str, selector: dict, ports: dict, options: ExportOptions, labels: dict) -> dict:
    spec = {"selector": selector, "type": "ClusterIP",
            "ports": [{"name": n, "port": p, "targetPort": n, "protocol": "TCP"} for n, p in ports.items()]}
    return {"apiVersion": "v1", "kind": "Service", "metadata": _metadata(name, options, labels), "spec": spec}


def _pod_monitor(options: ExportOptions) -> dict:
    """Prometheus operator: scrape every server's metrics port, labelled with the server, workload and GPU."""
    spec = {"selector": {"matchLabels": dict(COMMON_LABELS)},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
            "podTargetLabels": [LABEL_SERVER, LABEL_WORKLOAD, LABEL_GPU]}
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
            "metadata": _metadata("igniter-triton", options, dict(COMMON_LABELS)), "spec": spec}


def kustomization(files: Iterable[str], options: ExportOptions) -> dict:
    doc = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": sorted(files)}
    if options.namespace:
        doc["namespace"] = options.namespace
    return doc


class _Dumper(yaml.SafeDumper):
    """Block style, no anchors for objects used twice (labels), multi-line strings as literal blocks."""

    def ignore_aliases(self, data) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _str)


def render(obj: dict) -> str:
    """Deterministic YAML: keys sorted, no line folding."""
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=10_000, allow_unicode=False)


# -- writing -----------------------------------------------------------------------------------------------------

def export_kubernetes(plan: Path, out: Path, options: ExportOptions) -> dict:
    """Write the export of ``plan`` to ``out``; returns a summary (what --json prints)."""
    servers = read_plan_servers(plan)
    names = Names.of(servers)
    objects = manifests(servers, names, options)
    texts = {name: render(obj) for name, obj in objects.items()}
    texts["kustomization.yaml"] = render(kustomization(objects, options))
    plan_path = plan / "plan.json" if plan.is_dir() else plan
    marker = {"format": EXPORT_FORMAT, "version": 1, "files": sorted(texts),
              "plan_sha256": hashlib.sha256(plan_path.read_bytes()).hexdigest()}
    texts[MARKER] = json.dumps(marker, indent=2, sort_keys=True) + "\n"
    write_export_dir(out, texts)
    rows = [{"server": s.name, "deployment": names.server[s.name], "workload": s.workload, "gpu": s.gpu,
             "type": s.gpu_type, "node": f"{GPU_PRODUCT_LABEL}={gpu_product(s.gpu_type, options)}" if s.on_gpu else "any (CPU)",
             "share": s.share, "cpu": _cores(s) if not s.on_gpu else GPU_SERVER_REQUESTS["cpu"]} for s in servers]
    return {"out": str(out), "namespace": options.namespace, "image": options.image, "files": sorted(texts),
            "servers": rows}


def write_export_dir(out: Path, texts: dict[str, str]) -> None:
    """All files into a temporary sibling directory, then renamed into place. An existing ``out`` is replaced
    only when igniter wrote it (it carries the marker) or it is empty."""
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, text in texts.items():
            (tmp / name).write_text(text, encoding="utf-8")
            os.chmod(tmp / name, 0o644)
        os.chmod(tmp, 0o755)
        swap_in_directory(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_replaceable(out: Path) -> None:
    fix = "choose a new --out directory (an earlier export's is replaced)"
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"--out {out} exists and is not a directory", fix)
    if not out.exists() or not any(out.iterdir()):
        return
    marker = out / MARKER
    try:
        ours = marker.is_file() and read_json(marker, "export marker").get("format") == EXPORT_FORMAT
    except (UserError, AttributeError):
        ours = False
    if not ours:
        raise UserError(f"--out {out} exists and was not written by `igniter export kubernetes`", fix)
