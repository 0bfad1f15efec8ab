"""``modelfn deploy``: the plan as data, and the dry run in a project of one's own (Terraform validates the root)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import DIGITS, terraform_env

from modelfn.cli import cli
from modelfn.errors import ContractError
from modelfn.tooling.deploy import Options, deploy_plan


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """``modelfn new`` with the digits function in it, as the working directory."""
    assert CliRunner().invoke(cli, ["new", str(tmp_path / "proj")]).exit_code == 0
    proj = tmp_path / "proj"
    shutil.copytree(DIGITS, proj / "functions" / "digits", ignore=shutil.ignore_patterns(".modelfn", "__pycache__"))
    monkeypatch.chdir(proj)
    return proj


def test_the_plan_builds_writes_the_roots_variables_applies_then_pushes(project) -> None:
    steps = deploy_plan(project, Options(cloud="aws", bucket="models-b", region="eu-west-1", dry_run=False,
                                         state_bucket="state-b"))  # fmt: skip
    lines = [step.line() for step in steps]
    assert lines[0].endswith("modelfn render --target aws")
    assert lines[1].endswith("modelfn build functions/digits --target lambda --store s3")
    assert lines[2] == "write infra/aws/deploy.auto.tfvars.json"
    assert json.loads(steps[2].writes[1]) == {"bucket": "models-b", "region": "eu-west-1"}
    assert lines[3:5] == [
        "terraform -chdir=infra/aws init -input=false -backend-config=bucket=state-b -backend-config=region=eu-west-1",
        "terraform -chdir=infra/aws apply -auto-approve -input=false",
    ]
    assert lines[5].endswith("modelfn push functions/digits --registry s3://models-b/models")
    assert lines[6].endswith("modelfn promote digits 1 --alias prod --registry s3://models-b/models")
    assert [step.dry for step in steps] == [True, True, True, False, False, False, False]


def test_an_image_function_needs_a_repository_to_push_to(project) -> None:
    import yaml

    contract = project / "functions" / "digits" / "modelfn.yaml"
    raw = yaml.safe_load(contract.read_text())
    raw["deploy"] = {"package": "image"}
    contract.write_text(yaml.safe_dump(raw, sort_keys=False))
    options = Options(cloud="gcp", bucket="b", region="us-central1", dry_run=False, project_id="p")
    with pytest.raises(ContractError, match="--image-repository"):
        deploy_plan(project, options)
    repository = "us-central1-docker.pkg.dev/p/modelfn"
    steps = deploy_plan(project, Options(**{**options.__dict__, "image_repository": repository, "tag": "v7"}))
    lines = [step.line() for step in steps]
    assert f"docker build --tag {repository}/digits:v7 dist/digits-cloudrun" in lines
    assert json.loads(next(s.writes[1] for s in steps if s.writes))["images"]["digits"] == f"{repository}/digits:v7"


def test_dry_run_builds_and_validates_the_aws_root_with_no_credentials(project, monkeypatch, tmp_path) -> None:
    for key, value in terraform_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    done = CliRunner().invoke(cli, ["deploy", "aws", "--dry-run", "--bucket", "tutorial-models"])
    assert done.exit_code == 0, done.output
    assert "==> terraform validate" in done.output and "skipped" not in done.output
    assert "would run  terraform -chdir=infra/aws apply -auto-approve -input=false" in done.output
    assert (project / "dist" / "digits-lambda.zip").is_file()
    assert json.loads((project / "infra/aws/deploy.auto.tfvars.json").read_text())["bucket"] == "tutorial-models"


def test_a_real_deploy_says_what_is_missing_before_it_starts(project, monkeypatch, tmp_path) -> None:
    runner = CliRunner()
    no_state = runner.invoke(cli, ["deploy", "aws"])
    assert no_state.exit_code == 1 and "--state-bucket" in no_state.output
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    no_credentials = runner.invoke(cli, ["deploy", "aws", "--state-bucket", "s"])
    assert no_credentials.exit_code == 1 and "no AWS credentials" in no_credentials.output
    assert not (project / "dist").exists()  # nothing was built


def test_deploy_outside_a_project_says_how_to_make_one(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(cli, ["deploy", "aws", "--dry-run"])
    assert done.exit_code == 1 and "modelfn new DIR" in done.output


def _empty_buckets(s3, names: list[str], *, delete: bool = False) -> None:
    """Remove every object version (and, with ``delete``, the buckets) of moto's buckets that exist."""
    existing = {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
    for name in [name for name in names if name in existing]:
        listed = s3.list_object_versions(Bucket=name)
        for entry in listed.get("Versions", []) + listed.get("DeleteMarkers", []):
            s3.delete_object(Bucket=name, Key=entry["Key"], VersionId=entry["VersionId"])
        if delete:
            s3.delete_bucket(Bucket=name)


MOTO_PROVIDER = """provider "aws" {
  region                      = var.region
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true
  endpoints {
    apigateway = "ENDPOINT"
    iam        = "ENDPOINT"
    lambda     = "ENDPOINT"
    logs       = "ENDPOINT"
    s3         = "ENDPOINT"
    sqs        = "ENDPOINT"
    sts        = "ENDPOINT"
  }
}"""
MOTO_BACKEND = """backend "s3" {
    key                         = "modelfn/terraform.tfstate"
    endpoints                   = { s3 = "ENDPOINT" }
    use_path_style              = true
    access_key                  = "testing"
    secret_key                  = "testing"
    skip_credentials_validation = true
    skip_requesting_account_id  = true
    skip_metadata_api_check     = true
    skip_region_validation      = true
  }"""


@pytest.mark.slow
def test_a_real_deploy_applies_against_moto_pushes_the_model_and_prints_a_curl(project, tmp_path) -> None:
    """``modelfn deploy aws`` end to end, the project's root pointed at a moto server (AWS has no local
    equivalent of Lambda and API Gateway beyond moto, which stores what it is given without running it)."""
    import os
    import subprocess
    import sys

    import boto3
    import yaml
    from emulators import S3_ENV, s3_server

    contract = project / "functions" / "digits" / "modelfn.yaml"
    raw = yaml.safe_load(contract.read_text())
    raw["deploy"] = {"memory_mb": 512}  # one HTTP function: no triggers, so the apply stays small
    contract.write_text(yaml.safe_dump(raw, sort_keys=False))
    root = project / "infra" / "aws" / "main.tf"
    with s3_server() as endpoint:
        text = root.read_text()
        text = text.replace('provider "aws" {\n  region = var.region\n}', MOTO_PROVIDER)
        text = text.replace('backend "s3" {\n    key = "modelfn/terraform.tfstate"\n  }', MOTO_BACKEND)
        assert text.count("ENDPOINT") == 8, "the shipped root changed: update the test's substitutions"
        root.write_text(text.replace("ENDPOINT", endpoint))
        session = boto3.Session(**{"aws_access_key_id": "testing", "aws_secret_access_key": "testing"},
                                region_name="us-east-1")  # fmt: skip
        session.client("s3", endpoint_url=endpoint).create_bucket(Bucket="tfstate")
        env = {**os.environ, **terraform_env(tmp_path), **S3_ENV, "AWS_ENDPOINT_URL": endpoint}
        command = [sys.executable, "-m", "modelfn", "deploy", "aws", "--bucket", "modelfn-models",
                   "--state-bucket", "tfstate"]  # fmt: skip
        try:
            done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            lam = session.client("lambda", endpoint_url=endpoint)
            assert "modelfn-digits" in {f["FunctionName"] for f in lam.list_functions()["Functions"]}
            keys = {o["Key"] for o in session.client("s3", endpoint_url=endpoint).list_objects_v2(
                Bucket="modelfn-models")["Contents"]}  # fmt: skip
        finally:
            # moto keeps one state per process: leave none of this deploy for the other moto tests.
            _empty_buckets(session.client("s3", endpoint_url=endpoint), ["modelfn-models"])
            subprocess.run(["terraform", "-chdir=infra/aws", "destroy", "-auto-approve", "-input=false"],
                           cwd=project, env=env, capture_output=True, timeout=900)  # fmt: skip
            _empty_buckets(session.client("s3", endpoint_url=endpoint), ["tfstate"], delete=True)
    assert any(key.startswith("models/digits/1/") for key in keys), sorted(keys)
    lines = done.stdout.splitlines()
    url = next(line.split(": ", 1)[1] for line in lines if line.startswith("digits: "))
    assert url.endswith("/v2/models/digits/infer")
    assert any(line.strip().startswith("curl -H \"x-api-key: $(terraform -chdir=infra/aws output -raw api_key)\"")
               and line.endswith(url) for line in lines)  # fmt: skip


def test_a_failed_step_names_the_fix_for_the_causes_it_knows() -> None:
    from modelfn.tooling.deploy import hint

    disabled = "Error 403: Cloud Functions API has not been used in project 42 before or it is disabled."
    assert "gcloud services enable" in hint(disabled)
    assert "state bucket does not exist" in hint("Error: Failed to get existing workspaces: NoSuchBucket")
    assert hint("Error: something else entirely") is None


def test_via_serverless_deploys_serverless_yml_then_the_models(project) -> None:
    options = Options(cloud="aws", bucket="models-b", region="eu-west-1", dry_run=False, via="serverless")
    lines = [step.line() for step in deploy_plan(project, options)]
    assert lines[2] == "npx osls deploy --stage prod --region eu-west-1 --param=bucket=models-b"
    assert lines[3].endswith("modelfn push functions/digits --registry s3://models-b/models")
    assert not any(line.startswith("terraform") for line in lines)
    with pytest.raises(ContractError, match="Google Cloud deploys with Terraform"):
        deploy_plan(project, Options(**{**options.__dict__, "cloud": "gcp"}))
