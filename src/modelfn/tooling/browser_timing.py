"""The time to a web bundle's first prediction in headless Chromium (Playwright, the system's Chromium).

The page loads every model as it loads; the figure is from the start of navigation to the first
answer of the first model's example, as a visitor waits for it on a fresh tab with nothing cached.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from modelfn.errors import ContractError
from modelfn.tooling.static_site import BackgroundSite

#: Flags for a headless Chromium on a machine with no network beyond loopback.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
FIRST_ANSWER = """async ([name, body]) => {
  const started = performance.now();
  await window.modelfn.predict(name, body);
  const first = performance.now();
  await window.modelfn.predict(name, body);
  const threads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency) : 1;
  return { ready_ms: window.modelfn.timings.ready, first_prediction_ms: first, first_call_ms: first - started,
           predict_ms: performance.now() - first, threads };
}"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise ContractError("measuring needs Chromium (apt-get install chromium) and Playwright (PyPI's playwright)")
    return found


def first_prediction(root: Path, *, isolated: bool = True, timeout_s: float = 120) -> dict[str, Any]:
    """Serve the bundle at ``root`` and time its first prediction in a fresh headless Chromium."""
    from playwright.sync_api import sync_playwright

    cards = json.loads((root / "site" / "models.json").read_text())["models"]
    model = next((card for card in cards if card.get("example") is not None), None)
    if model is None:
        raise ContractError("no model of the bundle has an example to time")
    with BackgroundSite(root, isolated=isolated) as site, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(site.url, timeout=timeout_s * 1000)
            page.wait_for_selector("body[data-ready=true]", state="attached", timeout=timeout_s * 1000)
            timing = page.evaluate(FIRST_ANSWER, [model["name"], model["example"]])
        finally:
            browser.close()
    return {key: round(value, 1) if isinstance(value, float) else value for key, value in timing.items()}
