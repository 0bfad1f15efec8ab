"""infra/modules/*-site: the static sites of ``deploy.site``, uploaded with the right types, caching and encoding.

On AWS the site module is applied against moto's S3 with a real web bundle and the stored objects
are read back; moto has no CloudFront response headers policy, so the distribution is checked in
the source (the headers come from the bundle's own site.json) and by checkov with the rest of
``infra/``. The Google module is parsed, as the rest of the Google configuration is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import hcl2
import pytest
from emulators import S3_ENV, s3_server
from helpers import DIGITS, ROOT, terraform_env
from infra_tools import INFRA, plain, terraform, terraform_files

from modelfn.tooling.web_bundle import build_web

PROVIDER = Path(__file__).with_name("moto_root.tf.in").read_text().split("locals {")[0]


def parsed(module: str) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted((INFRA / "modules" / module).glob("*.tf")):
        with path.open() as handle:
            for entry in plain(hcl2.load(handle)).get("resource", []):
                for kind, named in entry.items():
                    for name, body in named.items():
                        found[(kind, name)] = body
    return found


def test_render_asks_for_the_sites_of_the_contracts_that_want_one() -> None:
    for cloud in ("gcp", "aws"):
        rendered = json.loads((INFRA / cloud / "functions.auto.tfvars.json").read_text())
        assert rendered["sites"] == {"digits": {"folder": "digits"}, "helpdesk": {"folder": "helpdesk"}}
        main = (INFRA / cloud / "main.tf").read_text()
        assert f'source   = "../modules/{cloud}-site"' in main and 'dist/${each.value.folder}-web"' in main
    build = (ROOT / "cloudbuild.yaml").read_text()
    assert "modelfn build functions/digits --target web" in build and "functions/helpdesk --target web" in build


@pytest.mark.slow
def test_the_aws_site_uploads_every_file_with_its_type_caching_and_encoding(tmp_path: Path) -> None:
    bundle = Path(build_web(DIGITS, tmp_path / "dist").output)
    manifest = {entry["path"]: entry for entry in json.loads((bundle / "site.json").read_text())["files"]}
    root = tmp_path / "root"
    root.mkdir()
    env = terraform_env(tmp_path)
    with s3_server() as endpoint:
        module = f'''
module "site" {{
  source = "{INFRA / "modules" / "aws-site"}"
  name   = "digits"
  bundle = "{bundle}"
  cdn    = false
}}

output "bucket" {{
  value = module.site.bucket
}}
'''
        (root / "main.tf").write_text(PROVIDER.replace("ENDPOINT", endpoint) + module)
        terraform(["init", "-input=false"], cwd=root, env=env)
        terraform(["apply", "-auto-approve", "-input=false"], cwd=root, env=env)
        bucket = json.loads(terraform(["output", "-json"], cwd=root, env=env).stdout)["bucket"]["value"]
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
        stored = {item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]}
        assert stored == set(manifest)
        wasm = s3.get_object(Bucket=bucket, Key="ort-1.30.0/ort-wasm-simd-threaded.wasm")
        assert wasm["ContentType"] == "application/wasm" and wasm["ContentEncoding"] == "gzip"
        assert wasm["CacheControl"] == "public, max-age=31536000, immutable"
        assert wasm["ContentLength"] == manifest["ort-1.30.0/ort-wasm-simd-threaded.wasm"]["gzip_bytes"]
        page = s3.get_object(Bucket=bucket, Key="index.html")
        assert page["ContentType"] == "text/html; charset=utf-8" and page["CacheControl"] == "no-cache"
        blocked = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert all(blocked.values())  # private: only the distribution reads it
        terraform(["destroy", "-auto-approve", "-input=false"], cwd=root, env=env)


def test_the_aws_distribution_sends_the_isolation_headers_and_reads_the_bucket_alone() -> None:
    resources = parsed("aws-site")
    policy = resources[("aws_cloudfront_response_headers_policy", "site")]
    headers = {item["header"]: item["value"] for item in policy["custom_headers_config"][0]["items"]}
    assert set(headers) == {
        "Cross-Origin-Opener-Policy",
        "Cross-Origin-Embedder-Policy",
        "Cross-Origin-Resource-Policy",
    }
    assert all(value.startswith("${local.manifest.headers[") for value in headers.values())  # from the bundle
    distribution = resources[("aws_cloudfront_distribution", "site")]
    assert distribution["default_cache_behavior"][0]["viewer_protocol_policy"] == "redirect-to-https"
    assert distribution["origin"][0]["origin_access_control_id"].startswith("${aws_cloudfront_origin_access_control")
    source = (INFRA / "modules" / "aws-site" / "main.tf").read_text()
    assert '"AWS:SourceArn"' in source and "cloudfront.amazonaws.com" in source


def test_the_google_site_is_public_read_only_and_its_headers_come_from_the_bundle() -> None:
    resources = parsed("gcp-site")
    grants = [body for (kind, _), body in resources.items() if kind.endswith("_iam_member")]
    assert grants == [{"bucket": "${google_storage_bucket.site.name}", "role": "roles/storage.objectViewer",
                       "member": "allUsers"}]  # fmt: skip
    bucket = resources[("google_storage_bucket", "site")]
    assert bucket["uniform_bucket_level_access"] is True and bucket["website"][0]["main_page_suffix"] == "index.html"
    files = resources[("google_storage_bucket_object", "file")]
    assert (
        files["content_type"] == "${each.value.media_type}" and files["cache_control"] == "${each.value.cache_control}"
    )
    assert "gzip" in files["content_encoding"]
    backend = resources[("google_compute_backend_bucket", "site")]
    assert backend["custom_response_headers"] == "${local.headers}" and backend["enable_cdn"] is True
    # The one public grant of infra/ is this site's: every other bucket stays private.
    others = [path for path in terraform_files() if "gcp-site" not in path.parts]
    assert not any("allUsers" in path.read_text() for path in others)
