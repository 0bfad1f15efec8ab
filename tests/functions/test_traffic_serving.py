"""Traffic policies on a real server: a weighted split, sticky callers, a shadow, and a canary rolled back.

The registry is a folder; ``modelfn traffic`` writes the policies, the function reads them through
its alias (``MODELFN_MODEL=<registry>/digits@prod``), and every answer names its version.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
import requests
import yaml
from click.testing import CliRunner
from helpers import DIGITS, copy_function, running, sha256_of
from prometheus_client.parser import text_string_to_metric_families

from modelfn.cli import cli
from modelfn.errors import RegistryError
from modelfn.registry import Registry, Rollback, Traffic

IMAGE = {"image": [[0, 2, 13, 16, 10, 0, 0, 0]] * 8}


def broken_version(tmp_path: Path, version: str) -> Path:
    """The digits model with its input renamed: the function's hooks no longer fit it, so each call is a 500.

    (Hooks come from the function folder, the model from the registry: a bad release of the model.)
    """
    import onnx

    folder = copy_function(tmp_path, DIGITS, version=version)
    model = onnx.load(folder / "model.onnx")
    old = model.graph.input[0].name
    model.graph.input[0].name = "pixels_v4"
    for node in model.graph.node:
        node.input[:] = ["pixels_v4" if name == old else name for name in node.input]
    onnx.save(model, folder / "model.onnx")
    contract = yaml.safe_load((folder / "modelfn.yaml").read_text())
    contract["inputs"][0]["name"] = "pixels_v4"
    contract["artifact"]["sha256"] = sha256_of(folder / "model.onnx")
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    return folder


@pytest.fixture
def registry(tmp_path: Path) -> str:
    """A registry holding digits v1 and v2 (the same model), v4 (a model that always fails); prod -> v1."""
    root = str(tmp_path / "registry")
    opened = Registry.open(root)
    for version in ("1", "2"):
        opened.push(copy_function(tmp_path, DIGITS, version=version))
    opened.push(broken_version(tmp_path, "4"))
    opened.promote("digits", "1", "prod")
    return root


def serve(registry: str, tmp_path: Path):
    return running(DIGITS, tmp_path / "serve.log", {"MODELFN_MODEL": f"{registry}/digits@prod"})


def metric(url: str, name: str, **labels: str) -> float:
    text = requests.get(url + "/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_a_weighted_split_holds_its_proportions_and_sticky_callers_keep_their_version(registry, tmp_path) -> None:
    result = CliRunner().invoke(cli, ["traffic", "digits", "--alias", "prod", "--split", "1=70,2=30",
                                      "--sticky-header", "X-User", "--registry", registry])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "digits@prod: v1 70%, v2 30% (sticky by X-User); stable v1" in result.output
    with serve(registry, tmp_path) as server:
        session = requests.Session()
        seen = Counter()
        for _ in range(600):
            answer = session.post(server.url + "/predict", json=IMAGE, timeout=10)
            assert answer.status_code == 200
            seen[answer.headers["X-Model-Version"]] += 1
        # Binomial(600, 0.3): mean 180, standard deviation 11.2; 4.5 deviations either side.
        assert 130 <= seen["2"] <= 230 and seen["1"] + seen["2"] == 600, seen
        by_user: dict[str, set[str]] = {}
        for user in range(40):
            for _ in range(3):
                answer = session.post(server.url + "/predict", json=IMAGE, headers={"X-User": f"user-{user}"},
                                      timeout=10)  # fmt: skip
                by_user.setdefault(f"user-{user}", set()).add(answer.headers["X-Model-Version"])
        assert all(len(versions) == 1 for versions in by_user.values())  # each caller stays on one version
        assert {version for versions in by_user.values() for version in versions} == {"1", "2"}
        # A version of the split can be named in the URL.
        infer = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}]}
        pinned = session.post(server.url + "/v2/models/digits/versions/2/infer", json=infer, timeout=10)
        assert pinned.json()["model_version"] == "2" and pinned.headers["X-Model-Version"] == "2"


def test_shadow_answers_are_compared_and_never_returned(registry, tmp_path) -> None:
    Registry.open(registry).set_traffic("digits", "prod", Traffic(split={"1": 100}, shadow="2"))
    with serve(registry, tmp_path) as server:
        session = requests.Session()
        for _ in range(100):
            answer = session.post(server.url + "/predict", json=IMAGE, timeout=10)
            assert answer.status_code == 200 and answer.headers["X-Model-Version"] == "1"
        for _ in range(100):  # the copies finish in the background
            copies = metric(server.url, "modelfn_shadow_requests_total", version="2")
            if copies == 100:
                break
            requests.get(server.url + "/v2/health/live", timeout=5)
        assert metric(server.url, "modelfn_shadow_requests_total", version="2", agreed="true") == 100
        assert metric(server.url, "modelfn_requests_total", version="2", route="/predict") == 100
        compared = CliRunner().invoke(cli, ["compare", "digits", "--alias", "prod", "--metrics",
                                            server.url + "/metrics", "--registry", registry])  # fmt: skip
    assert compared.exit_code == 0, compared.output
    rows = {line.split()[0]: line.split() for line in compared.output.splitlines()[1:]}
    assert rows["1"][1:3] == ["stable", "100"] and rows["2"][1:3] == ["shadow", "100"]
    assert compared.output.rstrip().endswith("100.0% of 100")


def test_a_failing_canary_is_rolled_back_and_no_stable_request_fails(registry, tmp_path) -> None:
    rule = Rollback(window_s=60, min_requests=10)
    Registry.open(registry).set_traffic("digits", "prod", Traffic(split={"1": 80, "4": 20}, rollback=rule))
    with serve(registry, tmp_path) as server:
        session = requests.Session()
        answers = [session.post(server.url + "/predict", json=IMAGE, timeout=10) for _ in range(300)]
        rolled_back = metric(server.url, "modelfn_canary_rollbacks_total", version="4")
        log = server.log()
    stable = [a for a in answers if a.headers["X-Model-Version"] == "1"]
    canary = [a for a in answers if a.headers["X-Model-Version"] == "4"]
    assert all(a.status_code == 200 for a in stable) and len(stable) > 200
    assert canary and all(a.status_code == 500 for a in canary)
    assert all(a.headers["X-Model-Version"] == "1" for a in answers[-150:])  # out of the split for good
    assert rolled_back == 1
    [event] = [orjson.loads(line) for line in log.splitlines() if "rolled back canary" in line]
    assert event["severity"] == "WARNING" and "5xx rate 100.0%" in event["message"]


def test_compare_rolls_a_failing_canary_back_for_the_whole_fleet(registry, tmp_path) -> None:
    """Two instances, no rollback of their own: ``modelfn compare --rollback`` judges their metrics together.

    The canary leaves the registry's policy, and both instances follow at their next alias refresh.
    """
    Registry.open(registry).set_traffic("digits", "prod", Traffic(split={"1": 50, "4": 50}, rollback=None))
    env = {"MODELFN_MODEL": f"{registry}/digits@prod", "MODELFN_ALIAS_REFRESH_S": "1"}
    with running(DIGITS, tmp_path / "a.log", env) as first, running(DIGITS, tmp_path / "b.log", env) as second:
        session = requests.Session()
        for _ in range(30):
            for server in (first, second):
                session.post(server.url + "/predict", json=IMAGE, timeout=10)
        arguments = ["compare", "digits", "--alias", "prod", "--metrics", first.url + "/metrics",
                     "--metrics", second.url + "/metrics", "--rollback", "--registry", registry]  # fmt: skip
        judged = CliRunner().invoke(cli, arguments)
        assert judged.exit_code == 3, judged.output
        assert "rolled back canary v4: 5xx rate 100.0% against 0.0% for v1" in judged.output
        record = Registry.open(registry).alias("digits", "prod")
        assert (record.version, record.traffic) == ("1", None)
        assert metric(first.url, "modelfn_canary_rollbacks_total") == 0  # the instances did not judge

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # each instance re-reads the alias every second
            answers = [
                session.post(s.url + "/predict", json=IMAGE, timeout=10) for s in (first, second) for _ in range(10)
            ]
            if all(a.headers["X-Model-Version"] == "1" for a in answers):  # 1 in 2**20 by chance under 50/50
                break
            time.sleep(0.2)
        answers = [session.post(s.url + "/predict", json=IMAGE, timeout=10) for s in (first, second) for _ in range(40)]
        assert all(a.status_code == 200 and a.headers["X-Model-Version"] == "1" for a in answers)
        again = CliRunner().invoke(cli, arguments)  # nothing left to judge
        assert again.exit_code == 0, again.output


def test_a_fleet_judgement_leaves_a_newer_policy_alone(registry) -> None:
    opened = Registry.open(registry)
    judged = Traffic(split={"1": 80, "2": 20})
    opened.set_traffic("digits", "prod", judged)
    opened.set_traffic("digits", "prod", Traffic(split={"1": 50, "2": 50}))  # someone moved on
    with pytest.raises(RegistryError, match="changed since it was judged"):
        opened.take_out("digits", "prod", "2", judged)
    assert opened.alias("digits", "prod").traffic.split == {"1": 50, "2": 50}
    opened.set_traffic("digits", "prod", Traffic(split={"1": 60, "2": 30, "4": 10}, shadow=""))
    current = opened.alias("digits", "prod").traffic
    record = opened.take_out("digits", "prod", "4", current)
    assert (record.version, record.traffic.split) == ("1", {"1": 70, "2": 30})


def test_invalid_splits_are_refused(registry) -> None:
    runner = CliRunner()
    for split, message in (("1=70,2=20", "add up to 90"), ("1=70,9=30", "not in the registry"), ("1=x", "VERSION")):
        result = runner.invoke(cli, ["traffic", "digits", "--alias", "prod", "--split", split, "--registry", registry])
        assert result.exit_code != 0 and message in result.output, (split, result.output)


def test_callers_cannot_condemn_a_healthy_canary(registry, tmp_path) -> None:
    """Requests pinned by URL, the caller's own errors and a few huge requests judge nothing.

    Before, each of the three took the healthy canary out, on the instance and through ``compare``.
    """
    from modelfn.runtime.traffic import sticky_draw

    rule = Rollback(window_s=300, min_requests=10)
    policy = Traffic(split={"1": 80, "2": 20}, sticky_header="X-User", rollback=rule)
    Registry.open(registry).set_traffic("digits", "prod", policy)
    # A caller who found a sticky value the split sends to the canary (a draw of 0.8 or more).
    on_canary = next(f"mallory-{n}" for n in range(1000) if sticky_draw("digits@prod", f"mallory-{n}") >= 0.8)
    huge = {"inputs": [{"name": "pixels", "shape": [12000, 64], "datatype": "FP32", "data": [1.0] * 768000}]}
    with serve(registry, tmp_path) as server:
        session = requests.Session()
        for n in range(100):  # ordinary traffic: both versions well over min_requests
            assert session.post(server.url + "/predict", json=IMAGE, headers={"X-User": f"u{n}"}, timeout=30).ok
        for _ in range(30):  # pinned to the canary by URL, and huge: ~3 MB, far slower than one image
            pinned = session.post(server.url + "/v2/models/digits/versions/2/infer", json=huge, timeout=60)
            assert pinned.status_code == 200 and pinned.headers["X-Model-Version"] == "2"
        for _ in range(60):  # through the split, the caller's errors only
            bad = session.post(server.url + "/predict", json={"image": "x"}, headers={"X-User": on_canary}, timeout=30)
            assert bad.status_code == 400 and bad.headers["X-Model-Version"] == "2"
        for _ in range(30):  # through the split, huge: judged against the stable version's huge requests (none)
            slow = session.post(server.url + "/v2/models/digits/infer", json=huge, headers={"X-User": on_canary},
                                timeout=60)  # fmt: skip
            assert slow.status_code == 200 and slow.headers["X-Model-Version"] == "2"
        for n in range(100, 200):
            assert session.post(server.url + "/predict", json=IMAGE, headers={"X-User": f"u{n}"}, timeout=30).ok
        assert metric(server.url, "modelfn_canary_rollbacks_total") == 0
        served = {session.post(server.url + "/predict", json=IMAGE, headers={"X-User": on_canary},
                               timeout=30).headers["X-Model-Version"] for _ in range(3)}  # fmt: skip
        assert served == {"2"}  # still in the split
        arguments = ["compare", "digits", "--alias", "prod", "--metrics", server.url + "/metrics",
                     "--rollback", "--registry", registry]  # fmt: skip
        judged = CliRunner().invoke(cli, arguments)
        log = server.log()
    assert judged.exit_code == 0, judged.output
    assert Registry.open(registry).alias("digits", "prod").traffic == policy
    assert "rolled back canary" not in log
