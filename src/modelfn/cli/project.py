"""Commands on a whole project: new and deploy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelfn.cli._app import cli, click_errors

if TYPE_CHECKING:
    from modelfn.tooling.deploy import Options


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def new(directory: Path) -> None:
    """Write a new project in DIRECTORY: functions/, infra/, cloudbuild.yaml, serverless.yml, tests/.

    Everything it writes comes from the installed modelfn; add a model with
    ``modelfn init MODEL --name NAME --description TEXT`` inside it.
    """
    from modelfn.tooling.project import new_project

    with click_errors():
        try:
            written = new_project(directory)
        except OSError as exc:
            raise click.ClickException(
                f"cannot write {directory}: {exc.strerror or exc}; choose a folder you can write"
            ) from None
    click.echo(f"wrote     {directory}/: {len(written)} files (functions/, infra/, cloudbuild.yaml, tests/...)")
    click.echo(f"next      cd {directory} && modelfn init MODEL --name NAME --description TEXT")


@cli.command()
@click.argument("cloud", type=click.Choice(["aws", "gcp"]))
@click.option(
    "--bucket", default=None, help="The model registry bucket the root makes [default: modelfn-<folder>-models]."
)
@click.option("--region", default=None, help="The region [default: us-east-1 on AWS, us-central1 on Google Cloud].")
@click.option("--project-id", envvar="GOOGLE_CLOUD_PROJECT", default="", help="gcp: the Google Cloud project.")
@click.option("--state-bucket", default="", help="The bucket Terraform keeps its state in (made once, by hand).")
@click.option("--image-repository", default="", help="Where the images of functions packaged as images are pushed.")
@click.option("--tag", default="latest", show_default=True, help="The images' tag.")
@click.option(
    "--via", type=click.Choice(["terraform", "serverless"]), default="terraform", show_default=True,
    help="aws: Terraform (infra/aws) or the Serverless Framework (serverless.yml, with osls through npx).",
)  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Build and validate everything, deploy nothing: no credentials needed.")
def deploy(
    cloud: str, bucket: str | None, region: str | None, project_id: str, state_bucket: str, image_repository: str,
    tag: str, via: str, dry_run: bool,
) -> None:  # fmt: skip
    """Deploy the project here to CLOUD: bundles, Terraform, models; prints each endpoint and a curl.

    Run it in a project (``modelfn new``); ``--dry-run`` prints every command a real deploy runs.
    """
    import subprocess

    from modelfn.tooling.deploy import Options, deploy_plan, hint, terraform_missing

    root = Path(".")
    if not (root / "functions").is_dir():
        raise click.ClickException("no functions/ here: run modelfn deploy in a project (modelfn new DIR makes one)")
    options = Options(
        cloud=cloud, bucket=bucket or f"modelfn-{Path.cwd().name.lower()}-models"[:63],
        region=region or ("us-east-1" if cloud == "aws" else "us-central1"), dry_run=dry_run, project_id=project_id,
        state_bucket=state_bucket, image_repository=image_repository, tag=tag, via=via,
    )  # fmt: skip
    with click_errors():
        steps = deploy_plan(root, options)
    if not dry_run:
        _preflight(cloud, options)
    # A dry run validates where Terraform and the cloud's provider are at hand, and says where not.
    unvalidated = "Terraform is not installed" if terraform_missing() else ""
    for step in steps:
        if dry_run and not step.dry:
            click.echo(f"would run  {step.line()}")
            continue
        if step.argv and step.argv[0] == "terraform" and unvalidated:
            click.echo(f"skipped    {step.line()} ({unvalidated}: not validated)")
            continue
        click.echo(f"==> {step.what}: {step.line()}")
        if step.writes is not None:
            path, text = step.writes
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text)
            continue
        done = subprocess.run(step.argv, capture_output=True, text=True)
        if done.returncode != 0 and dry_run and step.argv[0] == "terraform":
            unvalidated = "terraform init could not install the provider (offline?)"
            click.echo(f"skipped    {unvalidated}: not validated")
            continue
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-2000:]
            fix = hint(done.stderr + done.stdout)
            raise click.ClickException(
                f"{step.what} failed ({step.line()}):\n{tail}" + (f"\nfix: {fix}" if fix else "")
            )
    if dry_run:
        click.echo("dry run: nothing was deployed; the 'would run' commands are what a deploy adds")
        return
    if via == "serverless":
        click.echo("deployed with osls: `npx osls info --stage prod` lists the endpoints and the API key")
        return
    _print_endpoints(cloud, root)


def _preflight(cloud: str, options: Options) -> None:
    """What a real deploy needs before it starts: Terraform, credentials, a state bucket."""
    from modelfn.tooling.deploy import terraform_missing

    if options.via == "serverless":
        import shutil

        if shutil.which("npx") is None:
            raise click.ClickException("--via serverless runs osls through npx: install Node.js (with npm)")
    elif terraform_missing():
        raise click.ClickException("Terraform is not installed: see https://developer.hashicorp.com/terraform/install")
    elif not options.state_bucket:
        raise click.ClickException("--state-bucket: name the bucket Terraform keeps its state in (made once, by hand)")
    if cloud == "aws":
        try:
            import boto3
        except ImportError:
            raise click.ClickException("deploying to AWS needs boto3: pip install 'modelfn[s3]'") from None
        if boto3.Session().get_credentials() is None:
            raise click.ClickException(
                "no AWS credentials: run `aws configure`, or set AWS_PROFILE or AWS_ACCESS_KEY_ID"
            )
    else:
        if not options.project_id:
            raise click.ClickException("--project-id (or GOOGLE_CLOUD_PROJECT): the Google Cloud project to deploy to")
        try:
            import google.auth
            import google.auth.exceptions

            google.auth.default()
        except ImportError:
            raise click.ClickException(
                "deploying to Google Cloud needs google-auth: pip install 'modelfn[gcs]'"
            ) from None
        except google.auth.exceptions.DefaultCredentialsError:
            raise click.ClickException(
                "no Google Cloud credentials: run `gcloud auth application-default login`"
            ) from None


def _print_endpoints(cloud: str, root: Path) -> None:
    import json
    import subprocess

    from modelfn.tooling.deploy import endpoints
    from modelfn.tooling.plans import plan

    done = subprocess.run(["terraform", f"-chdir=infra/{cloud}", "output", "-json"], capture_output=True, text=True)
    if done.returncode != 0:
        raise click.ClickException(f"terraform output failed:\n{done.stderr.strip()[-2000:]}")
    for line in endpoints(cloud, json.loads(done.stdout), plan(root / "functions")):
        click.echo(line)
