"""Sweeps (``personae/batch``): the sweep file, its expansion, running variants on worker threads
against the scripted backend, stopping and resuming a batch, and the report."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from personae.batch.report import batch_report, mean_sd
from personae.batch.rows import batches, variants
from personae.batch.runner import RunFinished, RunStarted, TurnFinished
from personae.batch.start import execute, plan_new, plan_resume
from personae.batch.sweep import Endpoint, expand, load_sweep
from personae.errors import ConfigError, UserError
from personae.llm.base import Backend, ChatRequest
from personae.llm.scripted import ScriptedBackend
from personae.store.repo import Store
from tests.builders import make_scenario

SWEEP = """\
name: demo
scenarios: [a.yaml, b.yaml]
vary: {layout: [named, classic], seed: [1, 2]}
max_turns: 3
endpoints: [{backend: ollama, concurrency: 3}]
"""


def write_sweep(folder: Path, text: str = SWEEP) -> Path:
    for name in ("a", "b"):
        (folder / f"{name}.yaml").write_text(
            make_scenario(name=f"scenario-{name}", extra="memory: {num_ctx: 4096}\n"), encoding="utf-8"
        )
    path = folder / "sweep.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class Counting:
    """Replies after a wait, as a server would, and records how many calls were in flight at
    once (what shows whether the workers really overlap)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.calls = 0

    def __call__(self, request: ChatRequest) -> str:
        with self.lock:
            self.now += 1
            self.calls += 1
            self.most = max(self.most, self.now)
        time.sleep(self.seconds)
        with self.lock:
            self.now -= 1
        return f"Point number {self.calls} about caching."


def opener(reply: Any) -> Any:
    opened: list[tuple[str | None, int | None]] = []

    def open_backend(endpoint: Endpoint, model: str | None, num_ctx: int | None) -> Backend:
        opened.append((model, num_ctx))
        return ScriptedBackend(default=reply, num_ctx=num_ctx or 4096)

    open_backend.opened = opened  # type: ignore[attr-defined]
    return open_backend


def test_expansion_is_the_cartesian_product_with_stable_keys(tmp_path: Path) -> None:
    loaded = load_sweep(write_sweep(tmp_path))
    found = expand(loaded)
    assert len(found) == 8
    assert [v.position for v in found] == list(range(8))
    assert found[0].key == "a.yaml|layout=named|seed=1"
    assert found[-1].key == "b.yaml|layout=classic|seed=2"
    assert {(v.scenario, v.layout, v.seed) for v in found} == {
        (s, layout, seed) for s in ("a.yaml", "b.yaml") for layout in ("named", "classic") for seed in (1, 2)
    }
    assert all(v.max_turns == 3 and v.path == str((tmp_path / v.scenario).resolve()) for v in found)
    assert [v.key for v in expand(load_sweep(write_sweep(tmp_path)))] == [v.key for v in found]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SWEEP.replace("seed: [1, 2]", "sede: [1, 2]"), "line 3, column"),
        (SWEEP.replace("b.yaml", "missing.yaml"), "sweep.yaml, line 2, column 21, at scenarios[1]: no scenario file or name 'missing.yaml'"),
        (SWEEP.replace("concurrency: 3", "concurrency: 0"), "endpoints[0].concurrency"),
        (SWEEP.replace("seed: [1, 2]", "seed: [-1]"), "vary.seed[0]"),
        ("- a list\n", "a sweep file must be a mapping"),
        (SWEEP + "vary: {}\n", "key 'vary' appears twice"),
        (SWEEP.replace("{backend: ollama, concurrency: 3}", "{backend: ollama, model: x}")
         .replace("seed: [1, 2]", "model: [x, y]"), "no endpoint serves model 'y'"),
    ],
)
def test_a_bad_sweep_is_one_message_with_its_place(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_sweep(write_sweep(tmp_path, text))
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "sweep.yaml")), message
    assert expected in message, message


def test_variants_run_concurrently_each_once(tmp_path: Path) -> None:
    reply = Counting(seconds=0.05)
    db = str(tmp_path / "b.db")
    store = Store.open(db)
    plan = plan_new(store, load_sweep(write_sweep(tmp_path)))
    events = list(execute(store, db, plan, opener(reply)))
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert sorted(e.key for e in finished) == sorted(v.key for v in expand(plan.sweep))
    assert {e.status for e in finished} == {"completed"}
    assert reply.most == 3  # three workers, never more, and they overlapped
    stored = variants(store, plan.batch_id)
    assert len({v.run_id for v in stored}) == 8 and all(v.run_status == "completed" for v in stored)
    for item in stored:  # each run has the settings of its variant
        run = store.run(item.run_id or 0)
        assert (run.layout, run.seed, run.max_turns, run.turns) == (item.variant.layout, item.variant.seed, 3, 3)
        assert run.scenario_name == f"scenario-{Path(item.variant.scenario).stem}"
    turns = [e for e in events if isinstance(e, TurnFinished)]
    assert len(turns) == 24 and reply.calls == 24
    (row, counts), = batches(store)
    assert (row.status, row.pid, counts) == ("completed", None, {"completed": 8})


def test_a_stopped_batch_resumes_without_running_a_variant_twice(tmp_path: Path) -> None:
    reply = Counting(seconds=0.02)
    db = str(tmp_path / "b.db")
    store = Store.open(db)
    plan = plan_new(store, load_sweep(write_sweep(tmp_path)))
    first = execute(store, db, plan, opener(reply))
    seen = []
    for event in first:
        seen.append(event)
        if sum(isinstance(e, RunFinished) for e in seen) == 2:
            break
    first.close()  # as Ctrl-C does: every worker stops after its current turn
    stored = variants(store, plan.batch_id)
    statuses = [v.run_status for v in stored]
    assert statuses.count("interrupted") >= 1 and statuses.count(None) >= 1, statuses
    assert [r.status for r, _ in batches(store)] == ["interrupted"]
    cut_short = {v.run_id: store.run(v.run_id).turns for v in stored if v.run_status == "interrupted"}
    assert all(0 < turns <= 3 for turns in cut_short.values()), cut_short

    again = plan_resume(store, plan.batch_id)
    assert again.done == statuses.count("completed")
    events = list(execute(store, db, again, opener(reply)))
    resumed = {e.run_id: e.resumed_after for e in events if isinstance(e, RunStarted) and e.resumed_after is not None}
    assert resumed == cut_short  # continued after their last turn, in the same runs
    stored = variants(store, plan.batch_id)
    assert all(v.run_status == "completed" for v in stored)
    with sqlite3.connect(tmp_path / "b.db") as db_file:
        assert db_file.execute("select count(*) from runs").fetchone() == (8,)
        assert db_file.execute(
            "select count(*) from (select run_id, turn from messages group by 1, 2 having count(*) > 1)"
        ).fetchone() == (0,)
        assert db_file.execute("select min(turns), max(turns) from runs").fetchone() == (3, 3)
    with pytest.raises(UserError, match="already completed"):
        plan_resume(store, plan.batch_id)


def test_the_report_puts_seeds_together(tmp_path: Path) -> None:
    db = str(tmp_path / "b.db")
    store = Store.open(db)
    plan = plan_new(store, load_sweep(write_sweep(tmp_path)))
    list(execute(store, db, plan, opener(Counting())))
    report = batch_report(store, plan.batch_id)
    assert len(report.runs) == 8
    assert [g.group for g in report.groups] == [
        "a.yaml|layout=named", "a.yaml|layout=classic", "b.yaml|layout=named", "b.yaml|layout=classic"
    ]
    for group in report.groups:
        lines = [r for r in report.runs if r.group == group.group]
        assert group.runs == group.completed == 2
        assert (group.evaluated_mean, group.evaluated_sd) == mean_sd([r.evaluated_tokens for r in lines])
        assert group.turns_mean == 3 and group.turns_sd == 0
        assert group.stop_reasons == "max_turns ×2"
    assert all(r.evaluated_tokens > 0 and r.sent_tokens >= r.evaluated_tokens for r in report.runs)
    assert all(r.good is not None and r.replies == 3 for r in report.runs)


def test_mean_sd() -> None:
    assert mean_sd([]) == (None, None)
    assert mean_sd([4.0]) == (4.0, None)
    assert mean_sd([1.0, 3.0]) == (2.0, pytest.approx(1.4142135))


def test_a_run_deleted_in_the_sqlite_shell_unlinks_its_variant(tmp_path: Path) -> None:
    db = str(tmp_path / "b.db")
    store = Store.open(db)
    plan = plan_new(store, load_sweep(write_sweep(tmp_path, SWEEP.replace("b.yaml", "a.yaml").replace("[a.yaml, a.yaml]", "[a.yaml]"))))
    list(execute(store, db, plan, opener(Counting())))
    store.close()
    with sqlite3.connect(tmp_path / "b.db") as shell:  # foreign keys off, as the shell has them
        run_id = shell.execute("select run_id from batch_variants order by id limit 1").fetchone()[0]
        shell.execute("delete from runs where id = ?", (run_id,))
        assert shell.execute("select count(*) from batch_variants where run_id = ?", (run_id,)).fetchone() == (0,)
        assert shell.execute("select count(*) from batch_variants where run_id is null").fetchone() == (1,)


VARS_SCENARIO = make_scenario(
    name="with-vars", goal="Decide on {thing}.", extra="vars: {thing: null}\nmemory: {num_ctx: 4096}\n"
)


def test_variables_and_options_are_axes_stored_with_each_run(tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text(VARS_SCENARIO, encoding="utf-8")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "name: v\nscenarios: [v.yaml]\nmax_turns: 1\noptions: {num_predict: 50}\n"
        "vary: {vars: {thing: [a cache, a queue]}, options: {temperature: [0.2, 0.8]}}\n",
        encoding="utf-8",
    )
    loaded = load_sweep(sweep)
    found = expand(loaded)
    assert [v.key for v in found] == [
        "v.yaml|var.thing=a cache|opt.temperature=0.2", "v.yaml|var.thing=a cache|opt.temperature=0.8",
        "v.yaml|var.thing=a queue|opt.temperature=0.2", "v.yaml|var.thing=a queue|opt.temperature=0.8",
    ]
    db = str(tmp_path / "b.db")
    store = Store.open(db)
    backend_requests: list[ChatRequest] = []

    def reply(request: ChatRequest) -> str:
        backend_requests.append(request)
        return "A point."

    plan = plan_new(store, loaded)
    list(execute(store, db, plan, opener(reply)))
    for item in variants(store, plan.batch_id):
        run = store.run(item.run_id or 0)
        assert run.status == "completed"
        assert run.variables == item.variant.variables and run.options == item.variant.options
        assert run.options == {"num_predict": 50, "temperature": item.variant.options["temperature"]}  # type: ignore[index]
    goals = {m.content for r in backend_requests for m in r.messages if "Decide on a" in m.content}
    assert any("a cache" in g for g in goals) and any("a queue" in g for g in goals)
    sent = sorted((r.options["temperature"], r.options["num_predict"]) for r in backend_requests)
    assert sent == [(0.2, 50), (0.2, 50), (0.8, 50), (0.8, 50)]


def test_a_missing_variable_or_a_bad_option_stops_the_sweep_before_it_is_stored(tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text(VARS_SCENARIO, encoding="utf-8")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("name: v\nscenarios: [v.yaml]\nvary: {seed: [1, 2]}\n", encoding="utf-8")
    store = Store.open(str(tmp_path / "b.db"))
    with pytest.raises(ConfigError, match="thing"):
        plan_new(store, load_sweep(sweep))
    assert batches(store) == []
    sweep.write_text("name: v\nscenarios: [v.yaml]\nvary: {options: {temperature: [0.2, hot]}}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_sweep(sweep)
    assert "sweep.yaml, line 3, column 37, at vary.options.temperature[1]:" in str(caught.value)


def test_a_persona_substitution_puts_another_persona_in_its_place(tmp_path: Path) -> None:
    (tmp_path / "personas").mkdir()
    (tmp_path / "personas" / "skeptic.yaml").write_text(
        "name: Skeptic\ndescription: doubts\nsystem: Doubt everything said so far.\n", encoding="utf-8"
    )
    policy = "policy: {type: phases, phases: [{name: p, speakers: [Planner, Critic]}]}\n"
    (tmp_path / "s.yaml").write_text(
        make_scenario(policy, name="subst", extra="memory: {num_ctx: 4096}\n"), encoding="utf-8"
    )
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "name: s\nscenarios: [s.yaml]\nmax_turns: 2\nvary: {personas: [{}, {Critic: Skeptic}]}\n",
        encoding="utf-8",
    )
    loaded = load_sweep(sweep)
    assert [v.key for v in expand(loaded)] == ["s.yaml|personas=-", "s.yaml|personas=Critic:Skeptic"]
    db = str(tmp_path / "b.db")
    store = Store.open(db)
    plan = plan_new(store, loaded)
    list(execute(store, db, plan, opener(Counting())))
    speakers = []
    for item in variants(store, plan.batch_id):
        run_id = item.run_id or 0
        assert store.run(run_id).status == "completed"
        speakers.append([m.persona for m in store.messages(run_id)])
        assert "Critic" not in [p.name for p in store.run_personas(run_id)] or not item.variant.personas
    assert speakers == [["Planner", "Critic"], ["Planner", "Skeptic"]]
    sweep.write_text("name: s\nscenarios: [s.yaml]\nvary: {personas: [{Critc: Skeptic}]}\n", encoding="utf-8")
    with pytest.raises(UserError, match="has no such persona"):
        plan_new(store, load_sweep(sweep))
