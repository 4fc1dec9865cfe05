"""The HTML report and comparison, loaded in headless Chromium: they render with no console error
(an SVG attribute Chromium cannot parse is one), and a screenshot of each is kept as an artefact."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import energy_run, make_run

from orchestrator.report import compare, comparison_to_html, report, to_html

ROOT = Path(__file__).resolve().parent.parent
#: Screenshots land here (``build/`` is ignored by git); CI can upload the folder.
ARTEFACTS = Path(os.environ.get("MBCTL_TEST_ARTEFACTS", ROOT / "build" / "test-artefacts"))
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--log-level=0",
    "--window-size=1280,2400",
)
_CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\] (.*)")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: tests/infra/system-deps.sh installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def render(chromium: str, page: Path, screenshot: Path, profile: Path) -> list[str]:
    """Load ``page``, save a screenshot; the console messages it logged."""
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.unlink(missing_ok=True)
    result = subprocess.run(
        [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={screenshot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert screenshot.is_file() and screenshot.stat().st_size > 1000, result.stderr[-2000:]
    return [m.group(1) for line in result.stderr.splitlines() if (m := _CONSOLE.search(line))]


def test_the_detector_sees_a_broken_svg(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><body><svg xmlns="http://www.w3.org/2000/svg" width="9" '
        'height="9"><polyline points="1,nan 2,3"/></svg><p>x</p></body></html>'
    )
    messages = render(chromium, page, tmp_path / "bad.png", tmp_path / "profile")
    assert any("Expected number" in m for m in messages), messages


def test_report_and_comparison_render_cleanly(chromium: str, tmp_path: Path) -> None:
    base = report([energy_run(tmp_path / "a", "h100-node").path])
    other = report([make_run(tmp_path / "b", "cpu-box", scale=2.0).path])
    pages = {
        "report.html": to_html(base),
        "report-no-power.html": to_html(other),
        "compare.html": comparison_to_html(compare(base, [other])),
    }
    for name, text in pages.items():
        page = tmp_path / name
        page.write_text(text)
        shot = ARTEFACTS / name.replace(".html", ".png")
        messages = render(chromium, page, shot, tmp_path / f"profile-{name}")
        assert messages == [], f"{name}: console says {messages}"
