"""The book as a reader opens it: built in fast mode from notebook 00, read from file:// in headless chromium.

The front page must link the notebook's page; that page must draw every plotly figure (an `svg.main-svg` inside
each `.js-plotly-plot`), typeset its equations (MathJax, as the browser's own MathML), show the panel's snapshot
and the fast-mode label, with no console error, no failed load and no request that leaves the machine. Screenshots: test-output/browser/.
"""

import os
import subprocess
import sys
import time

import pytest
from browser_support import browser_page, screenshot

pytestmark = pytest.mark.browser

BUILD_S = 15 * 60  # s: one fast-mode notebook, kernel start and backbone load on 2 shared cores
DRAW_MS = 60_000  # ms: plotly.js and MathJax on a page of a dozen figures


def test_fast_book_opens_offline_with_its_figures(tmp_path):
    out = tmp_path / "book"
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "holomerge_lab.tour.book", "--fast", "--notebooks", "00", "--out", str(out)],
        check=True, timeout=BUILD_S, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    print(f"the fast-mode book of notebook 00 built in {time.perf_counter() - began:.0f} s")
    problems, requests = [], []
    with browser_page(tmp_path) as page:
        page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
        page.on("request", lambda r: requests.append(r.url))
        page.goto((out / "index.html").as_uri())
        assert "Fast-mode preview" in page.locator(".hm-book-fast").inner_text()
        screenshot(page, "book-front")
        page.locator('a[href="00_tour.html"]').first.click()
        page.wait_for_url("**/00_tour.html")
        figures = page.locator("div.plotly-graph-div").count()
        assert figures >= 2  # the data figure and the panel's, at least
        page.wait_for_function(
            "[...document.querySelectorAll('div.plotly-graph-div')].every("
            "d => d.classList.contains('js-plotly-plot') && d.querySelector('svg.main-svg'))",
            timeout=DRAW_MS,
        )
        page.wait_for_function(
            "document.querySelectorAll('.MathJax_MathContainer math').length > 0", timeout=DRAW_MS
        )
        assert (
            page.locator(".MathJax_Error, merror").count() == 0
            and "$$" not in page.locator("main").inner_text()
        )
        assert page.locator(".hm-book-widget input[type=checkbox]").count() >= 3  # the three stage toggles
        assert "Fast-mode preview" in page.locator(".hm-book-banner").inner_text()
        page.wait_for_timeout(1000)  # late errors (fonts, a script's second stage) land in the lists
        screenshot(page, "book-00-tour")
    assert problems == []
    assert requests and all(url.startswith("file://") for url in requests), [
        u for u in requests if "file:" not in u
    ]
