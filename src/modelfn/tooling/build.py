"""``modelfn build``: the smallest correct deployable of a function folder, checked against the platform's limits.

Targets:

- ``gcf`` (Cloud Functions gen2): a source zip with the function's files, modelfn itself and a
  fully pinned ``requirements.txt``; the platform installs the requirements.
- ``lambda``: a zip with the dependencies inside, built from wheels for Lambda's Linux
  (``pip download --platform``), so it can be built on any machine; handler
  ``lambda_function.handler``.
- ``cloudrun`` and ``lambda-image``: a container build context (the ``gcf`` sources plus a
  Dockerfile shipped in the package, ``modelfn/tooling/assets/docker/``).
- ``dataflow``: the build context of a Dataflow flex template image for batch predictions beyond one
  function (:mod:`modelfn.beam`): Beam's SDK image with the launcher, the function and its
  pinned requirements (from the shipped ``pins/engines.txt``, the set Beam's tests ran with), the
  template's ``launch.py`` and ``metadata.json``. One image serves the launcher and the workers.

The requirements carry only what the contracts need: an ONNX function gets ONNX Runtime and
numpy, never TensorFlow or scikit-learn. Versions come from the constraints shipped in the package
(``modelfn/tooling/assets/pins/constraints.txt``, the set the tests ran with) and the resolution is written out
in full, so a deployment installs exactly what was measured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from modelfn.contract import CONTRACT_FILE, Contract, compile_contract, function_members
from modelfn.errors import ContractError
from modelfn.tooling.resources import asset_file, read_asset

MB = 1024 * 1024
TARGETS = ("gcf", "cloudrun", "lambda", "lambda-image", "dataflow")

#: Documented deployment limits. Lambda: zip upload 50 MB, unzipped function and layers 250 MB.
#: Cloud Functions: sources 100 MB compressed, sources plus installed modules 500 MB.
LIMITS: dict[str, dict[str, int]] = {
    "lambda": {"zipped": 50 * MB, "unzipped": 250 * MB},
    "gcf": {"zipped": 100 * MB, "unzipped": 500 * MB},
    "cloudrun": {},
    "lambda-image": {},
    "dataflow": {},
}
#: Limits of one way to deploy, not of the platform: a Lambda zip over 50 MB deploys from S3.
#: Reported, not refused.
UPLOAD_ONLY = {"lambda": {"zipped": "upload it to S3 and point the function at it (the Serverless Framework does)"}}
#: The platform runtime each target builds for. Lambda's python3.12 runs on Amazon Linux 2023
#: (glibc 2.34); python3.11 runs on Amazon Linux 2 (glibc 2.26), too old for ONNX Runtime's
#: manylinux_2_28 wheels.
PYTHON = {"gcf": "3.12", "cloudrun": "3.12", "lambda": "3.12", "lambda-image": "3.12", "dataflow": "3.11"}
GLIBC = {"gcf": 35, "cloudrun": 35, "lambda": 34, "lambda-image": 34, "dataflow": 35}

#: What each framework needs at serving time, beyond modelfn's own core.
FRAMEWORK_PACKAGES = {
    "onnx": ["onnxruntime", "numpy"],
    "sklearn": ["scikit-learn", "skops", "numpy"],
    "tensorflow": ["tensorflow-cpu", "keras"],
    # The CPU wheel: PyPI's Linux wheel pulls the CUDA packages (see "Frameworks" in the README).
    "pytorch": ["torch", "numpy"],
    "pipeline": [],  # its steps are models of the same function, each bringing its own
    # It carries its own ONNX Runtime; Jinja renders the chat template (Lambda's zip has no Flask to bring it).
    "genai": ["onnxruntime-genai", "numpy", "jinja2"],
}
#: Where an image build finds ``torch==<version>+cpu`` (resolve with ``PIP_EXTRA_INDEX_URL`` set to it).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CORE_PACKAGES = ["msgspec", "pyyaml", "orjson", "prometheus-client"]
#: A contract with ``uploads:`` parses multipart/form-data bodies (modelfn.protocols.forms).
UPLOAD_PACKAGES = ["python-multipart"]
HTTP_PACKAGES = ["functions-framework"]  # gcf and cloudrun; Lambda calls the handler itself
DATAFLOW_PACKAGES = ["apache-beam"]
#: A Cloud Run image of a function with ``deploy.grpc`` also serves gRPC (MODELFN_SERVE=grpc).
GRPC_PACKAGES = ["grpcio", "protobuf"]
STORE_PACKAGES = {"gcs": ["google-cloud-storage"], "s3": ["boto3"]}
#: modelfn modules a deployed function never imports (they import click, skl2onnx, tf2onnx...).
TOOLING_ONLY = ("tooling", "cli", "__main__.py")
#: Left out of Lambda zips: caches, test suites, type stubs and C headers, none of them used at run time
#: (bytecode is then compiled afresh for the target, see :func:`precompile`).
STRIPPED_DIRS = {"__pycache__", "tests"}
STRIPPED_SUFFIXES = (".pyc", ".pyi", ".h", ".hpp", ".pxd")
#: Whole sub-packages a serving process never imports: ONNX Runtime's model tooling (quantization,
#: transformer optimizers, converters; ``modelfn convert`` runs them on the build machine) and
#: numpy's old build helpers. ``numpy/f2py`` stays: it is in ``numpy.__all__``, so any
#: ``from numpy import *`` (scipy's array API layer, which scikit-learn imports) loads it; a zip
#: without it failed at the model's first load under the Lambda emulator.
STRIPPED_PACKAGES = ("onnxruntime/quantization", "onnxruntime/transformers", "onnxruntime/tools",
                     "numpy/distutils")  # fmt: skip
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # reproducible archives: same inputs, same bytes


class BuildError(ContractError):
    """A bundle that cannot be built, or would not deploy; the message says what to do."""


@dataclass
class FunctionLayout:
    """A function folder: one model (``modelfn.yaml`` at its top) or several (one per sub-folder)."""

    folder: Path
    models: dict[str, Contract]  # sub-folder name ("" for a one-model function) -> contract

    @staticmethod
    def members(folder: Path) -> list[str]:
        """``[""]`` for a one-model folder, a group's sub-folders with a contract, or ``[]``: no function."""
        return function_members(folder)

    @classmethod
    def read(cls, folder: Path) -> FunctionLayout:
        """Validate and compile every contract; a group's members are its sub-folders with a contract."""
        folder = Path(folder).resolve()
        members = cls.members(folder)
        if not members:
            raise BuildError(f"{folder}: no {CONTRACT_FILE} in it or in any sub-folder")
        return cls(folder, {name: compile_contract(folder / name) for name in members})

    @property
    def name(self) -> str:
        return self.folder.resolve().name

    @property
    def is_group(self) -> bool:
        return "" not in self.models

    def frameworks(self) -> set[str]:
        return {contract.framework for contract in self.models.values()}

    def stores(self) -> set[str]:
        """Object stores the contracts' artifact URIs name (``gs://`` or ``s3://``)."""
        schemes = {"gs": "gcs", "s3": "s3"}
        found = set()
        for contract in self.models.values():
            if contract.artifact is not None and "://" in contract.artifact.uri:
                scheme = contract.artifact.uri.split("://", 1)[0]
                if scheme in schemes:
                    found.add(schemes[scheme])
        return found


@dataclass
class BuildReport:
    """What was built and how it measures against the target's limits."""

    function: str
    target: str
    python: str
    output: str
    requirements: list[str]
    sizes: dict[str, int] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    #: Whether the bundle carries bytecode (``unchecked-hash`` .pyc files), or why not.
    bytecode: str = ""
    #: The measured cold start and its phases, in ms, when a contract sets a budget.
    cold_start: dict[str, float] = field(default_factory=dict)

    def over(self, *, refused: bool = True) -> list[str]:
        """Sizes over their limit: those that refuse the build, or (``refused=False``) those only reported."""
        advisory = UPLOAD_ONLY.get(self.target, {})
        return [
            name
            for name, limit in self.limits.items()
            if self.sizes.get(name, 0) > limit and (name in advisory) != refused
        ]

    def lines(self) -> list[str]:
        out = [f"built     {self.function} for {self.target} (Python {self.python}) -> {self.output}"]
        for name, size in self.sizes.items():
            limit = self.limits.get(name)
            against = f" of {limit / MB:,.0f} MB ({size / limit:.0%})" if limit else ""
            if name in self.over(refused=False):
                against += f": over the direct upload limit, {UPLOAD_ONLY[self.target][name]}"
            out.append(f"{name:<9} {size / MB:,.1f} MB{against}")
        out.append(f"packages  {len(self.requirements)}: {', '.join(r.split('==')[0] for r in self.requirements)}")
        torch = next((pin for pin in self.requirements if pin.startswith("torch==")), None)
        if torch is not None and "+cpu" in torch:
            out.append(f"pytorch   {torch}: PyTorch's CPU-only wheel, from {TORCH_CPU_INDEX} (not PyPI, whose Linux "
                       "wheel pulls several GB of CUDA packages); requirements.txt names that index")  # fmt: skip
        if self.bytecode:
            out.append(f"bytecode  {self.bytecode}")
        if self.cold_start:
            phases = ", ".join(f"{k} {v:,.1f} ms" for k, v in self.cold_start.items() if k != "total")
            out.append(f"cold start {self.cold_start['total']:,.0f} ms on this machine: {phases}")
        return out


def requirement_names(layout: FunctionLayout, target: str, stores: Iterable[str] = ()) -> list[str]:
    """The top-level packages a deployment of ``layout`` needs, before resolution."""
    names = list(CORE_PACKAGES)
    if target in ("gcf", "cloudrun"):
        names += HTTP_PACKAGES
    if target == "cloudrun" and any(c.deploy is not None and c.deploy.grpc for c in layout.models.values()):
        names += GRPC_PACKAGES
    if target == "dataflow":  # Beam (already in its SDK image: pinned to the same release) and GCS
        names += [*DATAFLOW_PACKAGES, *STORE_PACKAGES["gcs"]]
    for framework in sorted(layout.frameworks()):
        names += FRAMEWORK_PACKAGES[framework]
    for store in sorted(set(stores) | layout.stores()):
        if store == "s3" and target in ("lambda", "lambda-image"):
            continue  # the Lambda Python runtime ships boto3
        names += STORE_PACKAGES[store]
    for contract in layout.models.values():
        if contract.uploads is not None:
            names += UPLOAD_PACKAGES
        names += list(contract.dependencies)
    return list(dict.fromkeys(names))


def build(
    folder: Path,
    target: str,
    out: Path,
    *,
    python: str | None = None,
    stores: Iterable[str] = (),
    constraints: Path | None = None,
) -> BuildReport:
    """Build ``folder`` for ``target`` under ``out``; raise :class:`BuildError` when it would not deploy.

    A build that fails removes what it wrote (the bundle, its folder, its report, a wheel folder it
    made, ``out`` itself if it made it), so a failure leaves ``out`` as it found it.
    """
    if target not in TARGETS:
        raise BuildError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    layout = FunctionLayout.read(folder)
    python = python or PYTHON[target]
    out = Path(out)
    wheels = out / ".wheels" / f"{target}-py{python}"
    made = [path for path in (out, out / ".wheels", wheels) if not path.exists()]
    outputs = [out / f"{layout.name}-{target}{suffix}" for suffix in ("", ".zip", ".zip.partial", ".json")]
    try:
        return _build(layout, target, out, wheels, python, stores, constraints)
    except BaseException:
        for path in [*outputs, *reversed(made)]:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise


def _build(
    layout: FunctionLayout, target: str, out: Path, wheels: Path, python: str, stores: Iterable[str],
    constraints: Path | None,
) -> BuildReport:  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    names = requirement_names(layout, target, stores)
    if constraints is not None:
        pinned = resolve(names, wheels, python, GLIBC[target], constraints)
    else:  # the versions this modelfn was tested with, shipped inside it
        with asset_file("pins", "engines.txt" if target == "dataflow" else "constraints.txt") as shipped:
            pinned = resolve(names, wheels, python, GLIBC[target], shipped)
    stage = out / f"{layout.name}-{target}"
    if stage.exists():
        shutil.rmtree(stage)
    copy_sources(layout, stage)
    header = "# Generated by `modelfn build`: every package pinned, the set the tests ran with.\n"
    if any(pin.startswith("torch==") and "+cpu" in pin for pin in pinned):
        header += f"# PyTorch's CPU-only wheel is not on PyPI:\n--extra-index-url {TORCH_CPU_INDEX}\n"
    (stage / "requirements.txt").write_text(header + "\n".join(pinned) + "\n")
    report = BuildReport(layout.name, target, python, str(stage), pinned, limits=LIMITS[target])
    files = wheel_files(wheels, pinned)
    dependencies = unzipped_size(files)
    if target == "dataflow":
        write_dataflow_template(layout, stage, python, pinned)
        report.sizes = {"sources": tree_size(stage), "installed": tree_size(stage) + dependencies}
        return report
    if target in ("cloudrun", "lambda-image"):
        write_dockerfile(layout, stage, target, python)
        sources = tree_size(stage)
        report.sizes = {"sources": sources, "installed": sources + dependencies}
        check_budget(layout, stage, "cloudrun" if target == "cloudrun" else "lambda", python, report)
        return report
    if target == "lambda":
        # Known before anything is installed: the wheels say how much they unpack to.
        early = tree_size(stage) + dependencies
        if early > LIMITS["lambda"]["unzipped"]:
            report.sizes = {"unzipped": early}
            raise BuildError(_too_big(report, layout))
        install_wheels(files, stage, python, GLIBC[target])
        strip(stage)
        (stage / "lambda_function.py").write_text(lambda_entrypoint(layout))
    report.bytecode = precompile(stage, python)
    archive = out / f"{layout.name}-{target}.zip"
    write_zip(stage, archive)
    report.output = str(archive)
    unzipped = tree_size(stage) + (dependencies if target == "gcf" else 0)
    report.sizes = {"zipped": archive.stat().st_size, "unzipped": unzipped}
    if report.over():
        raise BuildError(_too_big(report, layout))
    check_budget(layout, stage, target, python, report)
    (out / f"{layout.name}-{target}.json").write_text(json.dumps(report.__dict__, indent=2) + "\n")
    return report


def check_budget(layout: FunctionLayout, stage: Path, target: str, python: str, report: BuildReport) -> None:
    """Start the built bundle and time its first answer when a contract sets ``deploy.cold_start_budget_ms``
    (and a generative model's warm time to first token when it sets ``deploy.ttft_budget_ms``)."""
    budgets = [(c, c.deploy.cold_start_budget_ms, c.deploy.ttft_budget_ms)
               for c in layout.models.values() if c.deploy is not None]  # fmt: skip
    budgets = [each for each in budgets if each[1] is not None or each[2] is not None]
    if not budgets:
        return
    if layout.is_group:
        raise BuildError("deploy.cold_start_budget_ms and ttft_budget_ms are measured for one-model functions only")
    from modelfn.tooling.budget import measure, ttft_verdict, verdict

    contract, budget, ttft_budget = budgets[0]
    if ttft_budget is not None and contract.framework != "genai":
        raise BuildError(f"{layout.name}: deploy.ttft_budget_ms is for generative models (framework: genai)")
    streams = ttft_budget is not None and target != "lambda"  # Lambda's zip answers whole: no first token to time
    try:
        measurement = measure(stage, target, contract, python, ttft=streams)
    except RuntimeError as exc:
        raise BuildError(f"could not measure the cold start of {layout.name}: {exc}") from None
    report.cold_start = {"total": measurement.total_ms, **measurement.phases}
    if measurement.ttft_ms is not None:
        report.cold_start["time to first token (warm)"] = measurement.ttft_ms
    failure = verdict(measurement, budget) or ttft_verdict(measurement, ttft_budget)
    if failure is not None:
        raise BuildError(f"{layout.name}: {failure}")


def _too_big(report: BuildReport, layout: FunctionLayout) -> str:
    over = ", ".join(
        f"{name} {report.sizes[name] / MB:,.0f} MB is over the {report.limits[name] / MB:,.0f} MB limit"
        for name in report.over()
    )
    advice = []
    if layout.frameworks() & {"tensorflow", "sklearn", "pytorch"}:
        advice.append("convert the model to ONNX (`modelfn convert`), which needs ONNX Runtime and numpy only")
    if report.target == "lambda":
        advice.append("or build a container image (`--target lambda-image`, up to 10 GB)")
    if report.target == "gcf":
        advice.append("or deploy it to Cloud Run (`--target cloudrun`), whose images have no such limit")
    return f"{report.function} does not fit {report.target}: {over}; " + ", ".join(advice or ["trim its dependencies"])


def resolve(names: list[str], wheels: Path, python: str, glibc: int, constraints: Path | None) -> list[str]:
    """Download wheels for the target Linux and Python; the pinned closure of ``names``."""
    wheels.mkdir(parents=True, exist_ok=True)
    pinning = ["--constraint", str(constraints)] if constraints is not None else []
    failure = f"pip could not resolve {', '.join(names)} for Python {python}"
    if "torch" in names:  # the pinned CPU-only wheel (torch==X+cpu) is on PyTorch's own index, not on PyPI
        failure += f" (PyTorch's CPU wheel: set PIP_EXTRA_INDEX_URL={TORCH_CPU_INDEX} and build again)"
    _pip(["download", "--dest", str(wheels), *pinning, *names], python, glibc, failure)
    # The folder may hold wheels of earlier resolutions: a dry run says which this one needs.
    dry_run = [
        "install", "--dry-run", "--ignore-installed", "--no-index", "--find-links", str(wheels),
        "--report", "-", "--target", str(wheels / ".dry-run"), *pinning, *names,
    ]  # fmt: skip
    report = json.loads(_pip(dry_run, python, glibc, f"pip could not resolve {', '.join(names)} from the wheels"))
    pins = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report["install"]}
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def _pip(args: list[str], python: str, glibc: int, failure: str) -> str:
    """Run pip for the target platform (binary wheels only); its stdout, or :class:`BuildError` with its stderr."""
    command = [sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check", "--only-binary=:all:"]
    done = subprocess.run([*command, *platform_args(python, glibc)], capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"{failure}:\n{done.stderr.strip()}")
    return done.stdout


def platform_args(python: str, glibc: int) -> list[str]:
    """pip's target-platform flags: every manylinux level the target's glibc can load (pip does not expand them)."""
    tags = [f"manylinux_2_{minor}_x86_64" for minor in range(glibc, 16, -1)] + ["manylinux2014_x86_64"]
    args = [arg for tag in tags for arg in ("--platform", tag)]
    return [*args, "--python-version", python, "--implementation", "cp"]


def wheel_files(wheels: Path, pinned: list[str]) -> list[Path]:
    """The downloaded wheel of each pin (wheel names normalize ``-`` and ``.`` to ``_``)."""
    files = []
    for pin in pinned:
        name, version = pin.split("==")
        prefix = f"{name.replace('-', '_').replace('.', '_')}-{version}-".lower()
        matches = [p for p in wheels.glob("*.whl") if p.name.lower().startswith(prefix)]
        if not matches:
            raise BuildError(f"no wheel for {pin} in {wheels}")
        files.append(max(matches, key=lambda p: p.name))
    return files


def unzipped_size(wheels: list[Path]) -> int:
    """What the wheels unpack to, read from their zip directories."""
    total = 0
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            total += sum(info.file_size for info in archive.infolist())
    return total


def install_wheels(wheels: list[Path], target: Path, python: str, glibc: int) -> None:
    """Install exactly these wheels into ``target`` for the target platform (pip, no resolution, no index)."""
    _pip(
        ["install", "--no-deps", "--no-index", "--no-compile", "--target", str(target), *map(str, wheels)],
        python, glibc, f"pip could not install the wheels into {target}",
    )  # fmt: skip
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: nothing runs them on Lambda


def copy_sources(layout: FunctionLayout, stage: Path) -> None:
    """The function's own files and modelfn's runtime modules (not its tooling)."""
    stage.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".modelfn-cache")
    from modelfn.contract import load_contract, resolve_local_artifact
    from modelfn.tooling.layout import lay_out_bundle

    for name, contract in layout.models.items():
        source, dest = layout.folder / name, stage / name
        dest.mkdir(parents=True, exist_ok=True)
        paths = model_files(source, contract)
        model = resolve_local_artifact(contract, source) if _bundled(contract) else None
        for path in paths:
            if path == model:  # copied (or laid out) below, once the contract is in place
                continue
            target = dest / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        if model is not None and not lay_out_bundle(source, dest, contract):
            shutil.copy2(model, dest / model.relative_to(source.resolve()))
        record_verification(dest, load_contract(dest))
    if (layout.folder / "main.py").is_file():
        shutil.copy2(layout.folder / "main.py", stage / "main.py")
    import modelfn

    package = Path(modelfn.__file__).parent
    shutil.copytree(
        package, stage / "modelfn", ignore=lambda d, names: [*ignore(d, names), *_tooling(package, d, names)]
    )


def _bundled(contract: Contract) -> bool:
    return contract.artifact is not None and contract.artifact.bundled


def _tooling(package: Path, folder: str, names: list[str]) -> list[str]:
    return [n for n in names if Path(folder) == package and n in TOOLING_ONLY]


def model_files(folder: Path, contract: Contract) -> list[Path]:
    """What serving one model reads: its contract (and compiled copy), Python modules, and a local artifact.

    Everything else in the folder (training data, validation sets, notebooks) stays out.
    """
    files = [folder / CONTRACT_FILE, *sorted((folder / ".modelfn").glob("*.json"))]
    refs = (contract.hooks.pre, contract.hooks.post, contract.hooks.turn)
    hooks = [ref.split(":")[0] for ref in refs if ref]
    files += [folder / name for name in sorted(local_modules(folder, hooks))]
    files += [folder / name for name in contract.hooks.data]
    if _bundled(contract):
        from modelfn.contract import resolve_local_artifact

        model = resolve_local_artifact(contract, folder)
        files += [model, *(model.parent / name for name in contract.verified_artifact().files)]
    return files


def record_verification(folder: Path, contract: Contract) -> None:
    """Hash the bundled copies of a local artifact once, here, and record them (``deploy.verify: build``).

    A copy that does not match the contract fails the build; the record lets a cold start of this
    immutable bundle skip the re-hash when the contract asks it to.
    """
    if not _bundled(contract):
        return
    from modelfn.build_record import write_build_record
    from modelfn.contract import resolve_local_artifact
    from modelfn.runtime.digests import hash_path, same_digest

    model = resolve_local_artifact(contract, folder)
    artifact = contract.verified_artifact()
    pinned = {artifact.file_name: artifact.digest, **artifact.files}
    verified = {}
    for name, digest in pinned.items():
        actual, size = hash_path(model.parent / name)
        if not same_digest(actual, digest):
            raise BuildError(f"{model.parent / name}: the bytes do not match the sha256 the contract pins")
        verified[name] = (digest, size)
    write_build_record(folder, verified)


def local_modules(folder: Path, entries: list[str]) -> set[str]:
    """The hook files and the sibling modules they import (``import x``, ``from .x import y``), followed
    transitively; a training script stays out."""
    import ast

    found: set[str] = set()
    pending = [name for name in entries if (folder / name).is_file()]
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        for node in ast.walk(ast.parse((folder / name).read_bytes(), filename=name)):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level <= 1:
                # Hook files are modules of one package per model folder (modelfn.runtime.hooks).
                modules = [node.module] if node.module else [alias.name for alias in node.names]
            pending += [f"{m.split('.')[0]}.py" for m in modules if (folder / f"{m.split('.')[0]}.py").is_file()]
    return found


def lambda_entrypoint(layout: FunctionLayout) -> str:
    models = f", models={sorted(layout.models)!r}" if layout.is_group else ""
    return (
        f'"""Lambda entry point of {layout.name}, generated by `modelfn build`."""\n\n'
        "from modelfn.adapters.aws_lambda import lambda_function\n\n"
        f"handler = lambda_function(__file__{models})\n"
    )


def write_dockerfile(layout: FunctionLayout, stage: Path, target: str, python: str) -> None:
    """Write the container template (shipped in the package: ``assets/docker/``) into the build context."""
    text = read_asset("docker", f"{target}.Dockerfile").replace("{{python}}", python)
    (stage / "Dockerfile").write_text(text)
    if target == "lambda-image":
        (stage / "lambda_function.py").write_text(lambda_entrypoint(layout))


def write_dataflow_template(layout: FunctionLayout, stage: Path, python: str, pinned: list[str]) -> None:
    """The flex template's Dockerfile (Beam's SDK image of the pinned release), launch.py and metadata.json."""
    beam = next(pin.split("==", 1)[1] for pin in pinned if pin.startswith("apache-beam=="))
    write_dockerfile(layout, stage, "dataflow", python)
    dockerfile = stage / "Dockerfile"
    text = dockerfile.read_text().replace("{{beam}}", beam).replace("{{pyshort}}", python.replace(".", ""))
    dockerfile.write_text(text)
    (stage / "launch.py").write_text(
        f'"""The Dataflow flex template of {layout.name}, generated by `modelfn build --target dataflow`."""\n\n'
        "import sys\n\nfrom modelfn.beam.template import main\n\nsys.exit(main())\n"
    )
    members = "" if not layout.is_group else f" Its models: {', '.join(sorted(layout.models))} (pass member)."
    parameter = lambda name, label, help_text, optional: {  # noqa: E731
        "name": name, "label": label, "helpText": help_text, "isOptional": optional,
    }  # fmt: skip
    metadata = {
        "name": f"modelfn batch: {layout.name}",
        "description": f"Predicts every row of the input with {layout.name}, as `modelfn batch` does.{members}",
        "parameters": [
            parameter("input", "Input", "A CSV, JSON Lines or .npy file or object, or a glob of many.", False),
            parameter("output", "Output", "Where the predictions, errors and summaries go (gs://...).", False),
            parameter("name", "Results' name", "For one input: the name its results take.", True),
            parameter("model", "Registry version", "<registry>/<name>/<version> run with the image's hooks.", True),
            parameter("member", "Model", "The model of a several-model function.", True),
            parameter("database", "Database", "Also upsert one row per prediction (postgresql://...).", True),
        ],
    }
    (stage / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")


def precompile(root: Path, python: str) -> str:
    """Byte-compile every module of a zip bundle with an interpreter of the target's version.

    A deployed zip is read-only, so Python cannot write the bytecode it compiles: without it every
    cold start compiles every module again (modelfn's own cost ~80 ms of a digits cold start on
    2 vCPUs; numpy's, on Lambda, much more). ``unchecked-hash`` pycs stay valid whatever dates the
    zip gives the sources (it normalises them to 1980). Returns what the report says about it.
    """
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    interpreter = sys.executable if running == python else shutil.which(f"python{python}")
    if interpreter is None or not _runs(interpreter, python):
        found = (
            f"no python{python} on this machine" if interpreter is None
            else f"the python{python} on this machine does not run (a pyenv shim of a version it lacks?)"
        )  # fmt: skip
        return (
            f"not precompiled: {found}, so each cold start compiles the modules; "
            f"build where python{python} is installed, or pass --python {running} for a {running} runtime"
        )
    command = [interpreter, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(root)]
    # A fixed hash seed: frozenset constants are marshalled in hash order, and the zip must be reproducible.
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    if done.returncode != 0:
        raise BuildError(f"byte-compiling the bundle failed:\n{done.stdout.strip()}\n{done.stderr.strip()}")
    return f"precompiled for Python {python} (unchecked-hash .pyc files)"


def _runs(interpreter: str, python: str) -> bool:
    """Whether ``interpreter`` starts and is Python ``python`` (a pyenv shim on PATH may name a version it lacks)."""
    try:
        done = subprocess.run(
            [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == python


def strip(root: Path) -> None:
    """Remove what a serving process never reads (:data:`STRIPPED_DIRS`, :data:`STRIPPED_SUFFIXES`,
    :data:`STRIPPED_PACKAGES`)."""
    for package in STRIPPED_PACKAGES:
        shutil.rmtree(root / package, ignore_errors=True)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [d for d in dirnames if d in STRIPPED_DIRS]:
            shutil.rmtree(Path(dirpath) / name)
            dirnames.remove(name)
        for name in filenames:
            if name.endswith(STRIPPED_SUFFIXES):
                (Path(dirpath) / name).unlink()


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def write_zip(root: Path, archive: Path) -> None:
    """A reproducible zip: sorted entries, fixed dates, modes kept (Lambda needs +x on nothing but keeps it)."""
    partial = archive.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), ZIP_DATE)
            info.external_attr = (path.stat().st_mode & 0o777 | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with path.open("rb") as source, out.open(info, "w") as dest:
                shutil.copyfileobj(source, dest, 1 << 20)
    partial.replace(archive)  # never a half-written bundle under the final name
