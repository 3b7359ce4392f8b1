"""`igniter export kubernetes`: every manifest validated offline against the pinned Kubernetes 1.34 OpenAPI schemas
(kubernetes-validate ships them), the CRD-typed ones against minimal hand-written schemas, and the export checked
for consistency with hand-made plans whose expected values are worked out by hand below."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from fake_perf_model import FakePerfModel  # noqa: E402

from igniter.cli import provision as provision_cli  # noqa: E402
from igniter.cli.main import cli  # noqa: E402
from igniter.deployment import kubernetes as k8s  # noqa: E402
from igniter.errors import UserError  # noqa: E402
from igniter.provisioning.plan import PLAN_VERSION, GpuPlan, LaunchSpec, Plan, ServerPlan, Totals  # noqa: E402
from igniter.schema import dump_json  # noqa: E402

KUBERNETES_VERSION = "1.34.0"   # the first release with resource.k8s.io/v1 (DRA) enabled by default
# apimachinery's validation.IsDNS1035Label / IsDNS1123Label / label values, written out independently
DNS1035 = r"[a-z]([-a-z0-9]*[a-z0-9])?"
LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"

# prometheus-operator's PodMonitor CRD (monitoring.coreos.com/v1), cut to the fields the export writes; closed
# (additionalProperties false), so a misspelt field fails here as it would be dropped by the API server.
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
POD_MONITOR_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PodMonitor"},
        "metadata": {"type": "object"},
        "spec": {"type": "object", "required": ["selector"], "additionalProperties": False, "properties": {
            "selector": {"type": "object", "additionalProperties": False, "properties": {
                "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "podTargetLabels": {"type": "array", "items": {"type": "string"}},
            "podMetricsEndpoints": {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "properties": {
                    "port": {"type": "string"}, "path": {"type": "string"},
                    "interval": {"type": "string", "pattern": DURATION}}}}}}}}
# the NVIDIA DRA driver's GpuConfig (resource.nvidia.com/v1beta1, api/nvidia.com/resource/v1beta1), same cut
GPU_CONFIG_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind"], "additionalProperties": False, "properties": {
        "apiVersion": {"const": "resource.nvidia.com/v1beta1"}, "kind": {"const": "GpuConfig"},
        "sharing": {"type": "object", "required": ["strategy"], "additionalProperties": False, "properties": {
            "strategy": {"enum": ["TimeSlicing", "MPS"]},
            "mpsConfig": {"type": "object", "additionalProperties": False, "properties": {
                "defaultActiveThreadPercentage": {"type": "integer", "minimum": 1, "maximum": 100}}}}}}}

CONFIG = 'name: "{model}"\nmax_batch_size: {batch}\ndynamic_batching {{\n  preferred_batch_size: {batch}\n}}\n'


def write_plan(out: Path, gpus: list[dict], kind: str) -> Path:
    """gpus: [{id, type, servers: [{name, workload, replica, model, share, threads?}]}] -> out/plan.json + repos."""
    plan_gpus = []
    for g in gpus:
        entries = []
        for s in g["servers"]:
            repo = out / "triton_repo" / s["name"]
            (repo / s["model"]).mkdir(parents=True)
            (repo / s["model"] / "config.pbtxt").write_text(CONFIG.format(model=s["model"], batch=s.get("batch", 4)))
            if kind == "gpu":
                launch = LaunchSpec(server=s["name"], gpu=g["id"], backend="mps", share=s["share"], models=[s["model"]],
                                    env={"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": f"{s['share']:g}"})
            else:
                launch = LaunchSpec(server=s["name"], gpu=g["id"], backend="cpu", share=s["share"], models=[s["model"]],
                                    threads=s["threads"], cpus=list(range(s["threads"])),
                                    env={"OMP_NUM_THREADS": str(s["threads"])})
            (repo / "launch.json").write_text(dump_json(launch))
            entries.append(ServerPlan(name=s["name"], workload=s["workload"], replica=s["replica"], replicas=1,
                                      model=s["model"], share=s["share"], batch=s.get("batch", 4),
                                      max_queue_delay_us=1000, rate=10.0, slo_ms=100.0, predicted_latency_ms=1.0,
                                      predicted_p99_ms=2.0, predicted_throughput_rps=100.0))
        plan_gpus.append(GpuPlan(id=g["id"], type=g["type"], kind=kind, backend="mps" if kind == "gpu" else "cpu",
                                 price_per_hour=1.0, servers=entries))
    plan = Plan(format="igniter-plan", version=PLAN_VERSION, strategy="manual", latency_model="queueing", hardware_kind=kind,
                gpus=plan_gpus, totals=Totals(gpus=len(gpus), cost=1.0, accuracy_term=0.0, objective=1.0,
                                              lower_bound=1.0, gap=0.0, status="manual"))
    (out / "plan.json").write_text(dump_json(plan))
    return out / "plan.json"


# Two workloads whose names map alike ("Vision.A", "vision_a" -> "vision-a"), one with a replica on a second GPU.
GPU_PLAN = [
    {"id": "gpu0", "type": "Tesla V100-SXM2-16GB", "servers": [
        {"name": "gpu0-Vision.A-r0", "workload": "Vision.A", "replica": 0, "model": "resnet50", "share": 30.0},
        {"name": "gpu0-vision_a-r0", "workload": "vision_a", "replica": 0, "model": "vgg19", "share": 70.0}]},
    {"id": "gpu1", "type": "T4", "servers": [
        {"name": "gpu1-Vision.A-r1", "workload": "Vision.A", "replica": 1, "model": "resnet50", "share": 100.0}]},
]
# A 4-core host: 50 % is 2 cores, 25 % is 1 core.
CPU_PLAN = [
    {"id": "host0", "type": "AMD EPYC", "servers": [
        {"name": "host0-ranking-r0", "workload": "ranking", "replica": 0, "model": "mlp", "share": 50.0, "threads": 2},
        {"name": "host0-vision-r0", "workload": "vision", "replica": 0, "model": "convnet", "share": 25.0, "threads": 1}]},
]


def h6(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()[:6]


@pytest.fixture()
def gpu_export(tmp_path) -> Path:
    plan = write_plan(tmp_path / "plan", GPU_PLAN, "gpu")
    k8s.export_kubernetes(plan, tmp_path / "out", k8s.ExportOptions(namespace="inference",
                                                                    gpu_products=(("T4", "Tesla-T4"),)))
    return tmp_path / "out"


@pytest.fixture()
def cpu_export(tmp_path) -> Path:
    plan = write_plan(tmp_path / "plan", CPU_PLAN, "cpu")
    k8s.export_kubernetes(plan.parent, tmp_path / "out", k8s.ExportOptions(model_store="pvc://models/repo"))
    return tmp_path / "out"


def objects(out: Path) -> list[dict]:
    docs = []
    for path in sorted(out.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def of_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def env_of(container: dict) -> dict:
    return {e["name"]: e["value"] for e in container["env"]}


# -- validation against the pinned schemas -----------------------------------------------------------------------

@pytest.mark.parametrize("export", ["gpu_export", "cpu_export"])
def test_every_manifest_validates_against_the_pinned_schemas(export, request, monkeypatch):
    docs = objects(request.getfixturevalue(export))

    def offline(*args, **kwargs):
        raise OSError("the schemas must be read from the installed package, not fetched")

    monkeypatch.setattr(socket.socket, "connect", offline)
    kinds = set()
    for doc in docs:
        kinds.add(doc["kind"])
        if doc["kind"] == "PodMonitor":
            jsonschema.validate(doc, POD_MONITOR_SCHEMA)
            continue
        assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True) == "1.34", doc["metadata"]["name"]
        if doc["kind"] == "ResourceClaim":
            for config in doc["spec"]["devices"]["config"]:
                jsonschema.validate(config["opaque"]["parameters"], GPU_CONFIG_SCHEMA)
    expected = {"ConfigMap", "Deployment", "Service", "PodMonitor"} | ({"ResourceClaim"} if export == "gpu_export" else set())
    assert kinds == expected


def test_the_pinned_validator_refuses_a_broken_manifest(gpu_export):
    """The oracle is not vacuous: a misspelt field and a wrong type fail the same validation."""
    deployment = of_kind(objects(gpu_export), "Deployment")[f"gpu0-vision-a-r0-{h6('gpu0-Vision.A-r0')}"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment["spec"]["template"]["spec"]["containers"][0].pop("readinesProbe")
    deployment["spec"]["replicas"] = "1"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    (monitor,) = of_kind(objects(gpu_export), "PodMonitor").values()
    monitor["spec"]["podMetricsEndpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, POD_MONITOR_SCHEMA)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
@pytest.mark.parametrize("export, namespace", [("gpu_export", "inference"), ("cpu_export", None)])
def test_kubectl_kustomize_renders_every_object(export, namespace, request):
    out = request.getfixturevalue(export)
    rendered = subprocess.run(["kubectl", "kustomize", str(out)], capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == \
        sorted((d["kind"], d["metadata"]["name"]) for d in objects(out))
    assert {d["metadata"].get("namespace") for d in docs} == {namespace}


# -- consistency with the plan (hand-worked values) ----------------------------------------------------------------

def test_gpu_export_matches_the_plan(gpu_export):
    docs = objects(gpu_export)
    deployments = of_kind(docs, "Deployment")
    r0_a, r0_b = f"gpu0-vision-a-r0-{h6('gpu0-Vision.A-r0')}", f"gpu0-vision-a-r0-{h6('gpu0-vision_a-r0')}"
    # one Deployment per planned server; the two names that map alike carry a hash, the third does not
    assert sorted(deployments) == sorted([r0_a, r0_b, "gpu1-vision-a-r1"])
    share = {r0_a: "30", r0_b: "70", "gpu1-vision-a-r1": "100"}
    product = {r0_a: "Tesla-V100-SXM2-16GB", r0_b: "Tesla-V100-SXM2-16GB", "gpu1-vision-a-r1": "Tesla-T4"}
    model = {r0_a: "resnet50", r0_b: "vgg19", "gpu1-vision-a-r1": "resnet50"}
    claims = of_kind(docs, "ResourceClaim")
    claim_of = {}
    for name, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        triton = pod["containers"][0]
        assert d["spec"]["replicas"] == 1
        assert selects(d["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"])
        assert env_of(triton) == {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": share[name]}
        assert pod["nodeSelector"] == {"nvidia.com/gpu.product": product[name]}
        assert triton["resources"]["claims"] == [{"name": "gpu"}]
        assert [c["name"] for c in pod["resourceClaims"]] == ["gpu"]
        claim_of[name] = pod["resourceClaims"][0]["resourceClaimName"]
        assert claim_of[name] in claims
        command = triton["command"]
        assert command[0] == "tritonserver" and "--model-control-mode=explicit" in command
        assert f"--load-model={model[name]}" in command and "--model-repository=/igniter/repo" in command
        assert "--metrics-port=8002" in command and "--http-port=8000" in command
        assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
        assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
        assert {p["name"]: p["containerPort"] for p in triton["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    # the servers of gpu0 share one claim (one device), gpu1's server has its own; each claim asks for MPS
    assert claim_of[r0_a] == claim_of[r0_b] != claim_of["gpu1-vision-a-r1"]
    assert len(claims) == 2
    for claim in claims.values():
        assert claim["spec"]["devices"]["config"][0]["opaque"]["parameters"]["sharing"]["strategy"] == "MPS"


def test_services_select_their_server_and_their_workloads_replicas(gpu_export):
    docs = objects(gpu_export)
    pods = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in of_kind(docs, "Deployment").items()}
    services = of_kind(docs, "Service")
    for name in pods:  # a Service per server selecting exactly that server's pod
        assert [p for p, labels in pods.items() if selects(services[name]["spec"]["selector"], labels)] == [name]
        assert {p["name"]: p["port"] for p in services[name]["spec"]["ports"]} == \
            {"http": 8000, "grpc": 8001, "metrics": 8002}
    wa, wb = f"workload-vision-a-{h6('Vision.A')}", f"workload-vision-a-{h6('vision_a')}"
    assert sorted(set(services) - set(pods)) == sorted([wa, wb])
    chosen = {w: sorted(p for p, labels in pods.items() if selects(services[w]["spec"]["selector"], labels))
              for w in (wa, wb)}
    assert chosen[wa] == sorted([f"gpu0-vision-a-r0-{h6('gpu0-Vision.A-r0')}", "gpu1-vision-a-r1"])  # replicas 0, 1
    assert chosen[wb] == [f"gpu0-vision-a-r0-{h6('gpu0-vision_a-r0')}"]


def test_pod_monitor_scrapes_every_server_on_its_metrics_port(gpu_export):
    docs = objects(gpu_export)
    (monitor,) = of_kind(docs, "PodMonitor").values()
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    for d in of_kind(docs, "Deployment").values():
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert selects(monitor["spec"]["selector"]["matchLabels"], labels)
        assert "metrics" in [p["name"] for p in d["spec"]["template"]["spec"]["containers"][0]["ports"]]


def test_config_maps_hold_the_plans_model_configs(gpu_export, tmp_path):
    docs = objects(gpu_export)
    deployments, maps = of_kind(docs, "Deployment"), of_kind(docs, "ConfigMap")
    name = f"gpu0-vision-a-r0-{h6('gpu0-vision_a-r0')}"
    volume = next(v for v in deployments[name]["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
    expected = (tmp_path / "plan" / "triton_repo" / "gpu0-vision_a-r0" / "vgg19" / "config.pbtxt").read_text()
    assert maps[volume["configMap"]["name"]]["data"] == {"vgg19.config.pbtxt": expected}


def test_cpu_export_requests_the_plans_cores(cpu_export):
    docs = objects(cpu_export)
    deployments = of_kind(docs, "Deployment")
    assert sorted(deployments) == ["host0-ranking-r0", "host0-vision-r0"]
    cores = {"host0-ranking-r0": "2", "host0-vision-r0": "1"}   # 50 % and 25 % of 4 cores
    assert not of_kind(docs, "ResourceClaim")
    for name, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        assert "nodeSelector" not in pod and "resourceClaims" not in pod
        for container in pod["containers"] + pod["initContainers"]:   # Guaranteed QoS: every container
            assert container["resources"]["requests"]["cpu"] == cores[name]
            assert container["resources"]["requests"] == container["resources"]["limits"]
        assert env_of(pod["containers"][0]) == {"OMP_NUM_THREADS": cores[name]}
        # both servers of host0 land on one node
        term = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert all(selects(term["labelSelector"]["matchLabels"], o["spec"]["template"]["metadata"]["labels"])
                   for o in deployments.values())
        # the pvc:// model store is mounted read-only for the init container
        store = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
        assert store["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
        assert pod["initContainers"][0]["command"][4] == "/igniter/model-store/repo"


def test_every_name_is_a_dns_label_and_every_label_a_valid_value(gpu_export, cpu_export):
    import re
    for out in (gpu_export, cpu_export):
        for d in objects(out):
            assert re.fullmatch(DNS1035, d["metadata"]["name"]) and len(d["metadata"]["name"]) <= 63
            labels = dict(d["metadata"]["labels"])
            if d["kind"] == "Deployment":
                labels.update(d["spec"]["template"]["metadata"]["labels"])
            for value in labels.values():
                assert re.fullmatch(LABEL_VALUE, value) and len(value) <= 63


def test_dns_names_map_odd_names_and_hash_only_collisions():
    long = "W" * 64
    names = k8s.dns_names(["My.Model_1", "a_b", "A.b", "9lives", long, "plain"])
    assert names["My.Model_1"] == "my-model-1"
    assert names["plain"] == "plain"
    assert names["9lives"] == "x-9lives"
    assert names["a_b"] == f"a-b-{h6('a_b')}" and names["A.b"] == f"a-b-{h6('A.b')}"
    assert names[long] == "w" * 56 + "-" + h6(long) and len(names[long]) == 63


@settings(max_examples=200, deadline=None)
@given(st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True) |
                st.from_regex(r"[a-z]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True), min_size=1, max_size=12))
def test_dns_names_are_valid_distinct_and_keep_names_that_already_are(raws):
    import re
    names = k8s.dns_names(raws)
    assert set(names) == set(raws)
    assert len(set(names.values())) == len(names)
    assert all(re.fullmatch(DNS1035, n) and len(n) <= 63 for n in names.values())
    if all(re.fullmatch(DNS1035, r) and len(r) <= 63 for r in raws):   # names that already are labels stay
        assert names == {r: r for r in raws}


def test_output_is_byte_deterministic(tmp_path):
    plan = write_plan(tmp_path / "plan", GPU_PLAN, "gpu")
    options = k8s.ExportOptions(gpu_products=(("T4", "Tesla-T4"),))
    k8s.export_kubernetes(plan, tmp_path / "a", options)
    k8s.export_kubernetes(plan, tmp_path / "b", options)
    files_a = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    assert files_a == {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    assert ".igniter-export" in files_a and "kustomization.yaml" in files_a
    listed = yaml.safe_load(files_a["kustomization.yaml"])["resources"]
    assert listed == sorted(n for n in files_a if n.endswith(".yaml") and n != "kustomization.yaml")


# -- the init container's script, run for real with sh ------------------------------------------------------------

def test_fetch_script_copies_model_files_under_the_planned_config(tmp_path):
    store, repo, configs = tmp_path / "store", tmp_path / "repo", tmp_path / "configs"
    (store / "vgg19" / "1").mkdir(parents=True)
    (store / "vgg19" / "1" / "model.onnx").write_bytes(b"weights")
    (store / "vgg19" / "config.pbtxt").write_text("the store's own config")
    configs.mkdir()
    (configs / "vgg19.config.pbtxt").write_text("planned")
    script = k8s.FETCH_SCRIPT.replace(k8s.REPO_DIR, str(repo)).replace(k8s.CONFIG_DIR, str(configs))
    done = subprocess.run(["sh", "-c", script, "fetch-models", str(store), "vgg19"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert (repo / "vgg19" / "1" / "model.onnx").read_bytes() == b"weights"
    assert (repo / "vgg19" / "config.pbtxt").read_text() == "planned"
    missing = subprocess.run(["sh", "-c", script, "fetch-models", str(store), "alexnet"], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 1 and "has no alexnet/" in missing.stderr


# -- writing safely ------------------------------------------------------------------------------------------------

def test_refuses_a_directory_it_did_not_write_and_replaces_its_own(tmp_path):
    plan = write_plan(tmp_path / "plan", CPU_PLAN, "cpu")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="was not written by") as caught:
        k8s.export_kubernetes(plan, foreign, k8s.ExportOptions())
    assert caught.value.fix == "choose a new --out directory (an earlier export's is replaced)"
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is not a directory"):
        k8s.export_kubernetes(plan, tmp_path / "file", k8s.ExportOptions())
    out = tmp_path / "out"
    k8s.export_kubernetes(plan, out, k8s.ExportOptions())
    (out / "stale.yaml").write_text("from an older export")
    k8s.export_kubernetes(plan, out, k8s.ExportOptions())
    assert not (out / "stale.yaml").exists() and (out / "kustomization.yaml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "foreign", "out", "plan"]  # no temp dirs left


def test_a_broken_plan_writes_nothing(tmp_path):
    plan = write_plan(tmp_path / "plan", GPU_PLAN, "gpu")
    (tmp_path / "plan" / "triton_repo" / "gpu0-vision_a-r0" / "vgg19" / "config.pbtxt").write_text("max_batch_size: [")
    with pytest.raises(UserError, match="invalid Triton model config"):
        k8s.export_kubernetes(plan, tmp_path / "out", k8s.ExportOptions(gpu_products=(("T4", "Tesla-T4"),)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan"]


@pytest.mark.parametrize("options, message", [
    (k8s.ExportOptions(namespace="Bad_NS"), "is not a Kubernetes namespace name"),
    (k8s.ExportOptions(model_store="s3://bucket/models"), "is neither pvc:// nor image://"),
    (k8s.ExportOptions(model_store="pvc://models/../etc"), "no '.' or '..' component"),
    (k8s.ExportOptions(gpu_products=(("T4", "not a label"),)), "is not a label value"),
])
def test_bad_options_are_one_line_errors(tmp_path, options, message):
    plan = write_plan(tmp_path / "plan", GPU_PLAN, "gpu")
    with pytest.raises(UserError, match=message) as err:
        k8s.export_kubernetes(plan, tmp_path / "out", options)
    assert "To fix:" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_a_gpu_type_that_is_no_label_value_asks_for_gpu_product(tmp_path):
    plan = write_plan(tmp_path / "plan", [{**GPU_PLAN[0], "type": "V100 (16 GB)"}], "gpu")
    with pytest.raises(UserError, match="--gpu-product 'V100 \\(16 GB\\)=VALUE'"):
        k8s.export_kubernetes(plan, tmp_path / "out", k8s.ExportOptions())


# -- the command, on a plan the provisioner wrote -----------------------------------------------------------------

def test_cli_exports_a_provisioned_plan(tmp_path, monkeypatch):
    monkeypatch.setattr(provision_cli, "_loader", lambda: (lambda path: FakePerfModel()))
    workloads = tmp_path / "w.yaml"
    workloads.write_text("workloads:\n  - {name: w1, model: resnet50, rate: 400, slo_ms: 40}\n"
                         "  - {name: w2, model: alexnet, rate: 500, slo_ms: 15}\n")
    runner = CliRunner()
    made = runner.invoke(cli, ["provision", "--workloads", str(workloads), "--perf-model", str(tmp_path / "m.json"),
                               "--out", str(tmp_path / "plan")])
    assert made.exit_code == 0, made.output
    res = runner.invoke(cli, ["export", "kubernetes", str(tmp_path / "plan"), "--out", str(tmp_path / "k8s"),
                              "--gpu-product", "V100=Tesla-V100-SXM2-16GB", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)   # the note about the default model store goes to stderr
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    planned = {s["name"]: s["share"] for g in plan["gpus"] for s in g["servers"]}
    assert {r["server"]: r["share"] for r in summary["servers"]} == planned
    docs = objects(tmp_path / "k8s")
    for doc in docs:
        if doc["kind"] != "PodMonitor":
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    deployments = of_kind(docs, "Deployment")
    assert len(deployments) == len(planned)
    for d in deployments.values():
        raw = d["metadata"]["annotations"]["igniter.io/server-name"]
        assert env_of(d["spec"]["template"]["spec"]["containers"][0]) == \
            {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": f"{planned[raw]:g}"}
    bad = runner.invoke(cli, ["export", "kubernetes", str(tmp_path / "plan"), "--out", str(tmp_path / "k8s2"),
                              "--namespace", "Not_OK"])
    assert bad.exit_code == 2 and bad.output.startswith("error: ") and bad.output.count("\n") == 1
    assert not (tmp_path / "k8s2").exists()


def test_a_launch_spec_that_disagrees_with_the_plan_is_refused(tmp_path):
    plan = write_plan(tmp_path / "plan", CPU_PLAN, "cpu")
    launch_path = tmp_path / "plan" / "triton_repo" / "host0-vision-r0" / "launch.json"
    launch_path.write_text(json.dumps({**json.loads(launch_path.read_text()), "share": 75.0}))
    with pytest.raises(UserError, match="at 75 %, the plan says 'host0-vision-r0' at 25 %") as caught:
        k8s.export_kubernetes(plan, tmp_path / "out", k8s.ExportOptions())
    assert caught.value.fix == "pass the plan.json written by `igniter provision` (or regenerate it)"


def test_a_server_named_like_a_workload_service_is_refused(tmp_path):
    clash = [{"id": "host0", "type": "AMD EPYC", "servers": [
        {"name": "workload-vision", "workload": "vision", "replica": 0, "model": "convnet", "share": 50.0, "threads": 1}]}]
    plan = write_plan(tmp_path / "plan", clash, "cpu")
    with pytest.raises(UserError, match="two Service objects would both be named 'workload-vision'") as caught:
        k8s.export_kubernetes(plan, tmp_path / "out", k8s.ExportOptions())
    assert caught.value.fix == "rename the server or workload so that their Kubernetes names differ"
    assert not (tmp_path / "out").exists()


def test_a_failed_swap_keeps_the_earlier_export(tmp_path, monkeypatch):
    plan = write_plan(tmp_path / "plan", CPU_PLAN, "cpu")
    out = tmp_path / "out"
    k8s.export_kubernetes(plan, out, k8s.ExportOptions())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_replace = k8s.os.replace

    def failing_replace(src, dst):
        if Path(dst) == out and ".old." not in Path(src).name:   # the new directory moving into place
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(k8s.os, "replace", failing_replace)
    with pytest.raises(OSError):
        k8s.export_kubernetes(plan, out, k8s.ExportOptions(namespace="other"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "plan"]


# -- the exported pod, run on a real local Triton -----------------------------------------------------------------

@pytest.mark.integration
def test_exported_init_script_and_triton_command_serve_on_a_real_triton(demo_repo, tmp_path):
    """What a pod does, done here: the ConfigMap's files as the configs volume, the init container's script with
    the model store, then the Triton container's exact arguments (ports and addresses moved to free local ones,
    the binary and backends taken from the pytriton wheel); both probes must answer 200."""
    from plan_factory import make_plan

    from igniter.triton.server import backend_dir, free_port, pytriton_root, server_env, stop_process_group

    plan = make_plan(tmp_path / "plan", demo_repo, [{"name": "host0-tiny-r0", "model": "tinynet", "batch": 4}])
    k8s.export_kubernetes(plan, tmp_path / "out", k8s.ExportOptions(model_store=f"image://{demo_repo}"))
    docs = objects(tmp_path / "out")
    pod = of_kind(docs, "Deployment")["host0-tiny-r0"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["cpu"] == "1"   # launch.json pins one core (cpus [0])
    configs, repo = tmp_path / "configs", tmp_path / "repo"
    configs.mkdir()
    for key, text in of_kind(docs, "ConfigMap")["host0-tiny-r0-models"]["data"].items():
        (configs / key).write_text(text)
    init = pod["initContainers"][0]["command"]
    script = init[2].replace(k8s.REPO_DIR, str(repo)).replace(k8s.CONFIG_DIR, str(configs))
    done = subprocess.run([init[0], init[1], script, *init[3:]], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    triton = pod["containers"][0]
    http, grpc, metrics = free_port(), free_port(), free_port()
    moved = {f"--model-repository={k8s.REPO_DIR}": f"--model-repository={repo}", "--http-port=8000": f"--http-port={http}",
             "--grpc-port=8001": f"--grpc-port={grpc}", "--metrics-port=8002": f"--metrics-port={metrics}"}
    command = [str(pytriton_root() / "bin" / "tritonserver"), *(moved.get(a, a) for a in triton["command"][1:]),
               f"--backend-directory={backend_dir()}", "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
               "--metrics-address=127.0.0.1"]
    log = open(tmp_path / "triton.log", "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               env=server_env(env_of(triton)), start_new_session=True)
    try:
        def status(path: str) -> int | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}{path}", timeout=2) as response:
                    return response.status
            except OSError:
                return None

        ready = triton["readinessProbe"]["httpGet"]["path"]
        for _ in range(240):   # up to ~2 minutes on a loaded machine; no timing is asserted
            if status(ready) == 200 or process.poll() is not None:
                break
            time.sleep(0.5)
        assert status(ready) == 200, (tmp_path / "triton.log").read_text()[-2000:]
        assert status(triton["livenessProbe"]["httpGet"]["path"]) == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/tinynet/config", timeout=5) as response:
            served = json.loads(response.read())
        assert served["dynamic_batching"]["preferred_batch_size"] == [4]   # the planned batch, from the ConfigMap
    finally:
        stop_process_group(process.pid, timeout_s=20, wait=process.wait)
        log.close()


# -- one server, every field written out by hand ------------------------------------------------------------------

COMMON = {"app.kubernetes.io/name": "triton", "app.kubernetes.io/managed-by": "igniter"}
ONE_CONFIG = CONFIG.format(model="m", batch=4)


def probe(path: str, period: int, failures: int) -> dict:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "failureThreshold": failures,
            "timeoutSeconds": 2}


def triton_container(allow_gpu_metrics: str, env: dict, resources: dict) -> dict:
    return {"name": "triton", "image": k8s.DEFAULT_IMAGE,
            "command": ["tritonserver", "--model-repository=/igniter/repo", "--model-control-mode=explicit",
                        "--load-model=m", "--disable-auto-complete-config", "--strict-readiness=true",
                        "--http-port=8000", "--grpc-port=8001", "--metrics-port=8002",
                        f"--allow-gpu-metrics={allow_gpu_metrics}", "--metrics-config=summary_latencies=true",
                        "--exit-timeout-secs=30", "--log-verbose=0"],
            "env": [env], "resources": resources, "volumeMounts": [{"name": "repo", "mountPath": "/igniter/repo"}],
            "ports": [{"name": "http", "containerPort": 8000, "protocol": "TCP"},
                      {"name": "grpc", "containerPort": 8001, "protocol": "TCP"},
                      {"name": "metrics", "containerPort": 8002, "protocol": "TCP"}],
            "readinessProbe": probe("/v2/health/ready", 5, 3), "livenessProbe": probe("/v2/health/live", 10, 3),
            "startupProbe": probe("/v2/health/live", 10, 60)}


def test_a_one_gpu_server_export_hand_worked(tmp_path):
    plan = write_plan(tmp_path / "plan", [{"id": "gpu0", "type": "T4", "servers": [
        {"name": "srv", "workload": "w", "replica": 1, "model": "m", "share": 40.0}]}], "gpu")
    out = tmp_path / "out"
    summary = k8s.export_kubernetes(plan, out, k8s.ExportOptions(gpu_products=(("T4", "Tesla-T4"),)))
    files = ["configmap-srv-models.yaml", "deployment-srv.yaml", "podmonitor-igniter-triton.yaml",
             "resourceclaim-gpu0-t4.yaml", "service-srv.yaml", "service-workload-w.yaml"]
    assert summary == {"out": str(out), "namespace": None, "image": k8s.DEFAULT_IMAGE,
                       "files": sorted([".igniter-export", "kustomization.yaml", *files]),
                       "servers": [{"server": "srv", "deployment": "srv", "workload": "w", "gpu": "gpu0", "type": "T4",
                                    "node": "nvidia.com/gpu.product=Tesla-T4", "share": 40.0, "cpu": "1"}]}
    docs = {p.name: yaml.safe_load(p.read_text()) for p in out.glob("*.yaml")}
    assert docs["kustomization.yaml"] == {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                                          "resources": files}
    labels = {**COMMON, "igniter.io/server": "srv", "igniter.io/workload": "w", "igniter.io/gpu": "gpu0"}
    annotations = {"igniter.io/server-name": "srv", "igniter.io/workload-name": "w", "igniter.io/replica": "1",
                   "igniter.io/share": "40"}
    deployment = docs["deployment-srv.yaml"]
    digest = deployment["spec"]["template"]["metadata"]["annotations"].pop("igniter.io/config-digest")
    assert len(digest) == 16 and int(digest, 16) >= 0
    requests = {"cpu": "1", "memory": "2Gi"}
    assert deployment == {"apiVersion": "apps/v1", "kind": "Deployment",
                          "metadata": {"name": "srv", "labels": labels, "annotations": annotations}, "spec": {
        "replicas": 1, "selector": {"matchLabels": {"igniter.io/server": "srv"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": {
            "initContainers": [{"name": "fetch-models", "image": k8s.DEFAULT_IMAGE,
                                "command": ["sh", "-c", k8s.FETCH_SCRIPT, "fetch-models", "/models", "m"],
                                "resources": {"requests": requests},
                                "volumeMounts": [{"name": "repo", "mountPath": "/igniter/repo"},
                                                 {"name": "configs", "mountPath": "/igniter/configs",
                                                  "readOnly": True}]}],
            "containers": [triton_container("true", {"name": "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "value": "40"},
                                            {"requests": requests, "claims": [{"name": "gpu"}]})],
            "volumes": [{"name": "repo", "emptyDir": {}}, {"name": "configs", "configMap": {"name": "srv-models"}}],
            "terminationGracePeriodSeconds": 40, "enableServiceLinks": False,
            "nodeSelector": {"nvidia.com/gpu.product": "Tesla-T4"},
            "resourceClaims": [{"name": "gpu", "resourceClaimName": "gpu0-t4"}],
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}}}}
    assert docs["resourceclaim-gpu0-t4.yaml"] == {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": "gpu0-t4", "labels": {**COMMON, "igniter.io/gpu": "gpu0"},
                     "annotations": {"igniter.io/gpu-name": "gpu0"}},
        "spec": {"devices": {
            "requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com"}}],
            "config": [{"requests": ["gpu"], "opaque": {"driver": "gpu.nvidia.com", "parameters": {
                "apiVersion": "resource.nvidia.com/v1beta1", "kind": "GpuConfig",
                "sharing": {"strategy": "MPS", "mpsConfig": {"defaultActiveThreadPercentage": 100}}}}}]}}}
    ports = [{"name": n, "port": p, "targetPort": n, "protocol": "TCP"} for n, p in (("http", 8000), ("grpc", 8001))]
    assert docs["service-srv.yaml"] == {"apiVersion": "v1", "kind": "Service",
                                        "metadata": {"name": "srv", "labels": labels},
                                        "spec": {"selector": {"igniter.io/server": "srv"}, "type": "ClusterIP",
                                                 "ports": ports + [{"name": "metrics", "port": 8002,
                                                                    "targetPort": "metrics", "protocol": "TCP"}]}}
    assert docs["service-workload-w.yaml"] == {"apiVersion": "v1", "kind": "Service",
                                               "metadata": {"name": "workload-w",
                                                            "labels": {**COMMON, "igniter.io/workload": "w"}},
                                               "spec": {"selector": {"igniter.io/workload": "w"}, "type": "ClusterIP",
                                                        "ports": ports}}
    assert docs["configmap-srv-models.yaml"] == {"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": "srv-models", "labels": labels},
                                                 "data": {"m.config.pbtxt": ONE_CONFIG}}
    assert docs["podmonitor-igniter-triton.yaml"] == {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
        "metadata": {"name": "igniter-triton", "labels": COMMON},
        "spec": {"selector": {"matchLabels": COMMON},
                 "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
                 "podTargetLabels": ["igniter.io/server", "igniter.io/workload", "igniter.io/gpu"]}}
    assert json.loads((out / ".igniter-export").read_text()) == {
        "format": "igniter-kubernetes-export", "version": 1, "files": sorted(["kustomization.yaml", *files]),
        "plan_sha256": hashlib.sha256(plan.read_bytes()).hexdigest()}
    # a multi-line config is a literal block, line for line as in the plan
    text = (out / "configmap-srv-models.yaml").read_text()
    assert "  m.config.pbtxt: |\n    name: \"m\"\n    max_batch_size: 4\n    dynamic_batching {\n" in text


def test_a_one_cpu_server_export_hand_worked(tmp_path):
    plan = write_plan(tmp_path / "plan", [{"id": "host0", "type": "AMD EPYC", "servers": [
        {"name": "srv", "workload": "w", "replica": 0, "model": "m", "share": 50.0, "threads": 2}]}], "cpu")
    out = tmp_path / "out"
    summary = k8s.export_kubernetes(plan, out, k8s.ExportOptions(model_store="pvc://models/repo", namespace="ns"))
    assert summary["servers"] == [{"server": "srv", "deployment": "srv", "workload": "w", "gpu": "host0",
                                   "type": "AMD EPYC", "node": "any (CPU)", "share": 50.0, "cpu": "2"}]
    assert summary["namespace"] == "ns" and "resourceclaim-host0-amd-epyc.yaml" not in summary["files"]
    deployment = yaml.safe_load((out / "deployment-srv.yaml").read_text())
    assert deployment["metadata"]["namespace"] == "ns"
    pod = deployment["spec"]["template"]["spec"]
    cores = {"cpu": "2", "memory": "2Gi"}
    assert pod["containers"] == [triton_container("false", {"name": "OMP_NUM_THREADS", "value": "2"},
                                                  {"requests": cores, "limits": cores})]
    assert pod["initContainers"][0]["command"][4:] == ["/igniter/model-store/repo", "m"]
    assert pod["initContainers"][0]["resources"] == {"requests": cores, "limits": cores}
    assert pod["initContainers"][0]["volumeMounts"][2] == {"name": "model-store", "mountPath": "/igniter/model-store",
                                                           "readOnly": True}
    assert pod["volumes"][2] == {"name": "model-store", "persistentVolumeClaim": {"claimName": "models",
                                                                                   "readOnly": True}}
    assert pod["affinity"] == {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"igniter.io/gpu": "host0"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    assert not {"nodeSelector", "resourceClaims", "tolerations"} & set(pod)
    assert yaml.safe_load((out / "kustomization.yaml").read_text())["namespace"] == "ns"


def test_a_missing_model_config_is_named(tmp_path):
    plan = write_plan(tmp_path / "plan", CPU_PLAN, "cpu")
    config = tmp_path / "plan" / "triton_repo" / "host0-vision-r0" / "convnet" / "config.pbtxt"
    config.unlink()
    with pytest.raises(UserError) as caught:
        k8s.export_kubernetes(plan, tmp_path / "out", k8s.ExportOptions())
    assert caught.value.what == f"model config {config} does not exist"


@pytest.mark.parametrize("gpus, options, what, fix", [
    (GPU_PLAN, k8s.ExportOptions(image="my image"), "--image 'my image' is not an image reference",
     "give e.g. nvcr.io/nvidia/tritonserver:24.10-py3"),
    (GPU_PLAN, k8s.ExportOptions(gpu_products=(("T4", "not a label"),)),
     "--gpu-product T4=not a label: 'not a label' is not a label value",
     "give the node's nvidia.com/gpu.product value, e.g. Tesla-V100-SXM2-16GB"),
    ([], k8s.ExportOptions(), None, "provision at least one workload"),
])
def test_option_and_plan_refusals_hand_worked(tmp_path, gpus, options, what, fix):
    (tmp_path / "plan").mkdir()
    plan = write_plan(tmp_path / "plan", gpus, "gpu")  # no GPUs at all: a plan of nothing
    with pytest.raises(UserError) as caught:
        k8s.export_kubernetes(plan, tmp_path / "out", options)
    assert caught.value.what == (what or f"plan {plan} has no servers") and caught.value.fix == fix


def test_model_store_paths_hand_worked():
    assert k8s.parse_model_store("pvc://models") == k8s.ModelStore(
        "/igniter/model-store", {"name": "model-store", "persistentVolumeClaim": {"claimName": "models",
                                                                                  "readOnly": True}})
    assert k8s.parse_model_store("pvc://models/REPOX/").path == "/igniter/model-store/REPOX"
    assert k8s.parse_model_store("image:///X../models/") == k8s.ModelStore("/X../models")  # "X.." is a name
    with pytest.raises(UserError) as caught:
        k8s.parse_model_store("pvc://Bad_Claim/x")
    assert caught.value.what == "--model-store 'pvc://Bad_Claim/x': 'Bad_Claim' is not a PersistentVolumeClaim name"
    assert caught.value.fix == "give pvc://CLAIM[/SUBPATH] or image:///ABSOLUTE/PATH of a model repository"


def test_names_and_label_values_of_exactly_63_characters_are_kept():
    assert k8s.dns_names(["a" * 63]) == {"a" * 63: "a" * 63}
    assert k8s.dns_names(["a" * 64]) == {"a" * 64: "a" * 56 + "-" + h6("a" * 64)}
    options = k8s.ExportOptions(gpu_products=(("T4", "T" * 63),))
    assert k8s.gpu_product("T4", options) == "T" * 63
    with pytest.raises(UserError):
        k8s.gpu_product("T4", k8s.ExportOptions(gpu_products=(("T4", "T" * 64),)))


def test_a_name_that_equals_another_names_hashed_form_is_refused():
    # "B.x" and "b_x" both map to "b-x", so each gets a hash; a third name is literally the first one's result
    raws = ["B.x", "b_x", f"b-x-{h6('B.x')}"]
    with pytest.raises(UserError) as caught:
        k8s.dns_names(raws)
    assert caught.value.what == f"names b-x-{h6('B.x')} are used twice after mapping to Kubernetes names"
    assert caught.value.fix == "rename one of the workloads whose names differ only in case, '.' or '_'"


def test_the_config_digest_does_not_depend_on_the_order_models_are_listed(tmp_path):
    def digest(configs: dict) -> str:
        server = k8s.PlannedServer("s", "w", 0, "host0", "cpu", False, 50.0, {}, 1, configs)
        names = k8s.Names.of([server])
        deployment = k8s._deployment(server, names, k8s.ExportOptions(), k8s.parse_model_store("image:///models"))
        return deployment["spec"]["template"]["metadata"]["annotations"]["igniter.io/config-digest"]
    assert digest({"a": "x", "b": "y"}) == digest({"b": "y", "a": "x"}) != digest({"a": "y", "b": "x"})


def test_a_long_one_line_config_is_never_folded(tmp_path):
    plan = write_plan(tmp_path / "plan", CPU_PLAN, "cpu")
    one_line = 'name: "convnet" max_batch_size: 4 dynamic_batching { preferred_batch_size: 4 max_queue_delay_microseconds: 100 }'
    (tmp_path / "plan" / "triton_repo" / "host0-vision-r0" / "convnet" / "config.pbtxt").write_text(one_line)
    k8s.export_kubernetes(plan, tmp_path / "out", k8s.ExportOptions())
    text = (tmp_path / "out" / "configmap-host0-vision-r0-models.yaml").read_text()
    assert f"  convnet.config.pbtxt: '{one_line}'\n" in text
