"""Headless Chromium: the report's PDF, and a screenshot or DOM of it for tests.

Why a browser and not a PDF library: the PDF is then the page the radiologist sees in a
browser, laid out by the same engine (tables, embedded PNGs, print CSS), with no second
renderer to keep in step. Chromium runs as a subprocess with a throw-away profile, no
sandbox only when running as root (Chromium refuses to start otherwise), and a time limit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import NeuroreviewError

__all__ = ["BROWSERS", "ChromiumMissingError", "available", "chromium", "dump_dom", "print_pdf", "screenshot"]

#: The names Chromium is installed under (Debian's package, Ubuntu's, Google's builds).
BROWSERS: tuple[str, ...] = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Seconds a page may take: a report with a hundred key images prints in a few seconds.
TIMEOUT_S = 120.0


class ChromiumMissingError(NeuroreviewError):
    """No headless Chromium on this machine (a PDF needs one)."""


def available() -> bool:
    """Whether a PDF can be printed here (the Report button offers it only then)."""
    return any(shutil.which(name) for name in BROWSERS)


def chromium() -> str:
    """The Chromium executable, or one sentence saying to install it."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise ChromiumMissingError("A PDF report is printed by headless Chromium, which is not installed; install "
                               "chromium (Debian/Ubuntu: apt-get install chromium) or write the HTML report only")


def _run(page: Path, *options: str) -> str:
    """Run headless Chromium on a local page with ``options``; its stdout."""
    with tempfile.TemporaryDirectory(prefix="neuroreview-chromium-") as profile:
        command = [chromium(), "--headless", "--disable-gpu", "--no-first-run", "--disable-extensions",
                   f"--user-data-dir={profile}", *options, Path(page).resolve().as_uri()]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.insert(2, "--no-sandbox")
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited with {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def print_pdf(page: str | os.PathLike[str], pdf: str | os.PathLike[str]) -> Path:
    """Print the HTML file ``page`` to ``pdf`` (A4, no browser header or footer)."""
    _run(Path(page), f"--print-to-pdf={Path(pdf).resolve()}", "--no-pdf-header-footer")
    if not Path(pdf).is_file() or Path(pdf).stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no PDF for {Path(page).name}")
    return Path(pdf)


def screenshot(page: str | os.PathLike[str], png: str | os.PathLike[str], size: tuple[int, int] = (1000, 1400)) -> Path:
    """A PNG of the page as a browser window of ``size`` (width, height) pixels shows it."""
    _run(Path(page), f"--screenshot={Path(png).resolve()}", f"--window-size={size[0]},{size[1]}",
         "--hide-scrollbars")
    return Path(png)


def dump_dom(page: str | os.PathLike[str]) -> str:
    """The page's DOM after Chromium parsed it (what a browser really holds, scripts run)."""
    return _run(Path(page), "--dump-dom")
