"""infra/: formatted, valid, applied for real against moto (AWS), structurally checked (Google), checkov-clean.

Google's providers cannot be installed offline, so the Google module is parsed (python-hcl2) and
checked against the provider's required arguments and the least grants the design names; the AWS
module is initialised from the machine's provider mirror, validated, applied against moto's
server and destroyed again.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import boto3
import hcl2
import pytest
import yaml
from emulators import S3_ENV, s3_server
from helpers import ROOT, terraform_env
from infra_tools import INFRA, plain, terraform, terraform_files, tool


def test_every_file_is_formatted(tmp_path: Path) -> None:
    terraform(["fmt", "-check", "-recursive", "-diff", str(INFRA)], cwd=tmp_path, env=terraform_env(tmp_path))


def test_aws_root_module_validates(tmp_path: Path) -> None:
    shutil.copytree(INFRA, tmp_path / "infra")
    env = terraform_env(tmp_path)
    root = tmp_path / "infra" / "aws"
    terraform(["init", "-backend=false", "-input=false"], cwd=root, env=env)
    terraform(["validate"], cwd=root, env=env)


def test_checkov_finds_no_failed_check_and_every_skip_says_why(tmp_path: Path) -> None:
    result = subprocess.run(
        [tool("checkov"), "-d", str(INFRA), "--framework", "terraform", "--skip-download", "--compact", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    skips = [
        line.strip() for path in terraform_files() for line in path.read_text().splitlines() if "checkov:skip" in line
    ]
    assert skips, "the skips are expected to be inline"
    for line in skips:
        match = re.fullmatch(r"#checkov:skip=(CKV2?_[A-Z]+_\d+):(.+)", line)
        assert match and len(match.group(2)) > 30, f"a skip without a justification: {line}"


# --- Google Cloud: structural ------------------------------------------------------------------

#: Required arguments per resource type (hashicorp/google >= 5, MMv1 `required: true`), with the
#: blocks a new resource needs in practice (a function's runtime and source). Dotted paths enter blocks.
REQUIRED = {
    "google_project_service": ["service"],
    "google_storage_bucket": ["name", "location"],
    "google_storage_bucket_object": ["name", "bucket", "source|content"],  # one of the two
    "google_service_account": ["account_id"],
    "google_storage_bucket_iam_member": ["bucket", "role", "member"],
    "google_cloudfunctions2_function": [
        "name",
        "location",
        "build_config.runtime",
        "build_config.entry_point",
        "build_config.source.storage_source.bucket",
        "build_config.source.storage_source.object",
        "service_config.service_account_email",
    ],
    "google_cloud_run_v2_service": ["name", "location", "template.containers.image", "template.service_account"],
    "google_cloud_run_service_iam_member": ["location", "service", "role", "member"],
    "google_cloud_run_v2_service_iam_member": ["name", "location", "role", "member"],
    "google_project_iam_member": ["project", "role", "member"],
    "google_service_account_iam_member": ["service_account_id", "role", "member"],
    "google_api_gateway_api": ["api_id"],
    "google_api_gateway_api_config": ["api", "openapi_documents.document.path", "openapi_documents.document.contents"],
    "google_api_gateway_gateway": ["gateway_id", "api_config"],
    "google_apikeys_key": ["name"],
    "google_pubsub_topic": ["name"],
}
BETA_ONLY = {"google_api_gateway_api", "google_api_gateway_api_config", "google_api_gateway_gateway"}


def google_resources() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted((INFRA / "modules" / "gcp").glob("*.tf")):
        with path.open() as handle:
            parsed = plain(hcl2.load(handle))
        for entry in parsed.get("resource", []):
            for kind, named in entry.items():
                for name, body in named.items():
                    found[(kind, name)] = body
    return found


def _lookup(body: dict[str, Any], dotted: str) -> Any:
    value: Any = body
    for part in dotted.split("."):
        if isinstance(value, list):  # a block is a list of its occurrences
            value = value[0]
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def test_google_resources_have_their_required_arguments() -> None:
    resources = google_resources()
    assert {kind for kind, _ in resources} <= set(REQUIRED), "a resource type the test does not know"
    for (kind, name), body in resources.items():
        missing = [arg for arg in REQUIRED[kind]
                   if all(_lookup(body, each) in (None, "") for each in arg.split("|"))]  # fmt: skip
        assert not missing, f"{kind}.{name} lacks {missing}"
        if kind in BETA_ONLY:
            assert body.get("provider") == "google-beta", f"{kind}.{name} exists only in google-beta"


def test_cloud_run_splits_by_tagged_revisions() -> None:
    """deploy.traffic on Google Cloud, as far as it can be checked without the google provider (parsed).

    The latest revision serves the deployed version; the other version's revision is the one its
    tag names on the live service, read by a data source; a missing one stops the plan with our
    message; a zip function (Cloud Functions gen2) cannot split.
    """
    service = google_resources()[("google_cloud_run_v2_service", "service")]
    edge, canary, latest = (block["traffic"] for block in service["dynamic"])
    assert edge["for_each"] == "${each.value.edge == null ? [] : local.edge_targets[each.key]}"
    content = edge["content"][0]
    assert "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST" in content["type"] and "traffic.value.deployed" in content["type"]
    assert "local.tagged_revisions[each.key][traffic.value.tag]" in content["revision"]
    assert (content["percent"], content["tag"]) == ("${traffic.value.percent}", "${traffic.value.tag}")
    assert all("each.value.edge == null" in block["for_each"] for block in (canary, latest))  # one or the other
    messages = [check["error_message"] for check in service["lifecycle"][0]["precondition"]]
    assert any("deploy that version alone first" in message for message in messages)
    parsed = plain(hcl2.loads((INFRA / "modules" / "gcp" / "main.tf").read_text()))
    [live] = [e["google_cloud_run_v2_service"]["live"] for e in parsed["data"] if "google_cloud_run_v2_service" in e]
    assert live["name"] == "${var.name_prefix}${each.key}" and "length(f.edge.weights) > 1" in live["for_each"]
    main = (INFRA / "modules" / "gcp" / "main.tf").read_text()
    assert 'tag      = "m${replace(lower(version), "/[^a-z0-9]/", "-")}"' in main
    variables = (INFRA / "modules" / "gcp" / "variables.tf").read_text()
    assert 'f.edge == null || (f.package == "image" && f.registry_model != null)' in variables


def test_a_grpc_service_gets_an_h2c_port_a_grpc_probe_and_the_grpc_server() -> None:
    """deploy.grpc on Google Cloud: HTTP/2 cleartext end to end, readiness by the standard health service."""
    service = google_resources()[("google_cloud_run_v2_service", "service")]
    [container] = service["template"][0]["containers"]
    blocks = {name: block for entry in container["dynamic"] for name, block in entry.items()}
    assert blocks["ports"]["for_each"] == '${each.value.serve == "grpc" ? [8080] : []}'
    assert blocks["ports"]["content"][0] == {"name": "h2c", "container_port": "${ports.value}"}
    assert blocks["startup_probe"]["for_each"] == blocks["ports"]["for_each"]
    assert blocks["startup_probe"]["content"][0]["grpc"] == [{"port": "${startup_probe.value}"}]
    main = (INFRA / "modules" / "gcp" / "main.tf").read_text()
    assert 'f.serve == "grpc" ? { MODELFN_SERVE = "grpc" } : {}' in main
    functions = json.loads((ROOT / "infra" / "gcp" / "functions.auto.tfvars.json").read_text())["functions"]
    grpc = functions["digits-grpc"]
    assert (grpc["serve"], grpc["package"], grpc["expose"], grpc["folder"]) == ("grpc", "image", False, "digits")
    assert all("serve" not in f for name, f in functions.items() if name != "digits-grpc")


def test_google_grants_are_the_least_ones() -> None:
    resources = google_resources()
    grants = {(kind, name): body for (kind, name), body in resources.items() if kind.endswith("_iam_member")}
    roles = {body["role"] for body in grants.values()}
    assert roles == {
        "roles/storage.objectViewer",
        "roles/storage.objectAdmin",
        "roles/run.invoker",
        "roles/pubsub.publisher",
        "roles/eventarc.eventReceiver",
        # Dataflow hand-offs (dataflow.tf): the workers run work items and pull the template's image;
        # the function starts jobs, as the workers' account only.
        "roles/dataflow.worker",
        "roles/artifactregistry.reader",
        "roles/dataflow.developer",
        "roles/iam.serviceAccountUser",
    }

    # Every bucket grant is to a function's own identity (or its Dataflow workers'), under an IAM
    # condition on the object name: its model's prefix, the incoming/ files it predicts, its own prefix
    # of the results bucket, its template's spec.
    function = "serviceAccount:${google_service_account.function[each.key].email}"
    workers = "serviceAccount:${google_service_account.dataflow[each.key].email}"
    prefixes = {}
    for (kind, name), body in grants.items():
        if kind == "google_storage_bucket_iam_member":
            assert body["member"] == (workers if name.startswith("dataflow_") and name != "dataflow_template_read"
                                      else function), name  # fmt: skip
            expression = body["condition"][0]["expression"]
            assert expression.startswith(('resource.name.startsWith(\\"projects/_/buckets/',
                                          'resource.name == \\"projects/_/buckets/')), name  # fmt: skip
            prefixes[name] = (body["role"], expression.split("/objects/")[1].split("\\")[0])
    assert prefixes == {
        "model_read": ("roles/storage.objectViewer", "models/${each.value.registry_model}/"),
        "input_read": ("roles/storage.objectViewer", "incoming/"),
        "results_write": ("roles/storage.objectAdmin", "${each.key}/"),
        "dataflow_model_read": ("roles/storage.objectViewer", "models/${each.value.registry_model}/"),
        "dataflow_input_read": ("roles/storage.objectViewer", "incoming/"),
        "dataflow_results_write": ("roles/storage.objectAdmin", "${each.key}/"),
        "dataflow_template_read": ("roles/storage.objectViewer", "templates/${each.key}.json"),
    }
    # The function may act as its workers' account, and no other.
    act_as = resources[("google_service_account_iam_member", "dataflow_act_as")]
    assert act_as["service_account_id"] == "${google_service_account.dataflow[each.key].name}"
    assert act_as["member"] == function
    # Project-wide grants only where the platform has no narrower one (Eventarc, the GCS agent, Dataflow).
    project_wide = {body["role"] for (kind, _), body in grants.items() if kind == "google_project_iam_member"}
    assert project_wide == {"roles/pubsub.publisher", "roles/eventarc.eventReceiver", "roles/dataflow.worker",
                            "roles/artifactregistry.reader", "roles/dataflow.developer"}  # fmt: skip
    # Nothing public, but the browser sites' files (tests/infra/test_sites.py).
    text = "\n".join(path.read_text() for path in terraform_files() if "gcp-site" not in path.parts)
    assert "allUsers" not in text and "allAuthenticatedUsers" not in text


def test_google_bucket_is_private_and_versioned() -> None:
    for name in ("models", "sources", "uploads", "results"):
        bucket = google_resources()[("google_storage_bucket", name)]
        assert bucket["uniform_bucket_level_access"] is True
        assert bucket["public_access_prevention"] == "enforced"
        assert bucket["versioning"][0]["enabled"] is True


def test_google_functions_get_their_model_reference_and_own_account() -> None:
    resources = google_resources()
    service = resources[("google_cloudfunctions2_function", "function")]["service_config"][0]
    assert service["service_account_email"] == "${google_service_account.function[each.key].email}"
    assert service["environment_variables"] == "${local.environment[each.key]}"
    main = (INFRA / "modules" / "gcp" / "main.tf").read_text()
    assert '"gs://${google_storage_bucket.models.name}/models/${f.registry_model}@${f.alias}"' in main
    # A platform split (deploy.traffic) pins each revision to its version instead.
    assert '"gs://${google_storage_bucket.models.name}/models/${f.registry_model}/${f.edge.deployed}")' in main
    config = resources[("google_api_gateway_api_config", "config")]
    assert config["gateway_config"][0]["backend_config"][0]["google_service_account"] == (
        "${google_service_account.gateway.email}"
    )


def test_openapi_template_renders_to_a_gateway_document() -> None:
    """What templatefile() makes of it, given every function's URL: valid YAML, https backends."""
    variables = json.loads((INFRA / "gcp" / "functions.auto.tfvars.json").read_text())["functions"]
    text = (INFRA / "gcp" / "openapi.yaml.tftpl").read_text()
    assert re.findall(r"%\{|\$\{(?!backends\[)", text) == [], "only ${backends[...]} may be interpolated"
    for name in variables:
        text = text.replace(f'${{backends["{name}"]}}', f"https://{name}-abc123-uc.a.run.app")
    assert "${" not in text, "a backend with no function"
    document = yaml.safe_load(text)
    assert document["swagger"] == "2.0"
    for operations in document["paths"].values():
        for operation in operations.values():
            backend = operation["x-google-backend"]
            assert backend["address"].startswith("https://") and backend["jwt_audience"].startswith("https://")


# --- AWS: applied against moto -----------------------------------------------------------------

SKILL = "amzn1.ask.skill.0b8e6a2c-4d1f-4c3e-9a7b-5e2f1d0c9b8a"
MOTO_ROOT = Path(__file__).with_name("moto_root.tf.in")  # ENDPOINT and MODULE are filled in


@pytest.mark.slow
def test_aws_module_applies_against_moto_and_destroys(tmp_path: Path) -> None:
    rendered = json.loads((INFRA / "aws" / "functions.auto.tfvars.json").read_text())["functions"]
    root = tmp_path / "root"
    root.mkdir()
    # As rendered, but the helpdesk answers an Alexa skill (the checked-in contracts name none).
    rendered["helpdesk"]["alexa_skills"] = [SKILL]
    (root / "functions.auto.tfvars.json").write_text(json.dumps({"functions": rendered}))
    # moto stores the code without running it: any zip stands in for the built bundle here
    # (tests/tooling/test_build.py runs the real ones).
    with zipfile.ZipFile(root / "bundle.zip", "w") as bundle:
        bundle.writestr("lambda_function.py", "def handler(event, context):\n    return {}\n")
    env = terraform_env(tmp_path)
    with s3_server() as endpoint:
        (root / "main.tf").write_text(
            MOTO_ROOT.read_text().replace("ENDPOINT", endpoint).replace("MODULE", str(INFRA / "modules" / "aws"))
        )
        terraform(["init", "-input=false"], cwd=root, env=env)
        terraform(["apply", "-auto-approve", "-input=false"], cwd=root, env=env)
        outputs = json.loads(terraform(["output", "-json"], cwd=root, env=env).stdout)

        session = boto3.Session(
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        lam = session.client("lambda", endpoint_url=endpoint)
        iam = session.client("iam", endpoint_url=endpoint)
        s3 = session.client("s3", endpoint_url=endpoint)
        apigw = session.client("apigateway", endpoint_url=endpoint)

        names = {f["FunctionName"] for f in lam.list_functions()["Functions"]}
        assert names == {f"modelfn-{name}" for name in rendered}
        assert {"digits-batch", "digits-messages"} <= set(rendered)
        digits = lam.get_function(FunctionName="modelfn-digits")
        config = digits["Configuration"]
        assert config["Environment"]["Variables"]["MODELFN_MODEL"] == "s3://modelfn-models/models/digits@prod"
        assert (config["Runtime"], config["Handler"], config["MemorySize"]) == (
            "python3.12",
            "lambda_function.handler",
            1024,
        )
        assert digits["Concurrency"]["ReservedConcurrentExecutions"] == rendered["digits"]["max_instances"]
        keras = lam.get_function(FunctionName="modelfn-digits-keras")["Configuration"]
        assert keras["PackageType"] == "Image"
        assert keras["Environment"]["Variables"]["MODELFN_MODEL"] == "s3://modelfn-models/models/digits@keras"

        # The skill may invoke the helpdesk (its id as the event source token, which moto does not
        # keep: the module's source is checked for it below), and no other function.
        statements = json.loads(lam.get_policy(FunctionName="modelfn-helpdesk")["Policy"])["Statement"]
        # (moto keeps a principal outside amazonaws.com as a plain string; AWS says {"Service": ...})
        services = [(s["Sid"], s["Principal"].get("Service") if isinstance(s["Principal"], dict) else s["Principal"])
                    for s in statements]  # fmt: skip
        assert [sid for sid, service in services if service == "alexa-appkit.amazon.com"] == ["AllowAlexaSkill0"]
        helpdesk = lam.get_function(FunctionName="modelfn-helpdesk")["Configuration"]["Environment"]["Variables"]
        assert helpdesk["MODELFN_ALEXA_SKILL_IDS"] == SKILL
        assert "MODELFN_ALEXA_SKILL_IDS" not in config["Environment"]["Variables"]

        # Least privilege: each role reads its own model's prefix and nothing else of the bucket.
        policy = iam.get_role_policy(RoleName="modelfn-digits", PolicyName="modelfn-digits")["PolicyDocument"]
        reads = [s for s in policy["Statement"] if "s3:GetObject" in _list(s["Action"])]
        assert [_list(s["Resource"]) for s in reads] == [["arn:aws:s3:::modelfn-models/models/digits/*"]]
        ensemble = iam.get_role_policy(RoleName="modelfn-digits-ensemble", PolicyName="modelfn-digits-ensemble")
        assert not [s for s in ensemble["PolicyDocument"]["Statement"] if "s3:GetObject" in _list(s["Action"])]

        # The bucket: private, versioned, encrypted.
        assert s3.get_bucket_versioning(Bucket="modelfn-models")["Status"] == "Enabled"
        block = s3.get_public_access_block(Bucket="modelfn-models")["PublicAccessBlockConfiguration"]
        assert all(block.values())

        # The REST API: every route needs the key; the key is in the usage plan.
        api = apigw.get_rest_apis()["items"][0]
        paths = {}
        for resource in apigw.get_resources(restApiId=api["id"], limit=500)["items"]:
            for method in resource.get("resourceMethods", {}):
                detail = apigw.get_method(restApiId=api["id"], resourceId=resource["id"], httpMethod=method)
                assert detail["apiKeyRequired"] is True, resource["path"]
                paths[(method, resource["path"])] = detail["methodIntegration"]["uri"]
        assert ("POST", "/v2/models/digits/infer") in paths and ("GET", "/v2/models/pca/ready") in paths
        assert "modelfn-digits/invocations" in paths[("POST", "/v2/models/digits/infer")]
        assert "modelfn-digits-ensemble/invocations" in paths[("POST", "/models/ensemble/predict")]
        assert not any("digits-batch" in uri or "digits-messages" in uri for uri in paths.values()), "events only"
        plans = apigw.get_usage_plans()["items"]
        assert len(apigw.get_usage_plan_keys(usagePlanId=plans[0]["id"])["items"]) == 1
        assert outputs["api_url"]["value"].endswith("/v1")

        # Off the API: an IAM-authenticated URL; the event sources are wired.
        assert set(outputs["function_urls"]["value"]) == {"digits-keras", "digits-torch"}
        url = lam.get_function_url_config(FunctionName="modelfn-digits-keras")
        assert url["AuthType"] == "AWS_IAM"
        # The event functions: the uploads bucket notifies the batch one of incoming/ objects; the
        # messages one reads the queue made for it, whose failures go to a dead-letter queue.
        [mapping] = lam.list_event_source_mappings()["EventSourceMappings"]
        assert mapping["FunctionArn"].endswith(":modelfn-digits-messages")
        assert mapping["EventSourceArn"].endswith(":modelfn-digits-messages")
        sqs = session.client("sqs", endpoint_url=endpoint)
        queue = sqs.get_queue_url(QueueName="modelfn-digits-messages")["QueueUrl"]
        redrive = json.loads(
            sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"]
        )
        assert redrive["deadLetterTargetArn"].endswith(":modelfn-digits-messages-dead-letters")
        notification = s3.get_bucket_notification_configuration(Bucket="modelfn-models-uploads")
        [target] = notification["LambdaFunctionConfigurations"]
        assert target["LambdaFunctionArn"].endswith(":modelfn-digits-batch")
        rules = [(rule["Name"].lower(), rule["Value"]) for rule in target["Filter"]["Key"]["FilterRules"]]
        assert rules == [("prefix", "incoming/")]
        batch = lam.get_function(FunctionName="modelfn-digits-batch")["Configuration"]
        assert batch["Timeout"] == 540
        assert (
            batch["Environment"]["Variables"]["MODELFN_BATCH_OUTPUT"]
            == "s3://modelfn-models-results/digits-batch/predictions"
        )
        policy = iam.get_role_policy(RoleName="modelfn-digits-batch", PolicyName="modelfn-digits-batch")[
            "PolicyDocument"
        ]
        writes = [_list(s["Resource"]) for s in policy["Statement"] if "s3:PutObject" in _list(s["Action"])]
        assert writes == [["arn:aws:s3:::modelfn-models-results/digits-batch/*"]]

        terraform(["destroy", "-auto-approve", "-input=false"], cwd=root, env=env)
        assert lam.list_functions()["Functions"] == []
        assert apigw.get_rest_apis()["items"] == []


@pytest.mark.slow
def test_aws_split_by_lambda_moves_between_pinned_versions(tmp_path: Path) -> None:
    """deploy.traffic on Lambda, applied three times against moto: one version, a 90/10 canary, the promotion.

    Each published Lambda version pins one model version; the alias m<version> keeps it; the
    serving alias (prod) routes between them, and the REST API invokes the serving alias.
    """
    digits = json.loads((INFRA / "aws" / "functions.auto.tfvars.json").read_text())["functions"]["digits"]
    root = tmp_path / "root"
    root.mkdir()
    bundle = root / "bundle.zip"
    env = terraform_env(tmp_path)

    def deploy(model_version: str, weights: dict[str, int], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        # A new model version is a new bundle (its contract changes), so the function publishes anew.
        with zipfile.ZipFile(bundle, "w") as archive:
            archive.writestr(
                "lambda_function.py", f"# model {model_version}\ndef handler(event, context):\n    return {{}}\n"
            )
        edge = {"deployed": model_version, "weights": weights}
        variables = {"functions": {"digits": {**digits, "edge": edge}}}
        (root / "functions.auto.tfvars.json").write_text(json.dumps(variables))
        if check:
            return terraform(["apply", "-auto-approve", "-input=false"], cwd=root, env=env)
        return subprocess.run(
            [tool("terraform"), "apply", "-no-color", "-auto-approve", "-input=false"],
            cwd=root, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    with s3_server() as endpoint:
        (root / "main.tf").write_text(
            MOTO_ROOT.read_text().replace("ENDPOINT", endpoint).replace("MODULE", str(INFRA / "modules" / "aws"))
        )
        terraform(["init", "-input=false"], cwd=root, env=env)
        lam = boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1", **_credentials())
        apigw = boto3.client("apigateway", endpoint_url=endpoint, region_name="us-east-1", **_credentials())

        def model_of(qualifier: str) -> str:
            config = lam.get_function_configuration(FunctionName="modelfn-digits", Qualifier=qualifier)
            return config["Environment"]["Variables"]["MODELFN_MODEL"]

        def integration() -> str:
            [api] = apigw.get_rest_apis()["items"]
            [resource] = [r for r in apigw.get_resources(restApiId=api["id"], limit=500)["items"]
                          if r["path"] == "/v2/models/digits/infer"]  # fmt: skip
            return apigw.get_method(restApiId=api["id"], resourceId=resource["id"], httpMethod="POST")[
                "methodIntegration"
            ]["uri"]

        # A split whose other version was never deployed is refused before anything is made.
        refused = deploy("2", {"1": 90, "2": 10}, check=False)
        assert refused.returncode != 0
        assert 'data.aws_lambda_alias.kept["digits 1"]' in refused.stderr, refused.stderr
        assert lam.list_functions()["Functions"] == []

        # 1. Version 1 alone: published, pinned, and served through prod.
        deploy("1", {"1": 100})
        assert lam.get_alias(FunctionName="modelfn-digits", Name="m1")["FunctionVersion"] == "1"
        prod = lam.get_alias(FunctionName="modelfn-digits", Name="prod")
        assert prod["FunctionVersion"] == "1" and not prod.get("RoutingConfig")
        assert model_of("1") == "s3://modelfn-models/models/digits/1"
        assert integration().endswith(":function:modelfn-digits:prod/invocations")

        # 2. The canary: version 2 is published and takes 10%; version 1 keeps its Lambda version.
        deploy("2", {"1": 90, "2": 10})
        aliases = {a["Name"]: a for a in lam.list_aliases(FunctionName="modelfn-digits")["Aliases"]}
        assert (aliases["m1"]["FunctionVersion"], aliases["m2"]["FunctionVersion"]) == ("1", "2")
        assert aliases["prod"]["FunctionVersion"] == "1"
        assert aliases["prod"]["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.1}
        assert (model_of("1"), model_of("2")) == (
            "s3://modelfn-models/models/digits/1",
            "s3://modelfn-models/models/digits/2",
        )
        deploy("2", {"1": 90, "2": 10})  # applying again changes nothing: m1 is read back, not moved
        assert lam.get_alias(FunctionName="modelfn-digits", Name="m1")["FunctionVersion"] == "1"

        # 3. The promotion: everything to version 2; version 1's alias goes.
        deploy("2", {"2": 100})
        aliases = {a["Name"]: a for a in lam.list_aliases(FunctionName="modelfn-digits")["Aliases"]}
        assert set(aliases) == {"m2", "prod"}
        # (moto reports drift on every apply, so each apply publishes anew: m2 follows the newest.)
        assert aliases["prod"]["FunctionVersion"] == aliases["m2"]["FunctionVersion"]
        assert not aliases["prod"].get("RoutingConfig")
        assert model_of(aliases["prod"]["FunctionVersion"]) == "s3://modelfn-models/models/digits/2"

        terraform(["destroy", "-auto-approve", "-input=false"], cwd=root, env=env)
        assert lam.list_functions()["Functions"] == []


def _credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
    }


def _list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def test_an_alexa_permission_names_its_skill() -> None:
    """What moto does not keep: the permission's event source token is the skill id."""
    with (INFRA / "modules" / "aws" / "main.tf").open() as handle:
        parsed = plain(hcl2.load(handle))
    [permission] = [e["aws_lambda_permission"]["alexa"] for e in parsed["resource"]
                    if "alexa" in e.get("aws_lambda_permission", {})]  # fmt: skip
    assert permission["principal"] == "alexa-appkit.amazon.com"
    assert permission["event_source_token"] == "${each.value.skill}"


def test_snap_start_publishes_and_callers_invoke_the_alias() -> None:
    """Parsed from the source (moto does not model SnapStart): the block, the publish and the alias callers use."""
    with (INFRA / "modules" / "aws" / "main.tf").open() as handle:
        parsed = plain(hcl2.load(handle))
    [function] = [e["aws_lambda_function"]["function"] for e in parsed["resource"] if "aws_lambda_function" in e]
    assert "each.value.snap_start" in function["publish"]
    [block] = function["dynamic"]
    assert block["snap_start"]["content"] == [{"apply_on": "PublishedVersions"}]
    [alias] = [e["aws_lambda_alias"]["snap"] for e in parsed["resource"] if "snap" in e.get("aws_lambda_alias", {})]
    assert alias["function_version"] == "${aws_lambda_function.function[each.key].version}"
    source = (INFRA / "modules" / "aws" / "main.tf").read_text()
    assert "f.snap_start ? aws_lambda_alias.snap[name].invoke_arn" in source


def test_aws_rest_api_takes_binary_tensors() -> None:
    """Checked in the source: moto does not keep a REST API's binary media types."""
    with (INFRA / "modules" / "aws" / "main.tf").open() as handle:
        parsed = plain(hcl2.load(handle))
    [api] = [e["aws_api_gateway_rest_api"]["api"] for e in parsed["resource"] if "aws_api_gateway_rest_api" in e]
    assert api["binary_media_types"] == ["application/octet-stream"]


def test_root_modules_read_the_rendered_variables() -> None:
    for cloud in ("gcp", "aws"):
        main = (INFRA / cloud / "main.tf").read_text()
        assert 'source = "../modules/' + cloud + '"' in main
        assert (INFRA / cloud / "functions.auto.tfvars.json").is_file()
    assert "-var=images=" in (ROOT / "cloudbuild.yaml").read_text()
