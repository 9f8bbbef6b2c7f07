"""``gitstate ui`` in a real browser: headless Chromium (the system's, via Playwright) through the timeline, a
diff, a key chart, live updates and a restore, then the store's history checked with real ``git log``.

Screenshots land in ``docs/`` (the README shows them). Without Chromium or Playwright the tests skip, except
when ``CI`` is set, where they fail.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import git, make_store

from gitstate.ui import UIServer, make_server

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parent.parent / "docs"
XSS = "<img src=x onerror=window.__xss=1>"


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    why = _missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run in CI: {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[UIServer]:
    with make_store(tmp_path / "s", durability="immediate") as first:
        for n in (3, 5, 4, 8, 6, 9):
            first.set("metrics.json", "requests", n)
    (tmp_path / "s" / "state.json").write_text('{"services": {"slack": true, "email": false}}\n')
    store = make_store(tmp_path / "s", durability="immediate")  # opening commits the hand edit (actor human)
    store.set("state.json", "note", XSS)
    store.snapshot("before-upgrade")
    store.set("state.json", "services.slack", False)
    server = make_server(store, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        store.close()


def test_timeline_diff_chart_live_and_restore(browser: Any, served: UIServer, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(served.url)

    # The timeline: every commit, actor label and colour, the snapshot marked.
    rows = page.locator("#timeline li")
    expect(rows).to_have_count(9)
    expect(rows.first.locator(".actor")).to_have_text("library")
    expect(rows.first).to_have_class(re.compile("a-library"))
    expect(page.locator("#timeline .snap")).to_have_text("⚑ before-upgrade")
    expect(page.locator("#timeline li.a-human")).to_have_count(1)

    # A document value that looks like HTML is shown as text, never run.
    expect(page.locator("#docs")).to_contain_text(XSS)
    assert page.locator("#docs img, #timeline img").count() == 0
    assert page.evaluate("window.__xss") is None and not dialogs

    # A diff: click a commit.
    rows.first.click()
    expect(page.locator("#diff li")).to_have_text(["~ state.json: services.slack: true → false"])

    # A key's history as a chart: click the key in the document tree.
    page.locator("#docs .k", has_text="requests").click()
    expect(page.locator("#key-chart circle")).to_have_count(6)
    expect(page.locator("#key-values li")).to_have_count(6)
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "ui-timeline.png"), full_page=True)

    # Live: a write by another store appears without reloading.
    with make_store(tmp_path / "s", durability="immediate") as other:
        other.set("metrics.json", "requests", 12)
    expect(rows).to_have_count(10, timeout=10_000)
    expect(page.locator("#head")).to_have_text(f"HEAD {git(tmp_path / 's', 'rev-parse', 'HEAD').strip()[:8]}")

    # Restore one document to the snapshot: preview the diff, confirm, lands as a commit.
    snap_row = page.locator("#timeline li", has=page.locator(".snap"))
    snap_row.click()
    page.locator("#docs .doc", has_text="state.json").locator(".restore-doc").click()
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-changes li")).to_have_text(["~ state.json: services.slack: false → true"])
    page.screenshot(path=str(DOCS / "ui-restore.png"), full_page=True)
    page.locator("#confirm-yes").click()
    expect(rows).to_have_count(11)
    expect(rows.first.locator(".actor")).to_have_text("human")  # a person clicked it (SPEC: ui actions are human)

    log = git(tmp_path / "s", "log", "--format=%s").splitlines()
    assert len(log) == 11 and log[0].startswith("restore state.json to ")
    assert '"slack": true' in git(tmp_path / "s", "show", "HEAD:state.json")
    assert not dialogs
    page.close()
