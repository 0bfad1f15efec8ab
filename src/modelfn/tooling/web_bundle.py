"""``modelfn build FOLDER --target web``: a static site that runs FOLDER's models in the browser.

The site is the function's own page (``modelfn/page/``) in its browser mode, ONNX Runtime Web's
WebAssembly build (from npm's ``onnxruntime-web``, served from the site itself), each model (ONNX,
or ORT where that is smaller) with its JavaScript hooks, and the model cards (``models.json``).
Every path that changes with a release carries the version (``ort-1.30.0/``,
``models/digits/1/``), so those files are cached for a year and the rest revalidated.

The output folder holds ``site/`` (upload it as it is, or serve it with ``modelfn site``),
``gzip/`` (the compressible files, gzip-encoded, for hosts that store them so: ``modelfn render``'s
buckets), ``site.json`` (each file's media type, caching, size and digest) and ``_headers`` in
``site/`` (the same rules for Netlify and Cloudflare Pages).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelfn.datatypes import WEB_TYPES
from modelfn.errors import ContractError
from modelfn.tooling.portable import prepare, refusal

PAGE = Path(__file__).resolve().parent.parent / "page"
#: The files of onnxruntime-web's WebAssembly build (no WebGPU, no WebGL): the module, its loader, the binary.
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
    ".ort": "application/octet-stream",
    ".txt": "text/plain; charset=utf-8",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
#: What every response of the site carries. COOP and COEP isolate the page, which is what lets
#: WebAssembly use threads; the policy allows this origin only, so nothing entered can be sent away.
HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
POLICY = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; connect-src 'self'; "
    "worker-src 'self' blob:; img-src 'self' data:; base-uri 'none'; form-action 'none'"
)
_IMPORT = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)["'](\.\.?/[^"']+)["']""")


@dataclass
class WebReport:
    """What was built, and how large it is."""

    function: str
    output: str
    ort_web: str
    models: list[dict[str, Any]] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    first_prediction: dict[str, Any] | None = None

    def lines(self) -> list[str]:
        kib = 1024
        out = [f"built     {self.function} for the browser (onnxruntime-web {self.ort_web}) -> {self.output}"]
        for model in self.models:
            quantized = model.get("quantization")
            extra = f" (int8; the original has {quantized['bytes']['original']:,})" if quantized else ""
            name = f"{model['name']} v{model['version']}"
            out.append(f"model     {name}: {model['file']}, {model['bytes']:,} bytes{extra}")
        sizes = self.sizes
        out.append(
            f"size      {sizes['total'] / kib / kib:.1f} MiB ({sizes['total_gzip'] / kib / kib:.1f} MiB gzip): "
            f"WebAssembly {sizes['wasm'] / kib / kib:.1f} MiB ({sizes['wasm_gzip'] / kib / kib:.1f} gzip), "
            f"runtime script {sizes['runtime_js'] / kib:.0f} KiB, models {sizes['models'] / kib:.0f} KiB, "
            f"page {sizes['page'] / kib:.0f} KiB"
        )
        if self.first_prediction:
            timing = self.first_prediction
            out.append(
                f"browser   first prediction {timing['first_prediction_ms']:.0f} ms after navigation "
                f"({timing['threads']} thread(s), headless Chromium); each later one {timing['predict_ms']:.1f} ms"
            )
        return out


def find_ort_web(start: Path, explicit: Path | None = None) -> Path:
    """onnxruntime-web's ``dist`` folder: ``--ort-web``, ``MODELFN_ORT_WEB``, or a ``node_modules`` above ``start``."""
    candidates = [explicit] if explicit else []
    if os.environ.get("MODELFN_ORT_WEB"):
        candidates.append(Path(os.environ["MODELFN_ORT_WEB"]))
    for parent in [start.resolve(), *start.resolve().parents, Path.cwd()]:
        for modules in ("node_modules", ".tools/node_modules"):
            candidates.append(parent / modules / "onnxruntime-web" / "dist")
    for candidate in candidates:
        if candidate.name != "dist" and (candidate / "dist").is_dir():
            candidate = candidate / "dist"
        if all((candidate / name).is_file() for name in ORT_FILES):
            return candidate
    raise ContractError(
        "onnxruntime-web is not installed: npm install onnxruntime-web@1.30.0 (make tools installs it), "
        "or pass --ort-web with its folder"
    )


def ort_web_version(dist: Path) -> str:
    return json.loads((dist.parent / "package.json").read_text())["version"]


def build_web(
    folder: Path, out: Path, *, quantize: str | None = None, thresholds: Any = None, ort_web: Path | None = None
) -> WebReport:
    """Build the static site of ``folder``'s models under ``out/<name>-web``; raise when one cannot run there."""
    from modelfn.tooling.build import FunctionLayout

    layout = FunctionLayout.read(folder)
    reasons = {name: refusal(layout.folder / name, contract, "web") for name, contract in layout.models.items()}
    refused = {name or layout.name: why for name, why in reasons.items() if why}
    if refused:
        raise ContractError("cannot build for the browser: " + "; ".join(f"{n}: {why}" for n, why in refused.items()))
    dist = find_ort_web(folder, ort_web)
    version = ort_web_version(dist)
    root = out / f"{layout.name}-web"
    site = root / "site"
    if root.exists():
        shutil.rmtree(root)
    site.mkdir(parents=True)
    report = WebReport(layout.name, str(root), version)
    runtime = f"ort-{version}/"
    (site / runtime).mkdir()
    for name in ORT_FILES:
        shutil.copy2(dist / name, site / runtime / name)
    cards = []
    for member, contract in layout.models.items():
        card, entry = write_model(layout.folder / member, contract, site, runtime, quantize, thresholds)
        cards.append(card)
        report.models.append(entry)
    write_page(site)
    (site / "models.json").write_text(json.dumps({"models": cards}, indent=2) + "\n")
    manifest = write_manifest(site, root, runtime)
    report.sizes = sizes(manifest, runtime)
    (out / f"{layout.name}-web.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def write_model(
    folder: Path, contract: Any, site: Path, runtime: str, quantize: str | None, thresholds: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write one model and its hooks under ``models/<name>/<version>/``; its card and report entry."""
    from modelfn.protocols.page import card as model_card

    model = prepare(folder, contract, prefer="smaller", quantize=quantize, thresholds=thresholds)
    base = f"models/{contract.name}/{contract.version}/"
    (site / base).mkdir(parents=True)
    (site / base / model.file_name).write_bytes(model.data)
    hooks = contract.hooks
    if hooks.javascript is not None:
        for name in javascript_files(folder, str(hooks.javascript)) | set(hooks.data):
            (site / base / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / name, site / base / name)
    card = model_card(contract) | {"uploads": None}
    card["browser"] = {
        "runtime": runtime,
        "model": base + model.file_name,
        "hooks": base + str(hooks.javascript) if hooks.javascript else None,
        "pre": hooks.pre.rpartition(":")[2] if hooks.javascript and hooks.pre else None,
        "post": hooks.post.rpartition(":")[2] if hooks.javascript and hooks.post else None,
        "inputs": [{"name": s.name, "type": WEB_TYPES[s.datatype], "shape": s.shape} for s in contract.inputs],
        "outputs": [{"name": s.name, "type": WEB_TYPES[s.datatype], "shape": s.shape} for s in contract.outputs],
        # A tabular model takes rows, as POST /predict does; the page checks nulls and categories.
        "table": None
        if contract.table is None
        else {"nullable": contract.table.nullable, "categories": contract.table.categories},
    }
    entry = {
        "name": contract.name, "version": contract.version, "file": base + model.file_name, "bytes": len(model.data),
        "onnx_bytes": model.onnx_bytes, "ort_bytes": model.ort_bytes, "quantization": model.quantization,
    }  # fmt: skip
    return card, entry


def javascript_files(folder: Path, entry: str) -> set[str]:
    """``entry`` and the relative modules (and JSON) it imports, transitively; none may leave ``folder``."""
    found: set[str] = set()
    pending = [entry]
    root = folder.resolve()
    while pending:
        name = pending.pop()
        path = (root / name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise ContractError(f"{folder}: hooks import {name}, which is not a file in the folder")
        relative = path.relative_to(root).as_posix()
        if relative in found:
            continue
        found.add(relative)
        if path.suffix in (".js", ".mjs"):
            parent = path.parent.relative_to(root)
            pending += [(parent / spec).as_posix() for spec in _IMPORT.findall(path.read_text(encoding="utf-8"))]
    return found


def write_page(site: Path) -> None:
    """The function's page in its browser mode: models from ``models.json``, run here, nothing sent."""
    html = (PAGE / "index.html").read_text()
    replacements = {
        "<body>": '<body data-site="browser">',
        '<meta charset="utf-8">': (
            f'<meta charset="utf-8">\n  <meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        ),
        "Loading the models this function serves…": "Loading the models and ONNX Runtime Web…",
    }
    for old, new in replacements.items():
        if old not in html:
            raise ContractError(f"modelfn/page/index.html has changed: {old!r} not found")
        html = html.replace(old, new)
    html = re.sub(r"<footer>.*</footer>", (
        "<footer>\n    <p>Built with modelfn. Each model runs in this browser with ONNX Runtime Web; "
        "what you draw or type stays on this device.</p>\n  </footer>"
    ), html, flags=re.S)  # fmt: skip
    (site / "index.html").write_text(html)
    for name in ("page.js", "page.css", "browser.js"):
        shutil.copy2(PAGE / name, site / name)


def write_manifest(site: Path, root: Path, runtime: str) -> dict[str, Any]:
    """``site.json``, ``_headers`` and the ``gzip/`` copies of the files that compress."""
    files = []
    for path in sorted(p for p in site.rglob("*") if p.is_file()):
        relative = path.relative_to(site).as_posix()
        data = path.read_bytes()
        packed = gzip.compress(data, compresslevel=9, mtime=0)
        entry = {
            "path": relative,
            "media_type": MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
            "cache_control": IMMUTABLE if relative.startswith((runtime, "models/")) else REVALIDATE,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "gzip_bytes": len(packed) if len(packed) < 0.9 * len(data) else None,
        }
        if entry["gzip_bytes"] is not None:
            (root / "gzip" / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / "gzip" / relative).write_bytes(packed)
        files.append(entry)
    manifest = {"headers": HEADERS, "files": files}
    (root / "site.json").write_text(json.dumps(manifest, indent=2) + "\n")
    rules = ["/*", *(f"  {name}: {value}" for name, value in HEADERS.items())]
    rules += [f"/{runtime}*", f"  Cache-Control: {IMMUTABLE}", "/models/*", f"  Cache-Control: {IMMUTABLE}"]
    (site / "_headers").write_text("\n".join(rules) + "\n")
    return manifest


def sizes(manifest: dict[str, Any], runtime: str) -> dict[str, int]:
    files = manifest["files"]

    def total(pick: Any, key: str = "bytes") -> int:
        return sum((f[key] if key == "bytes" or f[key] is not None else f["bytes"]) for f in files if pick(f["path"]))

    wasm = lambda path: path.endswith(".wasm")  # noqa: E731
    return {
        "wasm": total(wasm),
        "wasm_gzip": total(wasm, "gzip_bytes"),
        "runtime_js": total(lambda path: path.startswith(runtime) and not path.endswith(".wasm")),
        "models": total(lambda path: path.startswith("models/")),
        "page": total(lambda path: "/" not in path),
        "total": total(lambda path: True),
        "total_gzip": total(lambda path: True, "gzip_bytes"),
    }
