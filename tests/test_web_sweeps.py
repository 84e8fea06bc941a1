"""The viewer's sweeps and evals pages in-process (Starlette's test client), over a batch run by
``personae.batch`` and an eval run by ``personae.eval``, both on the scripted backend: the numbers
on the page are the report functions' own, every run link resolves, and a variant or method name
holding markup stays text."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from personae.batch.report import batch_report
from personae.batch.start import execute, plan_new
from personae.batch.sweep import load_sweep
from personae.eval.crews import crew_loader
from personae.eval.methods import CREW_SCENARIO, parse_method
from personae.eval.report import method_rows
from personae.eval.runner import Runner
from personae.eval.session import run_eval
from personae.eval.storage import load_eval
from personae.eval.tasks import Task
from personae.llm.scripted import ScriptedBackend
from personae.store.repo import Store
from personae.web.app import make_app
from tests.builders import make_scenario
from tests.test_batch import Counting, opener
from tests.test_eval import crew_model

LOOPBACK = "http://127.0.0.1"
MARKUP = "<script>alert(1)</script>"
SCENARIO = "<script>s.yaml"  # a file name: the variant's key begins with it

SWEEP = f"""\
name: '{MARKUP}'
scenarios: ['{SCENARIO}', plain.yaml]
vary: {{layout: [named], seed: [1, 2]}}
max_turns: 2
endpoints: [{{backend: ollama, concurrency: 2}}]
"""


def make_batch(store: Store, db: Path, folder: Path) -> int:
    for name in (SCENARIO, "plain.yaml"):
        (folder / name).write_text(make_scenario(name="cache", extra="memory: {num_ctx: 4096}\n"), encoding="utf-8")
    sweep = folder / "sweep.yaml"
    sweep.write_text(SWEEP, encoding="utf-8")
    plan = plan_new(store, load_sweep(sweep))
    list(execute(store, str(db), plan, opener(Counting())))
    return plan.batch_id


def make_eval(store: Store, folder: Path) -> int:
    """single, sc:2 and a crew read from a file whose name holds markup; the Checker and the
    Decider are right, the Solver and a single call are right on q1 only."""
    crew_file = folder / f"{MARKUP.replace('/', '')}.yaml"
    shutil.copy(CREW_SCENARIO, crew_file)
    tasks = [Task(f"q{i}", f"What is {i} + 1?", str(i + 1), "number") for i in range(1, 4)]
    methods = [parse_method(s) for s in ("single", "sc:2", f"crew:{crew_file}")]
    load, _ = crew_loader(methods, tasks, default_num_ctx=2048)

    reply = crew_model(tasks, lambda task: "2" if task.id == "q1" else "0")
    runner = Runner(ScriptedBackend(default=reply), store, load, seed=1)
    return run_eval(store, runner, tasks=tasks, methods=methods, tasks_source=MARKUP, budget=None)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    folder = tmp_path_factory.mktemp("sweeps")
    db = folder / "s.db"
    with Store.open(db) as store:
        batch_id = make_batch(store, db, folder)
        eval_id = make_eval(store, folder)
    return db, batch_id, eval_id


@pytest.fixture(scope="module")
def store(made: tuple[Path, int, int]) -> Iterator[Store]:
    with Store.open_readonly(made[0]) as opened:
        yield opened


@pytest.fixture(scope="module")
def client(store: Store) -> TestClient:
    return TestClient(make_app(store), base_url=LOOPBACK)


def run_links(html: str) -> list[str]:
    return re.findall(r'href="(/runs/\d+)"', html)


def test_the_batch_page_shows_the_reports_numbers_and_links_every_run(
    client: TestClient, store: Store, made: tuple[Path, int, int]
) -> None:
    _db, batch_id, _eval_id = made
    report = batch_report(store, batch_id)
    data = client.get(f"/batches/{batch_id}?format=json").json()
    assert data["runs"] == report.as_json()["runs"] and data["groups"] == report.as_json()["groups"]
    assert [g["runs"] for g in data["groups"]] == [2, 2] and all(r["status"] == "completed" for r in data["runs"])
    assert all(r["evaluated_tokens"] > 0 and r["turns"] == 2 for r in data["runs"])
    html = client.get(f"/batches/{batch_id}").text
    links = run_links(html)
    assert sorted(links) == sorted(f"/runs/{r.run}" for r in report.runs)
    for link in links:
        assert client.get(link).status_code == 200, link
    text = unescape(re.sub(r"<[^>]+>", " ", html))
    for group in report.groups:  # each group's evaluated tokens as mean ± sd, as the report has them
        assert group.evaluated_mean is not None and group.evaluated_sd is not None
        assert f"{group.evaluated_mean:.0f} ± {group.evaluated_sd:.0f}" in text
        assert group.stop_reasons in text
    listing = client.get("/batches?format=json").json()["batches"]
    assert [(b["id"], b["name"], b["runs"]) for b in listing] == [(batch_id, MARKUP, {"completed": 4})]
    assert f'href="/batches/{batch_id}"' in client.get("/batches").text


def test_the_eval_page_shows_the_reports_numbers_and_each_items_runs(
    client: TestClient, store: Store, made: tuple[Path, int, int]
) -> None:
    _db, _batch_id, eval_id = made
    stored = load_eval(store, eval_id)
    data = client.get(f"/evals/{eval_id}?format=json").json()
    assert data["methods"] == method_rows(stored)
    rows = {r["method"]: r for r in data["methods"]}
    crew = next(name for name in rows if name.startswith("crew:"))
    assert (rows["single"]["correct"], rows[crew]["correct"]) == (1, 3)
    assert rows[crew]["vs"]["single"]["crew_only_correct"] == 2 and rows[crew]["flips"]["wrong_to_right"] == 2
    html = client.get(f"/evals/{eval_id}").text
    text = unescape(re.sub(r"<[^>]+>", " ", html))
    for row in data["methods"]:
        assert f"{row['ci_low'] * 100:.1f}–{row['ci_high'] * 100:.1f}%" in text
        assert f"{row['correct']} / {row['items']}" in text
    assert [i["task_id"] for i in data["items"]] == ["q1", "q2", "q3"]
    expected = sorted(f"/runs/{r}" for result in stored.results for r in result.run_ids)
    assert sorted(run_links(html)) == expected and len(expected) == 3 * (1 + 2 + 1)
    for link in set(expected):
        assert client.get(link).status_code == 200, link
    listing = client.get("/evals?format=json").json()["evals"]
    assert [(e["id"], e["items"]) for e in listing] == [(eval_id, 3)]
    row = re.search(r'<tr data-eval="%d">(.*?)</tr>' % eval_id, client.get("/evals").text, re.S)
    assert row and '<td class="num">3</td>' in row.group(1) and f'href="/evals/{eval_id}"' in row.group(1)


def test_names_holding_markup_stay_text(client: TestClient, made: tuple[Path, int, int]) -> None:
    _db, batch_id, eval_id = made
    for path in ("/batches", f"/batches/{batch_id}", "/evals", f"/evals/{eval_id}"):
        response = client.get(path)
        assert response.status_code == 200 and "<script>" not in response.text, path
        assert "&lt;script&gt;" in response.text, path
        for tag in re.findall(r"<script\b[^>]*>", response.text):
            assert "src=" in tag, (path, tag)
        assert "script-src 'self'" in response.headers["content-security-policy"]


def test_nav_links_and_unknown_ids(client: TestClient) -> None:
    home = client.get("/").text
    assert 'href="/batches"' in home and 'href="/evals"' in home
    for path, sentence in (("/batches/99", "No batch 99"), ("/evals/99", "No eval 99")):
        assert client.get(path).status_code == 404 and sentence in client.get(path).text
        assert client.get(f"{path}?format=json").json()["error"].startswith(sentence)
    assert client.get("/evals/99999999999999999999999").status_code == 404


def test_a_batch_not_started_yet_shows_its_variants_pending(tmp_path: Path) -> None:
    """Planned, not run (as a batch killed before its first run): every variant pending, no run
    link, the groups' means empty rather than zero."""
    for name in (SCENARIO, "plain.yaml"):
        (tmp_path / name).write_text(make_scenario(name="cache"), encoding="utf-8")
    (tmp_path / "sweep.yaml").write_text(SWEEP, encoding="utf-8")
    with Store.open(tmp_path / "p.db") as writer:
        batch_id = plan_new(writer, load_sweep(tmp_path / "sweep.yaml")).batch_id
    with Store.open_readonly(tmp_path / "p.db") as store:
        client = TestClient(make_app(store), base_url=LOOPBACK)
        data = client.get(f"/batches/{batch_id}?format=json").json()
        assert data == {**batch_report(store, batch_id).as_json(), **{k: data[k] for k in
                        ("sweep_path", "variants", "started_at", "finished_at")}}
        assert [r["status"] for r in data["runs"]] == ["pending"] * 4
        assert [(g["completed"], g["evaluated_mean"]) for g in data["groups"]] == [(0, None), (0, None)]
        html = client.get(f"/batches/{batch_id}").text
        assert run_links(html) == [] and html.count("not started") == 4
        assert client.get("/batches?format=json").json()["batches"][0]["runs"] == {"pending": 4}
