"""Regenerate the documentation's screenshots: every tab of the explorer at 1400 and 400 px (docs/screenshots/*.jpg)
and the README's docs/screenshot.png, taken by the headless-Chromium tests (tests/test_browser.py).

    python scripts/screenshots.py [pytest options, e.g. -k phone]

`make test` runs the same tests but writes its screenshots to a temporary folder, so a test run never rewrites a
tracked file; this command is the only one that writes docs/. Look at every picture before committing them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    env = {**os.environ, "FGVIZ_SCREENSHOTS": str(ROOT / "docs")}  # read by tests/test_browser.py
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "tests/test_browser.py", *sys.argv[1:]], cwd=ROOT, env=env))
