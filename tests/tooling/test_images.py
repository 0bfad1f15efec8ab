"""The Cloud Run and Lambda images of functions/digits, built with podman from `modelfn build` contexts and run.

No registry image can be pulled here, so the base is made offline: ``debootstrap --variant=minbase
bookworm`` (its tarball cached in ``~/.cache/modelfn``), imported, with Debian's Python 3.11 in a
virtual environment on ``PATH`` as ``python:3.11-slim`` gives it, and the machine's CA bundle so pip
in the build trusts what the host's pip trusts. The Dockerfiles take their base as the build
argument ``BASE_IMAGE``; the Lambda image's stand-in base has the official base's entry point:
``awslambdaric`` under the Runtime Interface Emulator. Every image and container the test makes is
removed at the end. Where podman cannot run (``make podman`` installs it with apt, as root), the
test skips and says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from helpers import DIGITS, ROOT, free_port, poll_live

from modelfn.tooling.build import build

pytestmark = pytest.mark.slow
PYTHON = "3.11"  # Debian bookworm's
PREFIX = "localhost/modelfn-test"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modelfn"
IMAGE = [[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0], [0, 3, 15, 2, 0, 11, 8, 0],
         [0, 4, 12, 0, 0, 8, 8, 0], [0, 5, 8, 0, 0, 9, 8, 0], [0, 4, 11, 0, 1, 12, 7, 0],
         [0, 2, 14, 5, 10, 12, 0, 0], [0, 0, 6, 13, 10, 0, 0, 0]]  # fmt: skip  # a held-out 0
PYTHON_BASE = """FROM {debian}
RUN python3 -m venv /usr/local/python
ENV PATH=/usr/local/python/bin:$PATH PIP_CERT=/etc/ssl/certs/ca-certificates.crt
COPY host-ca.crt /etc/ssl/certs/ca-certificates.crt
"""
LAMBDA_BASE = """FROM {python}
RUN pip install --no-cache-dir awslambdaric=={awslambdaric}
COPY aws-lambda-rie /usr/local/bin/aws-lambda-rie
ENV LAMBDA_TASK_ROOT=/var/task PYTHONPATH=/var/task
WORKDIR /var/task
ENTRYPOINT ["/usr/local/bin/aws-lambda-rie", "python", "-m", "awslambdaric"]
"""


class Podman:
    def __init__(self, config: Path) -> None:
        self.env = {**os.environ, "CONTAINERS_CONF": str(config)}

    def __call__(self, *args: str, timeout: float = 600, check: bool = True, **kwargs: Any) -> str:
        done = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              **kwargs)  # fmt: skip
        if check:
            assert done.returncode == 0, f"podman {' '.join(args[:3])}: {done.stderr[-3000:]}"
        return done.stdout

    def logs(self, name: str) -> str:
        """The container's stdout and stderr (modelfn logs to stderr)."""
        done = subprocess.run(["podman", "logs", name], env=self.env, capture_output=True, text=True, timeout=60)
        return done.stdout + done.stderr

    def size_mb(self, image: str) -> float:
        return int(self("image", "inspect", "--format", "{{.Size}}", image).strip()) / 1e6


@pytest.fixture(scope="module")
def podman(tmp_path_factory) -> Iterator[Podman]:
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: `make podman` installs them (apt, as root)")
    if os.geteuid() != 0:
        pytest.skip("podman builds here as root only (no user namespaces for rootless builds)")
    config = tmp_path_factory.mktemp("podman") / "containers.conf"
    # runc: crun refuses this sandbox's hybrid cgroup layout; ulimits: no CAP_SYS_RESOURCE to raise them.
    config.write_text('[engine]\nruntime = "runc"\n[containers]\n'
                      'default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n')  # fmt: skip
    run = Podman(config)
    try:
        yield run
    finally:
        for container in run("ps", "-a", "--format", "{{.Names}}", check=False).split():
            if container.startswith("modelfn-test-"):
                run("rm", "-f", container, check=False)
        images = [line for line in run("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).split()
                  if line.startswith(PREFIX)]  # fmt: skip
        if images:
            run("rmi", "-f", *images, check=False)


@pytest.fixture(scope="module")
def bases(podman, tmp_path_factory) -> dict[str, str]:
    """The Debian base (from the cached debootstrap tarball), the python:3.11-slim and Lambda stand-ins."""
    tarball = CACHE / "debian-bookworm-minbase-python3.tar"
    if not tarball.is_file():
        rootfs = tmp_path_factory.mktemp("rootfs") / "root"
        done = subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                               "bookworm", str(rootfs)], capture_output=True, text=True, timeout=900)  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=600)
        partial.replace(tarball)  # whole or not at all
        shutil.rmtree(rootfs, ignore_errors=True)
    names = {"debian": f"{PREFIX}-debian:bookworm", "python": f"{PREFIX}-python:{PYTHON}-slim",
             "lambda": f"{PREFIX}-lambda-python:{PYTHON}"}  # fmt: skip
    podman("import", str(tarball), names["debian"])
    context = tmp_path_factory.mktemp("bases")
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", context / "host-ca.crt")
    rie = ROOT / ".tools" / "lambda" / "aws-lambda-rie"
    if not rie.is_file():
        pytest.fail("the Lambda emulator is not installed: `make tools` fetches it into .tools/lambda")
    shutil.copy(rie, context / "aws-lambda-rie")
    (context / "python.Containerfile").write_text(PYTHON_BASE.format(**names))
    ric = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("AWSLAMBDARIC"))
    (context / "lambda.Containerfile").write_text(LAMBDA_BASE.format(**names, awslambdaric=ric.split("=")[-1].strip()))
    podman("build", "-q", "-t", names["python"], "-f", str(context / "python.Containerfile"), str(context))
    podman("build", "-q", "-t", names["lambda"], "-f", str(context / "lambda.Containerfile"), str(context))
    return names


def built(podman: Podman, target: str, base: str, out: Path, folder: Path = DIGITS) -> str:
    context = Path(build(folder, target, out, python=PYTHON).output)
    image = f"{PREFIX}-{folder.name}-{target}:latest"
    podman("build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-t", image, str(context))
    return image


@contextlib.contextmanager
def container(podman: Podman, image: str, name: str, *options: str) -> Iterator[tuple[str, float]]:
    """The image running as ``name`` with the container's 8080 on a free local port: (url, seconds to start)."""
    port = free_port()
    started = time.monotonic()
    podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", *options, image)
    try:
        yield f"http://127.0.0.1:{port}", started
    finally:
        podman("rm", "-f", name, check=False)


def test_the_cloud_run_image_serves_read_only_as_non_root_and_drains_on_sigterm(podman, bases, tmp_path) -> None:
    image = built(podman, "cloudrun", bases["python"], tmp_path / "dist")
    name = "modelfn-test-cloudrun"
    with container(podman, image, name, "--read-only") as (url, started):
        assert poll_live(url, started + 120), podman.logs(name)
        first = time.monotonic() - started
        assert podman("exec", name, "id", "-u").strip() == "65532"  # the Dockerfile's user, not root
        row = np.ravel(IMAGE).tolist()
        tensor = {"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": row}
        answers = {
            "metadata": requests.get(f"{url}/v2/models/digits", timeout=60),
            "infer": requests.post(f"{url}/v2/models/digits/infer", json={"inputs": [tensor]}, timeout=60),
            "tfserving": requests.post(f"{url}/v1/models/digits:predict", json={"instances": [row]}, timeout=60),
            "predict": requests.post(f"{url}/predict", json={"image": IMAGE}, timeout=60),
        }
        assert {key: answer.status_code for key, answer in answers.items()} == dict.fromkeys(answers, 200)
        assert answers["predict"].json()["digit"] == 0
        assert answers["infer"].json()["outputs"][1]["data"] == [0]
        stopping = time.monotonic()
        podman("stop", "-t", "10", name, timeout=60)
        stopped = time.monotonic() - stopping
        assert podman("inspect", "--format", "{{.State.ExitCode}}", name).strip() == "0"
        logs = podman.logs(name)
    assert stopped < 10 and "stopped after draining" in logs, logs[-3000:]
    for trouble in ("Control server error", "Permission denied", "Read-only file system", "Traceback"):
        assert trouble not in logs, logs[-3000:]
    (tmp_path / "figures.json").write_text(json.dumps({"size_mb": podman.size_mb(image), "first_answer_s": first}))
    print(f"cloudrun image: {podman.size_mb(image):.0f} MB, podman run to first answer {first:.2f} s")

    # The same image as the digits-grpc service runs it (deploy.grpc): gRPC on the one port.
    import tritonclient.grpc as triton

    with container(podman, image, "modelfn-test-grpc", "--read-only", "-e", "MODELFN_SERVE=grpc") as (url, started):
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        while not _grpc_ready(client):
            assert time.monotonic() - started < 120, podman.logs("modelfn-test-grpc")
            time.sleep(0.1)
        pixels = triton.InferInput("pixels", [1, 64], "FP32")
        pixels.set_data_from_numpy(np.asarray(IMAGE, dtype=np.float32).reshape(1, 64))
        assert client.infer("digits", [pixels]).as_numpy("label").tolist() == [0]
        podman("stop", "-t", "10", "modelfn-test-grpc", timeout=60)
        assert podman("inspect", "--format", "{{.State.ExitCode}}", "modelfn-test-grpc").strip() == "0"
        logs = podman.logs("modelfn-test-grpc")
    assert "stopped after draining" in logs and "Traceback" not in logs, logs[-3000:]


def test_the_cloud_run_image_streams_a_generative_answer(podman, bases, tmp_path) -> None:
    """functions/chat in the image Cloud Run and Knative run: the ``openai`` client reads the answer in chunks."""
    import openai

    image = built(podman, "cloudrun", bases["python"], tmp_path / "dist", folder=ROOT / "functions" / "chat")
    name = "modelfn-test-cloudrun-chat"
    with container(podman, image, name, "--read-only") as (url, started):
        assert poll_live(url, started + 120), podman.logs(name)
        chat = openai.OpenAI(base_url=f"{url}/openai/v1", api_key="unused", max_retries=0, timeout=60)
        question = [{"role": "user", "content": "how can I deploy to aws lambda"}]
        whole = chat.chat.completions.create(model="chat", messages=question).choices[0].message.content
        chunks = [
            chunk.choices[0].delta.content
            for chunk in chat.chat.completions.create(model="chat", messages=question, stream=True)
            if chunk.choices and chunk.choices[0].delta.content
        ]
        assert len(chunks) >= 5 and "".join(chunks) == whole, (chunks, whole)
        body = {"text_input": "<|user|>hi<|assistant|>", "max_tokens": 6}
        with requests.post(f"{url}/v2/models/chat/generate_stream", json=body, timeout=60, stream=True) as stream:
            events = [line for line in stream.iter_lines() if line.startswith(b"data: ")]
        assert len(events) >= 2, events
        podman("stop", "-t", "10", name, timeout=60)
        logs = podman.logs(name)
    assert "stopped after draining" in logs and "Traceback" not in logs, logs[-3000:]


def _grpc_ready(client) -> bool:
    from tritonclient.utils import InferenceServerException

    try:
        return client.is_server_ready(client_timeout=5)
    except InferenceServerException:
        return False


def test_the_lambda_image_answers_an_api_gateway_event(podman, bases, tmp_path) -> None:
    image = built(podman, "lambda-image", bases["lambda"], tmp_path / "dist")
    name = "modelfn-test-lambda-image"
    event = {"resource": "/{proxy+}", "path": "/models/digits/predict", "httpMethod": "POST",
             "headers": {"Content-Type": "application/json"}, "body": json.dumps({"image": IMAGE}),
             "requestContext": {"requestId": "r-1", "stage": "prod"}, "isBase64Encoded": False}  # fmt: skip
    with container(podman, image, name, "--read-only", "--tmpfs", "/tmp") as (url, started):
        invoke = f"{url}/2015-03-31/functions/function/invocations"
        deadline, answer = started + 120, None
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.ConnectionError, requests.Timeout):
                answer = requests.post(invoke, data=json.dumps(event), timeout=120)
                break
            time.sleep(0.1)
        first = time.monotonic() - started
        assert answer is not None and answer.status_code == 200, podman.logs(name)
        result = answer.json()
        assert result["statusCode"] == 200, (result, podman.logs(name))
        assert json.loads(result["body"])["digit"] == 0
    print(f"lambda image: {podman.size_mb(image):.0f} MB, podman run to first answer {first:.2f} s")
