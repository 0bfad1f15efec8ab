"""``modelfn render --target kubernetes``: each HTTP function as a Knative Service and a KServe InferenceService.

Both run the function's Cloud Run image (``modelfn build --target cloudrun``), unchanged: the same
server, routes, probes and graceful shutdown as on Cloud Run. Written per function folder to
``infra/kubernetes/<folder>.yaml``, with ``kustomization.yaml`` naming every file and every image:

- **Knative Service** ``<folder>``: scale-to-zero bounds and the concurrency target from ``deploy``
  (``min_instances``, ``max_instances``, ``concurrency`` as target and hard limit), the request
  timeout, readiness and liveness probes on the health routes, requests and limits from
  ``memory_mb`` and ``cpu``; with ``deploy.grpc`` also ``<folder>-grpc``, the same image serving
  gRPC on an ``h2c`` port, probed by the standard gRPC health service.
- **KServe InferenceService** ``<folder>``: a custom predictor (``kserve-container``) with the same
  image, bounds, probes and resources.

Nothing secret is inline: the registry comes from the ConfigMap ``modelfn`` (key ``registry``,
e.g. ``gs://bucket/models``) and the model reference is built from it in the environment
(``$(MODELFN_REGISTRY)/<model>@<alias>``); API keys are the Secret ``modelfn-api-keys`` mounted as a
file (``MODELFN_API_KEYS_FILE``), which the pod needs to start (no keys file, no pod: it fails
closed); object store credentials, where workload identity does not give them, come from the
optional Secret ``modelfn-store-credentials`` as environment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from modelfn.tooling.plans import FunctionPlan

FOLDER = "infra/kubernetes"
PORT = 8080
KEYS_MOUNT = "/var/run/secrets/modelfn"
#: The image every manifest names; kustomization.yaml maps it to the pushed one (``images:``).
IMAGE_PREFIX = "modelfn-"


def manifests(plans: list[FunctionPlan], header: str) -> dict[str, str]:
    """``{path: text}``: one multi-document file per HTTP function, and the kustomization."""
    files: dict[str, str] = {}
    served = [each for each in plans if each.rest]
    grpc = {each.folder for each in plans if each.serve == "grpc"}
    for each in served:
        documents = [knative_service(each, "http"), *([knative_service(each, "grpc")] if each.folder in grpc else [])]
        documents.append(inference_service(each))
        files[f"{FOLDER}/{each.folder}.yaml"] = f"# {header}\n" + yaml.safe_dump_all(
            documents, sort_keys=False, width=110, explicit_start=True
        )
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f"{each.folder}.yaml" for each in served],
        # Point each at the pushed image: kustomize edit set image modelfn-digits=REGION-docker.pkg.dev/...:TAG
        "images": [{"name": image(each), "newName": image(each), "newTag": "latest"} for each in served],
    }
    files[f"{FOLDER}/kustomization.yaml"] = f"# {header}\n" + yaml.safe_dump(kustomization, sort_keys=False)
    return files


def image(each: FunctionPlan) -> str:
    return IMAGE_PREFIX + each.folder


def labels(each: FunctionPlan) -> dict[str, str]:
    return {"app.kubernetes.io/name": each.folder, "app.kubernetes.io/managed-by": "modelfn"}


def knative_service(each: FunctionPlan, serve: str) -> dict[str, Any]:
    """A ``serving.knative.dev/v1`` Service of the function, speaking ``serve`` (http or grpc) on its port."""
    d = each.deploy
    name = each.folder if serve == "http" else f"{each.folder}-grpc"
    annotations = {
        "autoscaling.knative.dev/min-scale": str(d.min_instances),
        "autoscaling.knative.dev/max-scale": str(d.max_instances),
        "autoscaling.knative.dev/metric": "concurrency",
        "autoscaling.knative.dev/target": str(d.concurrency),
    }
    spec = {
        "containerConcurrency": d.concurrency,
        "timeoutSeconds": d.timeout_s,
        "containers": [container(each, "modelfn", serve)],
        "volumes": [volume()],
    }
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(each)},
        "spec": {"template": {"metadata": {"labels": labels(each), "annotations": annotations}, "spec": spec}},
    }


def inference_service(each: FunctionPlan) -> dict[str, Any]:
    """A ``serving.kserve.io/v1beta1`` InferenceService whose custom predictor is the function's image."""
    d = each.deploy
    predictor = {
        "minReplicas": d.min_instances,
        "maxReplicas": d.max_instances,
        "scaleMetric": "concurrency",
        "scaleTarget": d.concurrency,
        "containerConcurrency": d.concurrency,
        "timeout": d.timeout_s,
        # KServe names the custom predictor's container so (its own agent sidecars look for it).
        "containers": [container(each, "kserve-container", "http")],
        "volumes": [volume()],
    }
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": each.folder, "labels": labels(each)},
        "spec": {"predictor": predictor},
    }


def container(each: FunctionPlan, name: str, serve: str) -> dict[str, Any]:
    d = each.deploy
    cpu = str(int(d.cpu)) if float(d.cpu).is_integer() else f"{round(d.cpu * 1000)}m"
    environment: list[dict[str, Any]] = [
        {"name": "MODELFN_LOG_LEVEL", "value": "INFO"},
        # A server thread per request the platform may send at once (as on Cloud Run).
        {"name": "THREADS", "value": str(d.concurrency)},
        {"name": "MODELFN_API_KEYS_FILE", "value": f"{KEYS_MOUNT}/keys"},
    ]
    if each.registry_model:
        environment = [
            {"name": "MODELFN_REGISTRY", "valueFrom": {"configMapKeyRef": {"name": "modelfn", "key": "registry"}}},
            {"name": "MODELFN_MODEL", "value": f"$(MODELFN_REGISTRY)/{each.registry_model}@{d.alias}"},
            *environment,
        ]
    if serve == "grpc":
        environment.append({"name": "MODELFN_SERVE", "value": "grpc"})
        probes = {
            "readinessProbe": {"grpc": {"port": PORT}, "periodSeconds": 2, "failureThreshold": 3},
            "livenessProbe": {"grpc": {"port": PORT}, "periodSeconds": 10, "failureThreshold": 3},
        }
    else:
        probes = {
            "readinessProbe": {
                "httpGet": {"path": "/v2/health/ready", "port": PORT},
                "periodSeconds": 2,
                "failureThreshold": 3,
            },
            "livenessProbe": {
                "httpGet": {"path": "/v2/health/live", "port": PORT},
                "periodSeconds": 10,
                "failureThreshold": 3,
            },
        }
    return {
        "name": name,
        "image": image(each),
        # h2c: HTTP/2 cleartext end to end, as gRPC needs; http1 for the REST routes.
        "ports": [{"name": "h2c" if serve == "grpc" else "http1", "containerPort": PORT}],
        "env": environment,
        "envFrom": [{"secretRef": {"name": "modelfn-store-credentials", "optional": True}}],
        "resources": {
            "requests": {"cpu": cpu, "memory": f"{d.memory_mb}Mi"},
            "limits": {"cpu": cpu, "memory": f"{d.memory_mb}Mi"},
        },
        **probes,
        "volumeMounts": [{"name": "api-keys", "mountPath": KEYS_MOUNT, "readOnly": True}],
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def volume() -> dict[str, Any]:
    return {"name": "api-keys", "secret": {"secretName": "modelfn-api-keys"}}
