"""SnapStart's hooks, run as Lambda's runtime runs them.

``snapshot_restore_py`` exists only inside Lambda's Python runtime and SnapStart itself only in AWS:
there is no local equivalent. So a stand-in module with the runtime's two registration functions
records what modelfn registers (the one mock here, and it says so), and the test runs the hooks in
Lambda's order against a real registry on the S3 emulator: init, before snapshot, an alias moved
while the snapshot waited, after restore, then requests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from emulators import new_bucket
from helpers import DIGITS

from modelfn.registry import Registry


def test_the_hooks_load_before_the_snapshot_and_renew_after_a_restore(emulators, tmp_path, function_copy) -> None:
    registry_uri = f"s3://{new_bucket('s3')}/models"
    registry = Registry.open(registry_uri)
    registry.push(DIGITS)
    registry.promote("digits", "1", "prod")
    second = function_copy(version="2")
    registry.push(second)
    (tmp_path / "runtime").mkdir()
    (tmp_path / "runtime" / "snapshot_restore_py.py").write_text(
        textwrap.dedent("""
        # Stand-in for the module of Lambda's Python runtime (no local equivalent exists).
        BEFORE, AFTER = [], []
        def register_before_snapshot(hook): BEFORE.append(hook)
        def register_after_restore(hook): AFTER.append(hook)
    """)
    )
    script = textwrap.dedent(f"""
        import json, random, sys
        sys.path.insert(0, {str(tmp_path / "runtime")!r})
        import snapshot_restore_py as runtime
        from modelfn.adapters.aws_lambda import lambda_function
        from modelfn.registry import Registry
        from modelfn.runtime.stores.s3 import S3Store

        handler = lambda_function({str(DIGITS / "main.py")!r})  # the init phase
        function = handler.modelfn_function
        report = {{"hooks": [len(runtime.BEFORE), len(runtime.AFTER)], "ready_at_init": function.ready()}}
        for hook in runtime.BEFORE:
            hook()
        report["ready_before_snapshot"] = function.ready()
        state = random.getstate()
        client = S3Store._client
        Registry.open({registry_uri!r}).promote("digits", "2", "prod")  # moved while the snapshot waited
        for hook in runtime.AFTER:
            hook()
        report["reseeded"] = random.getstate() != state
        report["new_client"] = S3Store._client is not client
        event = {{"version": "2.0", "rawPath": "/predict", "requestContext": {{"http": {{"method": "POST"}}}},
                 "headers": {{"content-type": "application/json"}}, "isBase64Encoded": False,
                 "body": json.dumps({{"image": [[0, 0, 5, 13, 9, 1, 0, 0]] * 8}})}}
        answer = handler(event, None)
        report["status"] = answer["statusCode"]
        report["version"] = answer["headers"].get("X-Model-Version")
        print(json.dumps(report))
    """)
    env = {**os.environ, **emulators, "MODELFN_MODEL": f"{registry_uri}/digits@prod",
           "MODELFN_CACHE_DIR": str(tmp_path / "cache")}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["hooks"] == [1, 1]
    assert report["ready_before_snapshot"] is True  # the snapshot holds the loaded, warmed model
    assert report["reseeded"] and report["new_client"]
    assert report == report | {"status": 200, "version": "2"}  # the alias was re-resolved at restore
