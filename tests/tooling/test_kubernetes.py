"""``modelfn render --target kubernetes``: the Knative Services and KServe InferenceServices, checked offline.

Three checkers, each the projects' own types, none of them a cluster:
- Knative's API types, as ``@kubernetes-models/knative`` generates them from knative.dev/serving (Node);
- KServe's, as its Python SDK carries them, with the Kubernetes client's strict models inside (the
  kserve environment, .tools/kserve);
- the core API's pod spec, strictly, with ``kubernetes-validate`` (unknown fields are errors), for
  what Knative and KServe run in each pod.
Each is shown to refuse a broken manifest, so a pass means something.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from helpers import ROOT

from modelfn.cli import cli
from modelfn.contract import Deploy
from modelfn.tooling.kubernetes import knative_service
from modelfn.tooling.plans import plan

TOOLS = ROOT / ".tools"
KUBERNETES = ROOT / "infra" / "kubernetes"
#: Fields of Knative's RevisionSpec beside the core PodSpec's (knative.dev/serving/pkg/apis/serving/v1).
KNATIVE_FIELDS = ("containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds", "idleTimeoutSeconds")
#: Fields of KServe's predictor beside the pod's (its ComponentExtensionSpec).
KSERVE_FIELDS = ("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "containerConcurrency", "timeout")


def documents() -> list[dict[str, Any]]:
    return [doc for path in sorted(KUBERNETES.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in yaml.safe_load_all(path.read_text()) if doc]  # fmt: skip


def knative_errors(services: list[dict[str, Any]]) -> list[list[str]]:
    node = shutil.which("node")
    if node is None or not (TOOLS / "node_modules" / "@kubernetes-models" / "knative").is_dir():
        pytest.skip("needs Node.js and @kubernetes-models/knative (make tools)")
    script = (Path(__file__).parents[1] / "infra" / "knative_check.mjs").read_text()
    # Run from .tools/, so that the module resolves its packages there.
    result = subprocess.run([node, "--input-type=module", "-e", script], input=json.dumps(services), cwd=TOOLS,
                            capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    return json.loads(result.stdout)


def kserve_errors(services: list[dict[str, Any]]) -> list[list[str]]:
    python = TOOLS / "kserve" / "bin" / "python"
    if not python.exists():
        pytest.skip("needs the kserve environment (make tools)")
    script = Path(__file__).parents[1] / "infra" / "kserve_check.py"
    result = subprocess.run([str(python), str(script)], input=json.dumps(services), capture_output=True, text=True,
                            timeout=120, check=True)  # fmt: skip
    return json.loads(result.stdout)


def pod_errors(spec: dict[str, Any], own: tuple[str, ...]) -> str | None:
    """The pod spec's first error against the core API (strict), once the platform's own fields are set aside."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"},
           "spec": {key: value for key, value in spec.items() if key not in own}}  # fmt: skip
    try:
        kubernetes_validate.validate(pod, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as error:
        return error.message
    return None


def test_every_http_function_is_a_knative_service_and_an_inference_service() -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in documents()}
    folders = {
        "cancer",
        "chat",
        "churn",
        "digits",
        "digits-ensemble",
        "digits-keras",
        "digits-torch",
        "embed",
        "helpdesk",
    }
    assert kinds == {("Service", f) for f in folders} | {("InferenceService", f) for f in folders} | {
        ("Service", "digits-grpc")  # deploy.grpc
    }
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(f"{f}.yaml" for f in folders)
    assert {image["name"] for image in kustomization["images"]} == {f"modelfn-{f}" for f in folders}


def test_the_manifests_follow_the_contracts() -> None:
    digits = {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents()}
    deploy = next(p for p in plan(ROOT / "functions") if p.name == "digits").deploy
    rest = digits[("Service", "digits")]["spec"]["template"]
    annotations = rest["metadata"]["annotations"]
    assert (annotations["autoscaling.knative.dev/min-scale"], annotations["autoscaling.knative.dev/max-scale"]) == (
        str(deploy.min_instances), str(deploy.max_instances)
    )  # fmt: skip
    assert annotations["autoscaling.knative.dev/target"] == str(deploy.concurrency)
    assert (rest["spec"]["containerConcurrency"], rest["spec"]["timeoutSeconds"]) == (
        deploy.concurrency,
        deploy.timeout_s,
    )
    [container] = rest["spec"]["containers"]
    assert container["image"] == "modelfn-digits" and container["ports"] == [{"name": "http1", "containerPort": 8080}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    memory = f"{deploy.memory_mb}Mi"
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": memory},
        "limits": {"cpu": "1", "memory": memory},
    }
    environment = {e["name"]: e for e in container["env"]}
    assert environment["MODELFN_REGISTRY"]["valueFrom"] == {"configMapKeyRef": {"name": "modelfn", "key": "registry"}}
    assert environment["MODELFN_MODEL"]["value"] == "$(MODELFN_REGISTRY)/digits@prod"
    assert environment["MODELFN_API_KEYS_FILE"]["value"] == "/var/run/secrets/modelfn/keys"
    assert rest["spec"]["volumes"] == [{"name": "api-keys", "secret": {"secretName": "modelfn-api-keys"}}]
    assert container["envFrom"] == [{"secretRef": {"name": "modelfn-store-credentials", "optional": True}}]

    grpc = digits[("Service", "digits-grpc")]["spec"]["template"]["spec"]["containers"][0]
    assert grpc["ports"] == [{"name": "h2c", "containerPort": 8080}] and grpc["image"] == "modelfn-digits"
    assert grpc["readinessProbe"]["grpc"] == {"port": 8080}
    assert {"name": "MODELFN_SERVE", "value": "grpc"} in grpc["env"]

    predictor = digits[("InferenceService", "digits")]["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["scaleTarget"]) == (
        deploy.min_instances, deploy.max_instances, deploy.concurrency
    )  # fmt: skip
    assert predictor["containers"][0]["name"] == "kserve-container"
    assert predictor["containers"][0]["image"] == "modelfn-digits"


def test_no_secret_is_inline() -> None:
    for doc in documents():
        text = json.dumps(doc)
        assert "mfn_" not in text and "BEGIN PRIVATE KEY" not in text
        spec = doc["spec"].get("predictor") or doc["spec"]["template"]["spec"]
        for container in spec["containers"]:
            for variable in container["env"]:
                sensitive = any(word in variable["name"] for word in ("SECRET", "TOKEN", "PASSWORD", "CREDENTIAL"))
                assert not (sensitive and "value" in variable), variable
                if variable["name"] == "MODELFN_API_KEYS_FILE":
                    assert variable["value"].startswith("/var/run/secrets/")  # a mounted Secret, not keys


def test_the_manifests_validate_against_the_projects_schemas() -> None:
    docs = documents()
    services = [doc for doc in docs if doc["kind"] == "Service"]
    inference = [doc for doc in docs if doc["kind"] == "InferenceService"]
    assert knative_errors(services) == [[] for _ in services]
    assert kserve_errors(inference) == [[] for _ in inference]
    for doc in services:
        assert pod_errors(doc["spec"]["template"]["spec"], KNATIVE_FIELDS) is None, doc["metadata"]["name"]
    for doc in inference:
        assert pod_errors(doc["spec"]["predictor"], KSERVE_FIELDS) is None, doc["metadata"]["name"]

    # Each checker refuses a broken copy: a value of the wrong type, a misspelt or missing field.
    service, isvc = copy.deepcopy(services[0]), copy.deepcopy(inference[0])
    service["spec"]["template"]["spec"]["containerConcurrency"] = "8"
    del service["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"]
    [knative] = knative_errors([service])
    assert any("containerConcurrency must be integer" in e for e in knative), knative
    assert any("httpGet must have required property port" in e for e in knative), knative
    isvc["spec"]["predictor"]["minReplica"] = 0
    del isvc["spec"]["predictor"]["containers"][0]["name"]
    [kserve] = kserve_errors([isvc])
    assert ".spec.predictor: 'minReplica' is not a field of V1beta1PredictorSpec" in kserve
    assert ".spec.predictor.containers[0].name: Field required" in kserve
    container = copy.deepcopy(services[0]["spec"]["template"]["spec"])
    container["containers"][0]["readinesProbe"] = container["containers"][0].pop("readinessProbe")
    assert "'readinesProbe' was unexpected" in pod_errors(container, KNATIVE_FIELDS)


def test_fractional_cpus_and_a_group_without_a_registry_model() -> None:
    each = next(p for p in plan(ROOT / "functions") if p.name == "digits-ensemble")
    assert each.registry_model is None  # a several-model function serves its bundle
    names = [e["name"] for e in knative_service(each, "http")["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert "MODELFN_MODEL" not in names and "MODELFN_REGISTRY" not in names
    from dataclasses import replace

    half = replace(each, deploy=Deploy(cpu=0.5, memory_mb=512))
    resources = knative_service(half, "http")["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "500m", "memory": "512Mi"}


def test_render_check_sees_a_stale_or_orphaned_manifest(tmp_path: Path) -> None:
    root = tmp_path / "project"
    for name in ("digits", "cancer"):
        shutil.copytree(
            ROOT / "functions" / name, root / "functions" / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    runner = CliRunner()
    assert runner.invoke(cli, ["render", "--root", str(root), "--target", "kubernetes"]).exit_code == 0
    assert sorted(p.name for p in (root / "infra" / "kubernetes").iterdir()) == [
        "cancer.yaml", "digits.yaml", "kustomization.yaml"
    ]  # fmt: skip
    assert runner.invoke(cli, ["render", "--root", str(root), "--target", "kubernetes", "--check"]).exit_code == 0
    shutil.rmtree(root / "functions" / "cancer")
    result = runner.invoke(cli, ["render", "--root", str(root), "--target", "kubernetes", "--check"])
    assert result.exit_code == 1 and "infra/kubernetes/cancer.yaml" in result.output
    assert runner.invoke(cli, ["render", "--root", str(root), "--target", "kubernetes"]).exit_code == 0
    assert not (root / "infra" / "kubernetes" / "cancer.yaml").exists()
