"""The viewer in a real browser: Debian's Chromium driven by Playwright (it cannot download its
own browsers here, so it is pointed at /usr/bin/chromium), against one server per module.

The database holds a run of the real embedded model, started as a `personae run` subprocess
while the browser watches its page (the live update), and the edge-case run of
tests/web_support.py, whose every reply carries a `<script>`, an `<img onerror>` and a
`javascript:` link that would set `window.__pwned`: the tests assert it never is, in every page
and in the exported file opened from disk.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from personae.store.repo import Store
from personae.web.app import make_app
from personae.web.export import run_html
from personae.web.serve import Address, listen
from tests.builders import make_scenario, roster
from tests.conftest import personae_cmd
from tests.web_support import PAYLOAD, counts, crafted_run

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("PERSONAE_CHROMIUM", "/usr/bin/chromium")
CRAFTED, REAL = 1, 2
LIVE_WAIT_MS = 240_000
# Counts what a page did that it must not: the payload's flag, dialogs, blocked inline script.
WATCH = (
    "window.__violations = 0;"
    "document.addEventListener('securitypolicyviolation', () => { window.__violations += 1; });"
)

def real_scenario() -> str:
    personas = roster(["Planner", "Critic"], options="{num_predict: 16, temperature: 0}")
    policy = (
        "policy:\n  type: phases\n  phases:\n"
        "    - {name: plan, speakers: [Planner]}\n"
        "    - {name: debate, speakers: [Critic, Planner], rounds: 1}\n"
    )
    return make_scenario(
        name="viewer-live", goal="Decide whether the orders API needs a cache.",
        context="p99 latency is 900 ms at 1,200 requests a second.", personas=personas,
        policy=policy, extra="termination: {max_turns: 3}\n",
    )


@dataclass
class Site:
    base: str
    db: Path
    folder: Path
    run: subprocess.Popen[str]

    def finished(self) -> None:
        """Wait for the real run to end; it must have ended well."""
        out, err = self.run.communicate(timeout=600)
        assert self.run.returncode == 0, err[-2000:]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    import uvicorn

    folder = tmp_path_factory.mktemp("viewer")
    db = folder / "viewer.db"
    assert crafted_run(db) == CRAFTED
    store = Store.open_readonly(db)
    sock, where = listen(Address("127.0.0.1", 0, None))
    server = uvicorn.Server(uvicorn.Config(make_app(store), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    scenario = folder / "live.yaml"
    scenario.write_text(real_scenario(), encoding="utf-8")
    env = {**os.environ, "PERSONAE_DB": str(db), "PYTHONIOENCODING": "utf-8"}
    run = subprocess.Popen(
        personae_cmd("run", str(scenario), "--backend", "embedded", "--quiet"),
        env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        yield Site(f"http://127.0.0.1:{where.port}", db, folder, run)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():  # .ci/run installs it; fail and say so, never skip silently
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium (see .ci/run)", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(WATCH)
    opened = context.new_page()
    opened.dialogs = []  # type: ignore[attr-defined]
    opened.on("dialog", lambda d: (opened.dialogs.append(d.message), d.dismiss()))
    yield opened
    context.close()


def messages(db: Path, run_id: int) -> list[tuple[int, str, str]]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "select turn, persona, content from messages where run_id = ? order by turn", (run_id,)
        ).fetchall()


def wait_for_run_row(db: Path, run_id: int, site: Site) -> None:
    for _ in range(600):
        with sqlite3.connect(db) as connection:
            if connection.execute("select 1 from runs where id = ?", (run_id,)).fetchone():
                return
        assert site.run.poll() is None, site.run.communicate()[1][-2000:]
        time.sleep(0.1)
    raise AssertionError("the real run never wrote its run row")


def assert_inert(page: Any) -> None:
    """Nothing the payload carries ran, rendered as an element, or was even tried."""
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    page.wait_for_timeout(200)
    assert page.evaluate("window.__pwned") is None, page.url
    assert page.evaluate("window.__violations") == 0, page.url  # no inline script was attempted
    assert page.dialogs == [], page.url
    assert page.locator("img").count() == 0, page.url
    assert page.locator("a[href^='javascript:' i]").count() == 0, page.url


def test_live_update_while_the_real_run_goes_on(site: Site, page: Any) -> None:
    wait_for_run_row(site.db, REAL, site)
    page.goto(f"{site.base}/runs/{REAL}")
    assert page.locator("#live-badge").inner_text() == "LIVE", "the run ended before the page opened"
    shown = page.locator("#transcript article.msg").count()
    # Functions, not expression strings: Playwright evaluates a string with eval, which the
    # page's Content-Security-Policy forbids.
    page.wait_for_function(
        "(n) => document.querySelectorAll('#transcript article.msg').length > n", arg=shown,
        timeout=LIVE_WAIT_MS,
    )
    page.wait_for_function(
        "() => document.getElementById('live-badge').textContent === 'completed'", timeout=LIVE_WAIT_MS
    )
    site.finished()
    stored = messages(site.db, REAL)
    assert len(stored) == 3
    articles = page.locator("#transcript article.msg")
    assert articles.count() == 3  # each turn once, none twice
    for i, (turn, persona, content) in enumerate(stored):
        article = articles.nth(i)
        assert article.get_attribute("data-turn") == str(turn)
        assert article.locator(".who").inner_text() == persona
        assert article.locator(".text").inner_text().strip() == (content.strip() or "(empty reply)")
    assert page.locator("#run-turns").inner_text() == "3"


def test_the_transcript_by_phase_in_persona_colours(site: Site, page: Any) -> None:
    site.finished()
    page.goto(f"{site.base}/runs/{REAL}")
    phases = page.locator("h3.phase")
    assert [phases.nth(i).get_attribute("data-phase") for i in range(phases.count())] == ["plan", "debate"]
    stored = messages(site.db, REAL)
    for turn, persona, content in stored:
        article = page.locator(f"#turn-{turn}")
        assert article.locator(".text").inner_text().strip() == (content.strip() or "(empty reply)")
        colour = "pc0" if persona == "Planner" else "pc1"
        assert colour in (article.get_attribute("class") or "")
    assert page.locator("#status-badge").inner_text() == "completed"
    assert_inert(page)


def test_a_turns_prompt_by_section_and_the_diff(site: Site, page: Any) -> None:
    site.finished()
    store = Store.open_readonly(site.db)
    try:
        kept = [c for c in store.calls(REAL) if c.turn == 2 and c.purpose == "turn"][-1]
    finally:
        store.close()
    page.goto(f"{site.base}/runs/{REAL}/turns/2")
    rows = page.locator(f"#call-{kept.id} table.manifest tbody tr")
    assert [rows.nth(i).get_attribute("data-section") for i in range(rows.count())] == [
        e["section"] for e in kept.manifest
    ]
    cached = kept.prompt_tokens - kept.evaluated_tokens
    assert page.locator(f"#call-{kept.id} .cached").inner_text() == f"{cached} reused from the cache"
    sent = page.locator(f"#call-{kept.id} pre.prompt-message").all_inner_texts()
    assert [s.strip() for s in sent] == [m["content"].strip() for m in kept.prompt]
    transcript = page.locator("#diff-sections tr[data-section='transcript'] td")
    assert transcript.nth(1).inner_text() == "changed" and transcript.nth(4).inner_text().strip() == "+1"
    assert page.locator("#diff-lines .add").count() > 0
    assert page.locator("h2#diff").inner_text().startswith("What changed since turn 1")


def test_the_memory_graph_is_drawn_and_answers_clicks(site: Site, page: Any) -> None:
    page.goto(f"{site.base}/runs/{CRAFTED}/memory")
    page.wait_for_selector("#graph[data-drawn]")
    nodes = counts(site.db, CRAFTED)["nodes"]
    assert page.locator("#graph").get_attribute("data-drawn") == str(nodes)
    assert page.evaluate("personaeGraph.nodes().length") == nodes
    assert page.evaluate("personaeGraph.edges().length") == counts(site.db, CRAFTED)["edges"]
    fact = page.evaluate("personaeGraph.nodes('[kind = \"fact\"]')[0].data('full')")
    position = page.evaluate(f"personaeGraph.$('#n{fact['id']}').renderedPosition()")
    box = page.locator("#graph").bounding_box()
    page.mouse.click(box["x"] + position["x"], box["y"] + position["y"])
    info = page.locator("#node-info")
    assert info.locator(".text").inner_text() == fact["text"]  # the payload, as text
    assert "turns:" in info.inner_text() and info.locator("a").count() == len(fact["turns"])
    zoom = page.evaluate("personaeGraph.zoom()")
    page.mouse.move(box["x"] + 30, box["y"] + 30)
    page.mouse.wheel(0, -400)
    page.wait_for_timeout(200)
    assert page.evaluate("personaeGraph.zoom()") > zoom
    pan = page.evaluate("personaeGraph.pan()")
    page.mouse.move(box["x"] + 5, box["y"] + 5)
    page.mouse.down()
    page.mouse.move(box["x"] + 85, box["y"] + 65, steps=5)
    page.mouse.up()
    assert page.evaluate("personaeGraph.pan()") != pan
    assert_inert(page)


def test_search_from_the_header_to_the_turn(site: Site, page: Any) -> None:
    page.goto(f"{site.base}/")
    assert page.locator("#runs tbody tr").count() >= 1
    box = page.locator("header.top input[type=search]")
    box.fill("eviction")
    box.press("Enter")
    page.wait_for_url(re.compile(r"/search\?q=eviction"))
    hits = page.locator(".message-hit")
    assert hits.count() >= 1 and "eviction" in hits.first.locator(".snip").inner_text().lower()
    hits.first.locator("a").first.click()
    page.wait_for_url(re.compile(rf"/runs/{CRAFTED}/turns/\d+$"))
    assert page.locator("h1").inner_text().startswith(f"Run {CRAFTED} · turn")


def test_the_payload_stays_inert_in_every_page(site: Site, page: Any) -> None:
    addresses = [
        "/", f"/runs/{CRAFTED}", f"/runs/{CRAFTED}/memory", "/search?q=pwned",
        *(f"/runs/{CRAFTED}/turns/{t}" for t in (1, 2, 3, 4, 9)),
    ]
    for address in addresses:
        page.goto(site.base + address)
        assert_inert(page)
    page.goto(f"{site.base}/runs/{CRAFTED}")
    text = page.locator("#turn-3 .text").inner_text()
    assert PAYLOAD in text  # shown as the text the model wrote
    page.locator("#turn-3 details.cut summary").click()
    assert "Planner: I was never asked." in page.locator("#turn-3 details.cut pre").inner_text()
    assert_inert(page)


def test_the_exported_file_opens_from_disk_with_the_graph(site: Site, page: Any, tmp_path: Path) -> None:
    path = tmp_path / "run.html"
    with Store.open_readonly(site.db) as store:
        path.write_text(run_html(store, CRAFTED), encoding="utf-8")
    away = tmp_path / "elsewhere"
    away.mkdir()
    moved = Path(shutil.move(str(path), away / "mailed.html"))  # one file, nothing beside it
    page.goto(moved.as_uri())
    page.wait_for_selector("#graph[data-drawn]")
    assert page.locator("#graph").get_attribute("data-drawn") == str(counts(site.db, CRAFTED)["nodes"])
    assert page.locator("#transcript article.msg").count() == 13
    assert "guard: attempt 2 of 2 kept" in page.locator("#turn-1").inner_text()
    assert PAYLOAD in page.locator("#turn-5 .text").inner_text()
    assert page.locator("#node-info").inner_text().startswith("Click a node")
    # A function that returns nothing: returning the collection would make Playwright walk
    # cytoscape's whole object graph to serialise it (over a minute).
    page.evaluate("() => { personaeGraph.nodes('[kind = \"fact\"]')[0].emit('tap'); }")
    assert PAYLOAD in page.locator("#node-info .text").inner_text()
    assert page.locator("#node-info a").count() == 0  # no links to a server that is not there
    assert_inert(page)


def test_a_batch_and_an_eval_side_by_side(page: Any, tmp_path: Path) -> None:
    """The sweeps and evals pages of tests/test_web_sweeps.py's database, in the browser: the
    markup in the names shows as text, nothing ran, and a variant's run link opens its run."""
    import uvicorn

    from tests.test_web_sweeps import MARKUP, make_batch, make_eval

    db = tmp_path / "sweeps.db"
    with Store.open(db) as writer:
        batch_id = make_batch(writer, db, tmp_path)
        eval_id = make_eval(writer, tmp_path)
    store = Store.open_readonly(db)
    sock, where = listen(Address("127.0.0.1", 0, None))
    server = uvicorn.Server(uvicorn.Config(make_app(store), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{where.port}"
    try:
        page.goto(f"{base}/batches/{batch_id}")
        assert MARKUP in page.locator("h1").inner_text()
        assert page.locator("#groups tbody tr").count() == 2
        assert page.locator("#variants tbody tr").count() == 4
        assert_inert(page)
        page.locator("#variants a").first.click()
        page.wait_for_url(re.compile(r"/runs/\d+$"))
        assert page.locator("#transcript article.msg").count() == 2
        page.goto(f"{base}/evals/{eval_id}")
        methods = page.locator("#methods tbody tr")
        assert methods.count() == 3 and "<script>" in methods.nth(2).locator("td").first.inner_text()
        assert page.locator("#items tbody tr").count() == 3
        assert_inert(page)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        store.close()
