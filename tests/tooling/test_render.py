"""``modelfn render``: the deployment files follow the contracts, and the checked-in copies do not drift."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml
from click.testing import CliRunner
from helpers import ROOT, edit_contract

from modelfn.cli import cli
from modelfn.errors import ContractError
from modelfn.tooling.build import BuildError
from modelfn.tooling.plans import plan
from modelfn.tooling.render import GATEWAY_ROUTES, render

FUNCTIONS = ROOT / "functions"


def project_copy(tmp_path: Path, *names: str) -> Path:
    """A project with some of the example functions (contracts, hooks, artifacts)."""
    root = tmp_path / "project"
    for name in names:
        shutil.copytree(FUNCTIONS / name, root / "functions" / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_checked_in_files_are_what_render_produces() -> None:
    stale = [path for path, text in render(ROOT).items() if (ROOT / path).read_text() != text]
    assert not stale, f"run `modelfn render`: {stale} differ from the contracts in functions/"


def test_check_fails_when_a_contract_changes(tmp_path: Path) -> None:
    root = project_copy(tmp_path, "digits", "cancer")
    runner = CliRunner()
    assert runner.invoke(cli, ["render", "--root", str(root)]).exit_code == 0
    assert runner.invoke(cli, ["render", "--root", str(root), "--check"]).exit_code == 0

    edit_contract(root / "functions" / "digits", deploy={"memory_mb": 2048})
    result = runner.invoke(cli, ["render", "--root", str(root), "--check"])
    assert result.exit_code == 1
    assert "infra/gcp/functions.auto.tfvars.json" in result.output
    assert "serverless.yml" in result.output

    assert runner.invoke(cli, ["render", "--root", str(root)]).exit_code == 0
    variables = json.loads((root / "infra/aws/functions.auto.tfvars.json").read_text())
    assert variables["functions"]["digits"]["memory_mb"] == 2048


def test_a_project_without_functions_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["render", "--root", str(tmp_path)])
    assert result.exit_code == 1
    assert "functions: no such folder" in result.output and "Traceback" not in result.output


def test_plans_of_the_examples() -> None:
    plans = {each.name: each for each in plan(FUNCTIONS)}
    assert set(plans) == {
        "cancer", "chat", "churn", "digits", "digits-batch", "digits-messages", "digits-grpc", "digits-ensemble",
        "digits-keras", "digits-torch", "embed", "helpdesk",
    }  # fmt: skip
    # digits asks for gRPC too: a service of its own from the folder's image, off the gateway and off AWS.
    grpc = plans["digits-grpc"]
    assert (grpc.serve, grpc.package, grpc.folder, grpc.exposed, grpc.trigger, grpc.site) == (
        "grpc", "image", "digits", False, None, False
    )  # fmt: skip
    aws = json.loads((FUNCTIONS.parent / "infra/aws/functions.auto.tfvars.json").read_text())["functions"]
    assert "digits-grpc" not in aws and "digits-grpc" not in (FUNCTIONS.parent / "serverless.yml").read_text()
    # digits declares both triggers: each is a function of its own, from the same bundle, off the gateway.
    batch, messages = plans["digits-batch"], plans["digits-messages"]
    assert (batch.trigger, batch.folder, batch.exposed, batch.timeout_s, batch.concurrency) == (
        "storage",
        "digits",
        False,
        540,
        1,
    )
    assert (messages.trigger, messages.folder, messages.timeout_s) == ("messages", "digits", 28)

    digits = plans["digits"]
    assert (digits.package, digits.registry_model, digits.version, digits.deploy.alias) == (
        "zip",
        "digits",
        "1",
        "prod",
    )
    # TensorFlow and PyTorch are over both zip limits: an image each, serving its own registry
    # version, off the gateway.
    for folder, alias in (("digits-keras", "keras"), ("digits-torch", "torch")):
        each = plans[folder]
        assert (each.package, each.registry_model, each.deploy.alias, each.deploy.expose) == (
            "image",
            "digits",
            alias,
            False,
        )
    # A several-model function serves its bundled artifacts under every member's name.
    ensemble = plans["digits-ensemble"]
    assert ensemble.registry_model is None
    assert sorted(ensemble.models) == ["ensemble", "logreg", "mlp", "pca"]


def test_one_model_name_on_the_gateway_once(tmp_path: Path) -> None:
    root = project_copy(tmp_path, "digits", "digits-keras")
    edit_contract(root / "functions" / "digits-keras", deploy={"package": "image"})  # exposed by default
    with pytest.raises(
        BuildError, match=r"model 'digits' is served by both functions/digits and functions/digits-keras"
    ):
        plan(root / "functions")


def test_a_group_declares_deploy_once(tmp_path: Path) -> None:
    root = project_copy(tmp_path, "digits-ensemble")
    for member in ("pca", "mlp"):
        edit_contract(root / "functions" / "digits-ensemble" / member, deploy={"memory_mb": 512})
    with pytest.raises(BuildError, match="`deploy` is declared by"):
        plan(root / "functions")


def test_long_folder_names_that_would_share_a_service_account_are_refused(tmp_path: Path) -> None:
    root = project_copy(tmp_path, "digits")
    shutil.copytree(root / "functions" / "digits", root / "functions" / "digits-classifier-for-handwriting-a")
    shutil.copytree(root / "functions" / "digits", root / "functions" / "digits-classifier-for-handwriting-b")
    for name in ("digits-classifier-for-handwriting-a", "digits-classifier-for-handwriting-b"):
        edit_contract(root / "functions" / name, name=name[-1] + "x", deploy={"expose": True})
    with pytest.raises(BuildError, match="same service account id"):
        plan(root / "functions")


def test_gateway_routes_are_routes_the_function_answers(digits_server) -> None:
    """Every path the gateways expose for digits reaches a handler: not 404, not 405."""
    openapi = yaml.safe_load((ROOT / "infra/gcp/openapi.yaml.tftpl").read_text())
    digits_paths = {path: ops for path, ops in openapi["paths"].items() if "/digits" in path}
    assert len(digits_paths) == len(GATEWAY_ROUTES)
    for path, operations in digits_paths.items():
        for method, operation in operations.items():
            assert operation["x-google-backend"]["address"] == '${backends["digits"]}' + path
            answer = requests.request(method, digits_server.url + path, data=b"{}", timeout=10)
            assert answer.status_code not in (404, 405), (method, path, answer.text)
    # The key is required everywhere, and only routes of exposed functions are there.
    assert openapi["security"] == [{"api_key": []}]
    assert openapi["securityDefinitions"]["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    backends = {
        op["x-google-backend"]["address"].split("}")[0] for ops in openapi["paths"].values() for op in ops.values()
    }
    assert backends == {
        '${backends["cancer"]', '${backends["chat"]', '${backends["churn"]', '${backends["digits"]',
        '${backends["digits-ensemble"]', '${backends["embed"]', '${backends["helpdesk"]',
    }  # fmt: skip


def test_serverless_roles_read_only_their_model() -> None:
    document = yaml.safe_load((ROOT / "serverless.yml").read_text())
    resources = document["resources"]["Resources"]
    for name, function in document["functions"].items():
        statements = resources[function["role"]]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        models = [s for s in statements if "/models/" in str(s["Resource"])]
        model = function.get("environment", {}).get("MODELFN_MODEL")
        if model is None:
            assert models == [], name  # a several-model function reads its bundle only
            continue
        prefix = model.split("/models/")[1].split("@")[0]
        assert models == [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": f"arn:aws:s3:::${{param:bucket}}/models/{prefix}/*",
            }
        ]
        events = [event for event in function.get("events", []) if "http" in event]
        assert all(event["http"]["private"] for event in events), name
    keras = document["functions"]["digits-keras"]
    assert "handler" not in keras and keras["image"] == "${param:digits-keras-image}"
    assert keras["url"] == {"authorizer": "aws_iam"} and "events" not in keras
    batch = document["functions"]["digits-batch"]
    assert batch["package"] == {"artifact": "dist/digits-lambda.zip"}  # the folder's one bundle
    assert batch["events"][0]["s3"]["rules"] == [{"prefix": "incoming/"}]


def test_triggers_need_a_zip_function(tmp_path: Path) -> None:
    root = project_copy(tmp_path, "digits-keras")
    edit_contract(root / "functions" / "digits-keras", deploy={"package": "image", "triggers": ["storage"]})
    with pytest.raises(BuildError, match="event triggers are deployed as Cloud Functions and Lambda zips"):
        plan(root / "functions")


def test_a_platform_split_reaches_both_clouds_variables(tmp_path: Path) -> None:
    """deploy.traffic: the HTTP function pins the contract's version; event functions take no part."""
    root = project_copy(tmp_path, "digits")
    edit_contract(
        root / "functions" / "digits", version="2", deploy={"traffic": {"2": 10, "1": 90}, "triggers": ["storage"]}
    )
    http, batch = plan(root / "functions")
    assert http.edge == {"deployed": "2", "weights": {"1": 90, "2": 10}}
    assert batch.trigger == "storage" and batch.edge is None
    files = render(root)
    for cloud in ("gcp", "aws"):
        variables = json.loads(files[f"infra/{cloud}/functions.auto.tfvars.json"])["functions"]
        assert variables["digits"]["edge"] == {"deployed": "2", "weights": {"1": 90, "2": 10}}
        assert variables["digits-batch"]["edge"] is None


@pytest.mark.parametrize(
    ("version", "traffic", "message"),
    [
        ("2", {"1": 100}, "must name this contract's version '2'"),
        ("2", {"1": 80, "2": 10}, "weights add up to 90, not 100"),
        ("2", {"1": 40, "2": 40, "3": 20}, "length <= 2"),
        ("2", {"1": 110, "2": -10}, "<= 100"),
        ("2", {}, "one or two versions"),
    ],
)
def test_a_platform_split_that_cannot_deploy_is_refused(tmp_path: Path, version, traffic, message) -> None:
    root = project_copy(tmp_path, "digits")
    edit_contract(root / "functions" / "digits", version=version, deploy={"traffic": traffic})
    with pytest.raises(ContractError, match=re.escape(message)):
        plan(root / "functions")


SKILL = "amzn1.ask.skill.0b8e6a2c-4d1f-4c3e-9a7b-5e2f1d0c9b8a"


def test_an_alexa_skill_reaches_its_function_on_both_clouds(tmp_path: Path) -> None:
    root = project_copy(tmp_path, "helpdesk", "digits")
    edit_contract(root / "functions" / "helpdesk", deploy={"alexa_skills": [SKILL]})
    files = render(root)
    for cloud in ("gcp", "aws"):
        variables = json.loads(files[f"infra/{cloud}/functions.auto.tfvars.json"])["functions"]
        assert (variables["helpdesk"]["alexa_skills"], variables["digits"]["alexa_skills"]) == ([SKILL], [])
    # Google: the gateway's one keyless route, to the function's /alexa; every other route needs the key.
    gateway = yaml.safe_load(files["infra/gcp/openapi.yaml.tftpl"])
    keyless = {
        path for path, methods in gateway["paths"].items() for op in methods.values() if op.get("security") == []
    }
    assert keyless == {"/models/helpdesk/alexa"}
    backend = gateway["paths"]["/models/helpdesk/alexa"]["post"]["x-google-backend"]
    assert backend["address"] == '${backends["helpdesk"]}/models/helpdesk/alexa'
    assert gateway["security"] == [{"api_key": []}]
    # AWS: the skill invokes the Lambda directly.
    helpdesk = yaml.safe_load(files["serverless.yml"])["functions"]["helpdesk"]
    assert {"alexaSkill": {"appId": SKILL}} in helpdesk["events"]
    assert helpdesk["environment"]["MODELFN_ALEXA_SKILL_IDS"] == SKILL


def test_snap_start_reaches_lambda_and_serverless_for_a_zip_http_function(tmp_path: Path) -> None:
    root = project_copy(tmp_path, "digits", "helpdesk")
    edit_contract(root / "functions" / "digits", deploy={"snap_start": True})
    files = render(root)
    variables = json.loads(files["infra/aws/functions.auto.tfvars.json"])["functions"]
    assert variables["digits"]["snap_start"] is True and "snap_start" not in variables["helpdesk"]
    functions = yaml.safe_load(files["serverless.yml"])["functions"]
    assert functions["digits"]["snapStart"] is True and "snapStart" not in functions["helpdesk"]
    edit_contract(root / "functions" / "digits", deploy={"snap_start": True, "package": "image"})
    with pytest.raises(ContractError, match="snap_start works with zip packages only"):
        plan(root / "functions")


def test_an_alexa_skill_id_is_checked(tmp_path: Path) -> None:
    root = project_copy(tmp_path, "helpdesk")
    edit_contract(root / "functions" / "helpdesk", deploy={"alexa_skills": ["amzn1.ask.skill.not-an-id"]})
    with pytest.raises(ContractError, match=re.escape("deploy.alexa_skills[0]")):
        plan(root / "functions")


def test_a_several_model_function_splits_in_the_function(tmp_path: Path) -> None:
    root = project_copy(tmp_path, "digits-ensemble")
    edit_contract(root / "functions" / "digits-ensemble" / "pca", deploy={"traffic": {"1": 100}})
    with pytest.raises(BuildError, match="splits one model's versions"):
        plan(root / "functions")


def test_cloudbuild_passes_the_cloud_build_schema() -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.cloudbuild", str(ROOT / "cloudbuild.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cloudbuild_tests_builds_pushes_and_deploys_in_order() -> None:
    document = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    steps = {step["id"]: step for step in document["steps"]}
    assert steps["build"]["waitFor"] == ["test"]
    script = steps["build"]["args"][1]
    assert "modelfn build functions/digits --target gcf --store gcs" in script
    assert "modelfn build functions/digits-keras --target cloudrun --store gcs" in script
    assert steps["deploy"]["args"][0] == "apply" and "push-images" in steps["deploy"]["waitFor"]
    registry = steps["registry"]["args"][1]
    assert "modelfn promote digits 1 --alias prod" in registry
    assert "modelfn promote digits 1-keras --alias keras" in registry
    assert "digits-ensemble" not in registry  # its models are in its bundle
    # _BATCH_DIGITS_BATCH: an input for a Dataflow job on demand (empty: none), see the next test.
    assert set(document["substitutions"]) == {"_REGION", "_BUCKET", "_TF_STATE_BUCKET", "_REPOSITORY",
                                              "_BATCH_DIGITS_BATCH"}  # fmt: skip


def test_a_storage_function_with_dataflow_gets_its_template_image_identity_and_a_job_on_demand() -> None:
    document = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    steps = {step["id"]: step for step in document["steps"]}
    assert "modelfn build functions/digits --target dataflow" in steps["build"]["args"][1]
    tag = "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}/digits-dataflow:$SHORT_SHA"
    assert steps["image-digits-batch"]["args"] == ["build", "--build-arg", f"IMAGE={tag}", "--tag", tag,
                                                   "dist/digits-dataflow"]  # fmt: skip
    assert tag in document["images"] and "image-digits-batch" in steps["push-images"]["waitFor"]
    assert f'-var=dataflow_images={{"digits-batch":"{tag}"}}' in steps["deploy"]["args"]
    launch = steps["launch-digits-batch"]
    assert launch["waitFor"] == ["registry"]
    script = launch["args"][1]
    assert script.splitlines()[1].startswith('if [ -z "${_BATCH_DIGITS_BATCH}" ]; then')  # nothing unless asked
    assert "--service-account-email=mfn-digits-batch-df@$PROJECT_ID.iam.gserviceaccount.com" in script
    assert ",model=gs://${_BUCKET}/models/digits/1" in script
    variables = json.loads((ROOT / "infra/gcp/functions.auto.tfvars.json").read_text())["functions"]
    assert variables["digits-batch"]["dataflow"] == {"above_mb": 512, "max_workers": 10,
                                                     "machine_type": "n2-standard-4",
                                                     "service_account_id": "mfn-digits-batch-df"}  # fmt: skip
    assert "dataflow" not in variables["digits"] and "dataflow" not in variables["digits-messages"]
