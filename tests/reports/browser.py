"""Opening a report in headless Chromium: the DOM after scripts ran, console messages, a screenshot.

Uses the browser binary directly (--dump-dom after a virtual time budget, console lines from its log), so the
tests need no driver package. Tests using it skip, with the reason, when Chromium is not installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)
requires_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt install chromium); browser checks skipped")

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-default-apps",
          "--disable-extensions", "--mute-audio"]
_CONSOLE = re.compile(r':CONSOLE[^\]]*\] "(?P<message>.*)", source: (?P<source>\S*)')
ARTIFACTS = Path(os.environ.get("DOCTOR_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


@dataclass
class RenderedPage:
    dom: str  # the document after its scripts ran
    console: list[str]  # every console message and uncaught error


def open_in_chromium(page: Path, profile_dir: Path, budget_ms: int = 20000, fragment: str = "") -> RenderedPage:
    """Load a local HTML file (at `#fragment` when given), let its scripts run, and return the resulting DOM and
    console output."""
    command = [CHROMIUM, *_FLAGS, f"--user-data-dir={profile_dir}", "--enable-logging=stderr", "--v=0",
               f"--virtual-time-budget={budget_ms}", "--dump-dom",
               page.resolve().as_uri() + (f"#{fragment}" if fragment else "")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    console = [match.group("message") for match in _CONSOLE.finditer(result.stderr)]
    return RenderedPage(result.stdout, console)


def screenshot(page: Path, name: str, profile_dir: Path, size: tuple[int, int] = (1280, 1600)) -> Path:
    """Save a PNG of the top of the page under test-artifacts/ and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / f"{name}.png"
    command = [CHROMIUM, *_FLAGS, f"--user-data-dir={profile_dir}", f"--window-size={size[0]},{size[1]}",
               "--virtual-time-budget=20000", "--hide-scrollbars", f"--screenshot={target}", page.resolve().as_uri()]
    subprocess.run(command, capture_output=True, timeout=180, check=False)
    return target
