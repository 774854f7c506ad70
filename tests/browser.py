"""Open an HTML page in real headless Chromium and report how each ``<img>`` rendered.

Used by the tests of every page pgvision writes (duplicates, search results, people).
Chromium is Debian's ``chromium`` (``.ci/run`` installs it); :func:`chromium_or_skip` skips
the test, saying why, where it is absent.

The page itself carries no script: :func:`rendered_images` copies it, appends a small script
that, once the page has loaded, writes each image's ``naturalWidth``/``naturalHeight``
and ``alt`` as JSON into the DOM, and reads it back from ``chromium --headless --dump-dom``.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

_PROBE = """
<script>
window.addEventListener("load", () => {
  const out = Array.from(document.images).map(im => ({
    alt: im.alt, complete: im.complete, naturalWidth: im.naturalWidth,
    naturalHeight: im.naturalHeight, placeholder: !!im.closest("figure.placeholder"),
    marked: !!im.closest("figure.marked")}));
  const pre = document.createElement("pre");
  pre.id = "pgvision-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def chromium_or_skip() -> str:
    """The Chromium executable, or skip the test saying what to install."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("headless Chromium is absent: install Debian's chromium (apt-get install chromium) to check pages")


def rendered_images(page: str | os.PathLike, timeout_s: float = 60) -> list[dict]:
    """How each ``<img>`` of ``page`` rendered in headless Chromium.

    Returns:
        One dict per image, in document order: ``alt``, ``complete``, ``naturalWidth``,
        ``naturalHeight`` (0 for an image that did not decode), ``placeholder`` and
        ``marked`` (inside a ``figure.placeholder`` / ``figure.marked``).

    Raises:
        AssertionError: Chromium failed or the probe's result is absent from its output.
    """
    browser = chromium_or_skip()
    with tempfile.TemporaryDirectory(prefix="pgvision-chromium-") as tmp:
        probe_page = Path(tmp) / "page.html"
        probe_page.write_text(Path(page).read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"),
                              encoding="utf-8")
        proc = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp}/profile", "--virtual-time-budget=10000",
             "--dump-dom", probe_page.as_uri()],
            check=False, capture_output=True, text=True, timeout=timeout_s,
        )
    found = re.search(r'<pre id="pgvision-probe">(.*?)</pre>', proc.stdout, re.DOTALL)
    assert found, f"chromium gave no probe result (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def assert_all_rendered(page: str | os.PathLike) -> list[dict]:
    """Every ``<img>`` of ``page`` decoded in Chromium (``naturalWidth > 0``); returns them."""
    images = rendered_images(page)
    assert images, f"{page} has no image"
    broken = [im for im in images if not (im["complete"] and im["naturalWidth"] > 0 and im["naturalHeight"] > 0)]
    assert not broken, f"images that did not render in Chromium: {broken}"
    return images
