"""The rendered Lambda role, enforced by moto's IAM: the S3 store reads its own model and nothing else.

moto's server checks every request against IAM policies once its first few (the set-up below)
have passed; the role's statements come straight from the rendered serverless.yml.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
import yaml
from emulators import S3_ENV, environment
from helpers import ROOT, free_port

from modelfn.errors import AccessDenied
from modelfn.http import error_response
from modelfn.runtime.stores import open_store

BUCKET = "modelfn-models-test"
SETUP_REQUESTS = 6  # create the bucket, two objects, the user, its policy, its key


@pytest.fixture
def enforcing_s3() -> Iterator[str]:
    """A moto server in its own process, enforcing IAM after SETUP_REQUESTS unauthenticated ones."""
    port = free_port()
    env = {**os.environ, **S3_ENV, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS)}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(url + "/moto-api/", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow on a busy machine
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def role_statements(function: str) -> list[dict[str, object]]:
    """The function's role statements in serverless.yml, with the stage's bucket filled in."""
    document = yaml.safe_load((ROOT / "serverless.yml").read_text())
    role = document["functions"][function]["role"]
    policy = document["resources"]["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]
    text = json.dumps(policy["Statement"]).replace("${param:bucket}", BUCKET)
    # CloudFormation functions (the log group's ARN) are not IAM; those statements are about logs.
    return [s for s in json.loads(text) if isinstance(s["Resource"], str)]


def test_the_digits_role_reads_digits_and_is_denied_cancer(enforcing_s3: str) -> None:
    admin = {"endpoint_url": enforcing_s3, "region_name": "us-east-1", **_keys(S3_ENV)}
    s3 = boto3.client("s3", **admin)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="models/digits/1/model.onnx", Body=b"digits bytes")
    s3.put_object(Bucket=BUCKET, Key="models/cancer/1/model.skops", Body=b"cancer bytes")
    iam = boto3.client("iam", **admin)
    iam.create_user(UserName="digits-function")
    policy = {"Version": "2012-10-17", "Statement": role_statements("digits")}
    iam.put_user_policy(UserName="digits-function", PolicyName="role", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="digits-function")["AccessKey"]

    function_env = {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": enforcing_s3,
    }
    from modelfn.runtime.stores.s3 import S3Store

    saved_client, saved_session = S3Store._client, boto3.DEFAULT_SESSION
    # A client with the function's credentials: boto3's default session caches the first ones it saw.
    S3Store._client = boto3.DEFAULT_SESSION = None
    try:
        with environment(function_env):
            store, prefix = open_store(f"s3://{BUCKET}/models")
            assert store.read(f"{prefix}/digits/1/model.onnx") == b"digits bytes"
            with pytest.raises(
                AccessDenied, match=r"access denied to s3://modelfn-models-test/models/cancer/1/model.skops"
            ):
                store.read(f"{prefix}/cancer/1/model.skops")
            with pytest.raises(AccessDenied):
                store.write(f"{prefix}/digits/1/model.onnx", b"overwritten")
    finally:
        S3Store._client, boto3.DEFAULT_SESSION = saved_client, saved_session

    # The caller is told the model cannot load, without bucket names or grants.
    denied = AccessDenied("access denied to s3://modelfn-models-test/models/cancer/1/model.skops: ...")
    response = error_response(denied)
    assert response.status == 503
    assert b"modelfn-models-test" not in response.body and b"storage refused access" in response.body


def _keys(env: dict[str, str]) -> dict[str, str]:
    return {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}
