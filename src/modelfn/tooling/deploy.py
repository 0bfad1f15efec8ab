"""``modelfn deploy gcp|aws``: one command from a project to live endpoints, as a plan of steps.

The plan is data (:class:`Step`), made by a pure function of the project's function plans and the
options, so ``--dry-run`` prints exactly what a real deploy runs, and the tests read it as data:

1. render the deployment files from the contracts (``modelfn render``), then build each function's
   bundle (``modelfn build``: Lambda or Cloud Functions zips, and the container build contexts of
   the functions packaged as images);
2. write the Terraform root's variables (``infra/<cloud>/deploy.auto.tfvars.json``);
3. ``terraform init`` and ``apply`` (a dry run: ``init -backend=false`` and ``validate``, which need
   no credentials and no network but the providers);
4. push each model to the registry the root made and point its alias at it;
5. read the root's outputs and print each endpoint with a ``curl`` that works.

Image builds (``docker build`` and ``push``) run where the project packages a function as an image
and an image repository is given.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelfn.errors import ContractError
from modelfn.tooling.plans import FunctionPlan, plan

CLOUDS = ("aws", "gcp")
#: The zip target of each cloud, and the image target of its functions packaged as images.
ZIP_TARGET = {"aws": "lambda", "gcp": "gcf"}
IMAGE_TARGET = {"aws": "lambda-image", "gcp": "cloudrun"}


@dataclass(frozen=True)
class Step:
    """One thing a deploy does: a command (``argv``, run in the project) or a file it writes."""

    what: str
    argv: tuple[str, ...] = ()
    #: For a step that writes a file: its path in the project, and its text.
    writes: tuple[str, str] | None = None
    #: Whether a dry run does it too (builds, the root's variables, ``init -backend=false``, ``validate``).
    dry: bool = False

    def line(self) -> str:
        import shlex

        return f"write {self.writes[0]}" if self.writes else shlex.join(self.argv)


@dataclass(frozen=True)
class Options:
    cloud: str
    bucket: str
    region: str
    dry_run: bool
    #: Google Cloud: the project the functions go into.
    project_id: str = ""
    #: Where Terraform keeps its state (a bucket made once: the backend's ``bucket``); not for a dry run.
    state_bucket: str = ""
    #: Where images are pushed (``<region>-docker.pkg.dev/<project>/<repo>`` or an ECR registry).
    image_repository: str = ""
    tag: str = "latest"
    #: AWS: ``terraform`` (``infra/aws``) or ``serverless`` (the project's ``serverless.yml``, with osls).
    via: str = "terraform"


def deploy_plan(root: Path, options: Options) -> list[Step]:
    """Every step of deploying the project at ``root`` to ``options.cloud``; raise when it could not deploy."""
    if options.cloud not in CLOUDS:
        raise ContractError(f"unknown cloud {options.cloud!r}; choose aws or gcp")
    if options.via == "serverless" and options.cloud != "aws":
        raise ContractError("--via serverless deploys to AWS (serverless.yml); Google Cloud deploys with Terraform")
    plans = plan(Path(root) / "functions")
    cloud = options.cloud
    served = [each for each in plans if each.serve == "http" or cloud == "gcp"]
    folders = {each.folder: each for each in served if each.trigger is None}
    modelfn = (sys.executable, "-m", "modelfn")
    # The root's functions.auto.tfvars.json and the other generated files, from the contracts as they are now.
    steps: list[Step] = [Step("render the deployment files", (*modelfn, "render", "--target", cloud), dry=True)]
    images: dict[str, str] = {}
    for folder, each in sorted(folders.items()):
        target = IMAGE_TARGET[cloud] if each.package == "image" else ZIP_TARGET[cloud]
        store = ("--store", "s3" if cloud == "aws" else "gcs")
        steps.append(Step(f"build {folder} for {target}", (*modelfn, "build", f"functions/{folder}", "--target",
                                                            target, *store), dry=True))  # fmt: skip
        if each.package == "image":
            repository = options.image_repository or "<image-repository>"
            tag = f"{repository}/{folder}:{options.tag}"
            images.update({p.name: tag for p in plans if p.folder == folder and p.package == "image"})
            if not options.dry_run and not options.image_repository:
                raise ContractError(
                    f"functions/{folder} is packaged as an image: pass --image-repository (where docker pushes it)"
                )
            steps.append(Step(f"build the image of {folder}", ("docker", "build", "--tag", tag,
                                                                f"dist/{folder}-{target}")))  # fmt: skip
            steps.append(Step(f"push the image of {folder}", ("docker", "push", tag)))
    if options.via == "serverless":
        params = [
            f"--param=bucket={options.bucket}",
            *(f"--param={n}-image={tag}" for n, tag in sorted(images.items())),
        ]
        osls = ("npx", "osls", "deploy", "--stage", "prod", "--region", options.region, *params)
        steps.append(Step("serverless deploy (osls)", osls))
        return steps + _registry_steps(folders, cloud, options, modelfn)
    variables: dict[str, Any] = {"bucket": options.bucket, "region": options.region}
    if cloud == "gcp":
        variables["project_id"] = options.project_id or "<project-id>"
    if images:
        variables["images"] = images
    infra = f"infra/{cloud}"
    written = (f"{infra}/deploy.auto.tfvars.json", json.dumps(variables, indent=2) + "\n")
    steps.append(Step(f"the root's variables ({infra})", writes=written, dry=True))
    terraform = ("terraform", f"-chdir={infra}")
    if options.dry_run:
        steps.append(
            Step("terraform init, no backend", (*terraform, "init", "-backend=false", "-input=false"), dry=True)
        )
        steps.append(Step("terraform validate", (*terraform, "validate", "-no-color"), dry=True))
    state = options.state_bucket or "<state-bucket>"
    backend = [f"-backend-config=bucket={state}"] + (
        [f"-backend-config=region={options.region}"] if cloud == "aws" else []
    )
    steps.append(Step("terraform init", (*terraform, "init", "-input=false", *backend)))
    steps.append(Step("terraform apply", (*terraform, "apply", "-auto-approve", "-input=false")))
    return steps + _registry_steps(folders, cloud, options, modelfn)


def _registry_steps(
    folders: dict[str, FunctionPlan], cloud: str, options: Options, modelfn: tuple[str, ...]
) -> list[Step]:
    """Push each one-model function's model to the registry and point its alias at the version."""
    steps: list[Step] = []
    registry = f"{'s3' if cloud == 'aws' else 'gs'}://{options.bucket}/models"
    for each in sorted(folders.values(), key=lambda p: p.folder):
        if each.registry_model is None or each.version is None:
            continue  # a several-model function serves the models of its bundle
        steps.append(Step(f"push {each.registry_model} v{each.version}",
                          (*modelfn, "push", f"functions/{each.folder}", "--registry", registry)))  # fmt: skip
        steps.append(Step(f"point {each.registry_model}@{each.deploy.alias} at v{each.version}",
                          (*modelfn, "promote", each.registry_model, each.version, "--alias", each.deploy.alias,
                           "--registry", registry)))  # fmt: skip
    return steps


def endpoints(cloud: str, outputs: dict[str, Any], plans: list[FunctionPlan]) -> list[str]:
    """Each served model's URL and a ``curl`` that works, from the root's ``terraform output -json``."""
    value = {name: entry.get("value") for name, entry in outputs.items()}
    base = value.get("api_url" if cloud == "aws" else "gateway_url") or ""
    key = f'"x-api-key: $(terraform -chdir=infra/{cloud} output -raw api_key)"'
    lines = []
    for each in plans:
        if not each.exposed or not base:
            continue
        for model in each.models:
            url = f"{base.rstrip('/')}/v2/models/{model}/infer"
            lines.append(f"{model}: {url}")
            lines.append(f"  curl -H {key} -H 'content-type: application/json' -d @request.json {url}")
    for name, url in sorted((value.get("function_urls") or {}).items()):
        lines.append(f"{name} (function URL, IAM): {url}")
    return lines


#: What a failed step's output says, and the fix to print beside it.
HINTS = (
    ("SERVICE_DISABLED", "a Google Cloud API the root uses is not enabled in the project: enable the one named "
     "above (gcloud services enable <api>.googleapis.com), or let the root do it with a role that may"),
    ("has not been used in project", "enable the API named above: gcloud services enable <api>.googleapis.com"),
    ("ExpiredToken", "the AWS credentials expired: renew them (aws sso login, or new keys)"),
    ("InvalidClientTokenId", "the AWS credentials are not valid in this account: check AWS_PROFILE"),
    ("NoSuchBucket", "the state bucket does not exist: make it once, by hand, in the region you deploy to"),
    ("MemorySize", "the function's memory is outside what Lambda allows here: set deploy.memory_mb (128 to 10240)"),
)  # fmt: skip


def hint(output: str) -> str | None:
    """The fix for a failed step, when its output says a known cause."""
    return next((fix for marker, fix in HINTS if marker in output), None)


def terraform_missing() -> bool:
    return shutil.which("terraform") is None
