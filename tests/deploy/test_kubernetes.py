"""deploy/k8s and deploy/kserve: the Kustomize base and its 2/4/8-vCPU overlays render
(`kubectl kustomize`) into objects the Kubernetes schemas accept (kubernetes-validate,
strict, offline), consistent with what Conveyor does; the KServe ServingRuntime and
InferenceService are valid against KServe's own CRD schemas (tests/deploy/kserve)."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from conveyor.repository.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KSERVE = ROOT / "deploy" / "kserve"
SCHEMAS = Path(__file__).parent / "kserve"
KUBERNETES_VERSION = "1.30.0"
OVERLAYS = {"cpu-2": 2, "cpu-4": 4, "cpu-8": 8}


def render(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing (scripts/test.sh installs Debian's kubernetes-client)"
    out = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in docs}


@pytest.mark.parametrize("directory", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_renders_into_valid_kubernetes_objects(directory: str) -> None:
    docs = render(K8S / directory)
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
        "ServiceMonitor",
    ]
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":  # a CRD (Prometheus Operator): no core schema
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_pod_is_what_conveyor_needs() -> None:
    objects = by_kind(render(K8S / "base"))
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    # the grace period covers the preStop pause and the whole drain
    assert pod["terminationGracePeriodSeconds"] > pre_stop + float(
        env["CONVEYOR_EXIT_TIMEOUT_SECS"]
    )
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # slow loads
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert container["securityContext"]["readOnlyRootFilesystem"] and "/tmp" in mounts
    assert pod["securityContext"]["runAsNonRoot"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    service_ports = {p["name"] for p in objects["Service"]["spec"]["ports"]}
    assert objects["ServiceMonitor"]["spec"]["endpoints"][0]["port"] in service_ports
    labels = objects["Service"]["metadata"]["labels"]
    assert objects["ServiceMonitor"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    metric = objects["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]["name"]
    prometheus = (ROOT / "src" / "conveyor" / "metrics" / "prometheus.py").read_text()
    assert f'"{metric}"' in prometheus  # a metric Conveyor exports


@pytest.mark.parametrize(("overlay", "vcpus"), OVERLAYS.items())
def test_each_overlay_sizes_instances_and_threads_to_its_node(overlay: str, vcpus: int) -> None:
    objects = by_kind(render(K8S / "overlays" / overlay))
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["cpu"] == str(vcpus)
    assert container["resources"]["requests"] == container["resources"]["limits"]  # Guaranteed
    mount = next(m for m in container["volumeMounts"] if m["mountPath"].endswith("config.yaml"))
    config_map = objects["ConfigMap"]
    assert (
        objects["Deployment"]["spec"]["template"]["spec"]["volumes"][1]["configMap"]["name"]
        == config_map["metadata"]["name"]
    )
    config = parse_config(yaml.safe_load(config_map["data"][mount["subPath"]]), "resnet50")
    threads = int(config.parameters["intra_op_thread_count"])
    assert config.instance_count * threads == vcpus  # every core, none oversubscribed


def _strict(doc: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the schema does not know (jsonschema allows them; Kubernetes would drop
    them silently): a typo in a manifest is an error here."""
    if isinstance(doc, dict) and "properties" in schema:
        if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("additionalProperties"):
            return []
        unknown = [f"{path}.{k}" for k in doc if k not in schema["properties"]]
        return unknown + [
            u
            for k, v in doc.items()
            if k in schema["properties"]
            for u in _strict(v, schema["properties"][k], f"{path}.{k}")
        ]
    if isinstance(doc, list) and isinstance(schema.get("items"), dict):
        return [u for i, v in enumerate(doc) for u in _strict(v, schema["items"], f"{path}[{i}]")]
    return []


@pytest.mark.parametrize(
    ("manifest", "crd"),
    [("servingruntime.yaml", "servingruntimes"), ("inferenceservice.yaml", "inferenceservices")],
)
def test_kserve_manifests_fit_kserves_crds(manifest: str, crd: str) -> None:
    doc = yaml.safe_load((KSERVE / manifest).read_text())
    with gzip.open(SCHEMAS / f"{crd}.schema.json.gz") as f:
        schemas = json.load(f)
    group, version = doc["apiVersion"].split("/")
    assert group == schemas["group"] and doc["kind"] == schemas["kind"]
    schema = schemas["versions"][version]
    jsonschema.Draft7Validator(schema).validate(doc)
    assert _strict(doc, schema) == []


def test_the_serving_runtime_serves_what_kserve_mounts() -> None:
    runtime = yaml.safe_load((KSERVE / "servingruntime.yaml").read_text())
    spec = runtime["spec"]
    assert {"v2", "grpc-v2"} <= set(spec["protocolVersions"])
    formats = {f["name"] for f in spec["supportedModelFormats"]}
    assert {"onnx", "pytorch", "tensorflow", "openvino", "triton", "python"} <= formats
    (container,) = spec["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CONVEYOR_REPOSITORY"] == "/mnt/models"
    args = container["args"]
    assert args[args.index("--grpc-port") + 1] == str(container["ports"][0]["containerPort"])
    assert args[args.index("--http-port") + 1] == "8080" == env["CONVEYOR_HTTP_PORT"]
    service = yaml.safe_load((KSERVE / "inferenceservice.yaml").read_text())
    assert service["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]


def test_a_misspelt_field_is_caught() -> None:
    doc = yaml.safe_load((KSERVE / "servingruntime.yaml").read_text())
    doc["spec"]["protocolVersion"] = doc["spec"].pop("protocolVersions")
    doc["spec"]["containers"][0]["arg"] = ["x"]
    with gzip.open(SCHEMAS / "servingruntimes.schema.json.gz") as f:
        schema = json.load(f)["versions"]["v1alpha1"]
    assert _strict(doc, schema) == [".spec.protocolVersion", ".spec.containers[0].arg"]
