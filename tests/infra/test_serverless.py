"""serverless.yml: packaged offline by osls (Serverless Framework v3's maintained fork) into a
CloudFormation template that cfn-lint accepts, with the security the design asks for."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ROOT
from infra_tools import tool

from modelfn.tooling.render import render

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/modelfn-digits-keras@sha256:" + "a" * 64
TORCH_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/modelfn-digits-torch@sha256:" + "b" * 64
SKILL = "amzn1.ask.skill.0b8e6a2c-4d1f-4c3e-9a7b-5e2f1d0c9b8a"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    project = tmp_path_factory.mktemp("sls")
    # The checked-in file is render's (tests/tooling/test_render.py); here the helpdesk also
    # answers an Alexa skill, so the skill's wiring is packaged and linted too.
    shutil.copytree(ROOT / "functions", project / "functions", ignore=shutil.ignore_patterns("__pycache__"))
    contract = yaml.safe_load((project / "functions" / "helpdesk" / "modelfn.yaml").read_text())
    contract["deploy"] = {**contract.get("deploy", {}), "alexa_skills": [SKILL]}
    (project / "functions" / "helpdesk" / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    (project / "serverless.yml").write_text(render(project, ("aws",))["serverless.yml"])
    (project / "dist").mkdir()
    # Packaging copies the zips `modelfn build` made without opening them: a stand-in is enough
    # here (tests/tooling/test_build.py builds and runs the real ones).
    for name in ("cancer", "chat", "churn", "digits", "digits-ensemble", "embed", "helpdesk"):
        with zipfile.ZipFile(project / "dist" / f"{name}-lambda.zip", "w") as bundle:
            bundle.writestr("lambda_function.py", "")
    env = {
        **os.environ,
        "HOME": str(project),  # osls keeps its state here, not in the user's home
        "SLS_TELEMETRY_DISABLED": "1",
        "SLS_NOTIFICATIONS_MODE": "off",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    result = subprocess.run(
        [
            tool("sls"),
            "package",
            "--stage",
            "test",
            f"--param=digits-keras-image={IMAGE}",
            f"--param=digits-torch-image={TORCH_IMAGE}",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    path = project / ".serverless" / "cloudformation-template-update-stack.json"
    return {"path": path, **json.loads(path.read_text())}


def test_cfn_lint_reports_no_error(template: dict[str, Any]) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(template["path"])],
        capture_output=True,
        text=True,
        check=False,
    )
    # cfn-lint's exit code is a bit set: 2 errors, 4 warnings, 8 informational. The framework's
    # own DependsOn beside a GetAtt is warning W3005; errors fail.
    assert not result.returncode & 2, result.stdout
    assert result.returncode & ~(4 | 8) == 0, result.stdout


def resources(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def test_routes_need_an_api_key_in_a_usage_plan(template: dict[str, Any]) -> None:
    methods = resources(template, "AWS::ApiGateway::Method")
    assert methods and all(m["Properties"]["ApiKeyRequired"] is True for m in methods.values())
    assert len(methods) == 4 * 10  # four routes for each of the ten exposed models
    [plan] = resources(template, "AWS::ApiGateway::UsagePlan").values()
    assert plan["Properties"]["Throttle"] == {"BurstLimit": 200, "RateLimit": 100}
    assert len(resources(template, "AWS::ApiGateway::UsagePlanKey")) == 1
    [api] = resources(template, "AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["BinaryMediaTypes"] == ["application/octet-stream"]


def test_functions_zip_and_image(template: dict[str, Any]) -> None:
    functions = {
        f["Properties"]["FunctionName"]: f["Properties"] for f in resources(template, "AWS::Lambda::Function").values()
    }
    names = (
        "cancer",
        "chat",
        "churn",
        "digits",
        "digits-batch",
        "digits-ensemble",
        "digits-keras",
        "digits-messages",
        "digits-torch",
        "embed",
        "helpdesk",
    )
    assert set(functions) == {f"modelfn-test-{n}" for n in names}
    digits = functions["modelfn-test-digits"]
    assert (digits["Runtime"], digits["Handler"], digits.get("PackageType", "Zip")) == (
        "python3.12",
        "lambda_function.handler",
        "Zip",
    )
    assert digits["Environment"]["Variables"]["MODELFN_MODEL"] == "s3://modelfn-models-test/models/digits@prod"
    keras = functions["modelfn-test-digits-keras"]
    assert keras["PackageType"] == "Image" and keras["Code"] == {"ImageUri": IMAGE}
    torch = functions["modelfn-test-digits-torch"]
    assert torch["PackageType"] == "Image" and torch["Code"] == {"ImageUri": TORCH_IMAGE}
    urls = resources(template, "AWS::Lambda::Url").values()  # the two functions off the gateway
    assert len(urls) == 2 and all(url["Properties"]["AuthType"] == "AWS_IAM" for url in urls)


def test_each_role_reads_only_its_model_and_writes_only_its_results(template: dict[str, Any]) -> None:
    roles = resources(template, "AWS::IAM::Role")
    grants: dict[str, list[tuple[str, ...]]] = {}
    for name, role in roles.items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                if any(action.startswith("s3:") for action in statement["Action"]):
                    grants.setdefault(name, []).append((*statement["Action"], statement["Resource"]))
    assert grants == {
        "CancerRole": [("s3:GetObject", "arn:aws:s3:::modelfn-models-test/models/cancer/*")],
        "ChatRole": [("s3:GetObject", "arn:aws:s3:::modelfn-models-test/models/chat/*")],
        "ChurnRole": [("s3:GetObject", "arn:aws:s3:::modelfn-models-test/models/churn/*")],
        "EmbedRole": [("s3:GetObject", "arn:aws:s3:::modelfn-models-test/models/embed/*")],
        "DigitsRole": [("s3:GetObject", "arn:aws:s3:::modelfn-models-test/models/digits/*")],
        "DigitsKerasRole": [("s3:GetObject", "arn:aws:s3:::modelfn-models-test/models/digits/*")],
        "DigitsTorchRole": [("s3:GetObject", "arn:aws:s3:::modelfn-models-test/models/digits/*")],
        "HelpdeskRole": [("s3:GetObject", "arn:aws:s3:::modelfn-models-test/models/helpdesk/*")],
        "DigitsBatchRole": [
            ("s3:GetObject", "arn:aws:s3:::modelfn-models-test/models/digits/*"),
            ("s3:GetObject", "arn:aws:s3:::modelfn-models-test-uploads/incoming/*"),
            (
                "s3:GetObject",
                "s3:PutObject",
                "s3:AbortMultipartUpload",
                "arn:aws:s3:::modelfn-models-test-results/digits-batch/*",
            ),
        ],
        "DigitsMessagesRole": [
            ("s3:GetObject", "arn:aws:s3:::modelfn-models-test/models/digits/*"),
            (
                "s3:GetObject",
                "s3:PutObject",
                "s3:AbortMultipartUpload",
                "arn:aws:s3:::modelfn-models-test-results/digits-messages/*",
            ),
        ],
    }


def test_event_functions_get_their_bucket_and_queue(template: dict[str, Any]) -> None:
    functions = {
        f["Properties"]["FunctionName"]: name for name, f in resources(template, "AWS::Lambda::Function").items()
    }
    # The uploads bucket notifies the batch function of objects under incoming/ only.
    [uploads] = [
        b for b in resources(template, "AWS::S3::Bucket").values() if b["Properties"].get("NotificationConfiguration")
    ]
    assert uploads["Properties"]["BucketName"] == "modelfn-models-test-uploads"
    [notification] = uploads["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
    assert notification["Event"] == "s3:ObjectCreated:*"
    assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "incoming/"}]
    assert notification["Function"]["Fn::GetAtt"][0] == functions["modelfn-test-digits-batch"]
    batch = template["Resources"][functions["modelfn-test-digits-batch"]]["Properties"]
    assert batch["Timeout"] == 540
    assert (
        batch["Environment"]["Variables"]["MODELFN_BATCH_OUTPUT"]
        == "s3://modelfn-models-test-results/digits-batch/predictions"
    )
    # The messages function reads its own queue, reports partial failures, and poison goes to a DLQ.
    [mapping] = resources(template, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["DigitsMessagesQueue", "Arn"]}
    queue = template["Resources"]["DigitsMessagesQueue"]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5 and queue["SqsManagedSseEnabled"] is True
    assert queue["VisibilityTimeout"] == 6 * 28


def test_registry_bucket_is_private_and_kept(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["ModelBucket"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert all(bucket["Properties"]["PublicAccessBlockConfiguration"].values())
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}


def test_an_alexa_skill_invokes_its_function_and_no_other_skill_can(template: dict[str, Any]) -> None:
    functions = {
        f["Properties"]["FunctionName"]: name for name, f in resources(template, "AWS::Lambda::Function").items()
    }
    helpdesk = functions["modelfn-test-helpdesk"]
    alexa = [p["Properties"] for p in resources(template, "AWS::Lambda::Permission").values()
             if p["Properties"]["Principal"] == "alexa-appkit.amazon.com"]  # fmt: skip
    assert len(alexa) == 1 and alexa[0]["EventSourceToken"] == SKILL
    assert alexa[0]["FunctionName"]["Fn::GetAtt"][0] == helpdesk
    environment = template["Resources"][helpdesk]["Properties"]["Environment"]["Variables"]
    assert environment["MODELFN_ALEXA_SKILL_IDS"] == SKILL
    digits = template["Resources"][functions["modelfn-test-digits"]]["Properties"]["Environment"]["Variables"]
    assert "MODELFN_ALEXA_SKILL_IDS" not in digits
