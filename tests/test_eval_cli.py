"""`personae eval` as a user runs it: real subprocesses, real SQLite files, the real embedded
model for the whole pipeline (all five methods on two items)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from personae.eval.answers import extract
from tests.cli_batch import run_batch

pytestmark = pytest.mark.slow

GOOD = '{"id": "q%d", "question": "What is %d + 1?", "answer": "%d"}'


def test_bad_task_files_and_flags_exit_2_naming_the_line(tmp_path: Path, cli_env: dict[str, str],
                                                         isolated_env: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    missing.write_text("\n".join([GOOD % (i, i, i + 1) for i in range(1, 4)]
                                 + ['{"id": "q4", "question": "What is 4 + 1?"}']) + "\n", encoding="utf-8")
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([GOOD % (i, i, i + 1) for i in range(1, 7)]
                                + ['{"id": "q7", "question": "What is 7 + 1?", "answer": 8']) + "\n",
                      encoding="utf-8")
    good = tmp_path / "good.jsonl"
    good.write_text(GOOD % (1, 1, 2) + "\n", encoding="utf-8")
    results = run_batch([
        ["eval", str(missing), "-m", "single"],
        ["eval", str(broken), "-m", "single"],
        ["eval", str(tmp_path / "none.jsonl")],
        ["eval", str(good), "-m", "sc:zero"],
        ["eval", "report", "3"],
        ["eval", str(good), "--budget", "matched", "-m", "single"],
    ], cli_env, tmp_path / "out")
    expected = [
        f"{missing}, line 4: missing 'answer'",
        f"{broken}, line 7: invalid JSON",
        f"No task file {tmp_path / 'none.jsonl'}",
        "-m sc:zero: K must be a whole number",
        "No database at",
        "--budget matched takes the budget from a crew",
    ]
    for result, text in zip(results, expected):
        assert result.returncode == 2, (result.args, result.stderr)
        assert "Traceback" not in result.stderr
        flat = " ".join(result.stderr.split())
        assert flat.startswith("Error: ") and text in flat, (result.args, flat)
        assert result.stdout == ""
    assert not isolated_env.exists()  # every mistake is found before a database is opened


def test_five_methods_on_the_real_model_end_to_end(tmp_path: Path, cli_env: dict[str, str],
                                                   isolated_env: Path) -> None:
    tasks = tmp_path / "two.jsonl"
    tasks.write_text('{"id": "paris", "question": "What is the capital of France?", "answer": "Paris"}\n'
                     '{"id": "five", "question": "What is 2 + 3?", "answer": "5"}\n', encoding="utf-8")
    ran, report, listed = run_batch([
        ["eval", str(tasks), "-m", "single", "-m", "cot", "-m", "sc", "-m", "crew", "-m", "vote:crew",
         "--budget", "matched", "--backend", "embedded", "--format", "json", "-q"],
        ["eval", "report", "1", "--format", "json"],
        ["evals", "--format", "json"],
    ], cli_env, tmp_path / "out", timeout=1500)
    assert ran.returncode == 0, ran.stderr
    rows = json.loads(ran.stdout)
    assert [r["method"] for r in rows] == ["single", "cot", "sc", "crew", "vote:crew"]
    for row in rows:
        assert row["items"] == 2 and 0 <= row["correct"] <= 2
        assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]
        assert row["evaluated_tokens_per_item"] > 0 and row["wall_seconds"] > 0
    crew = rows[3]
    assert set(crew["vs"]) == {"single", "cot", "sc", "vote:crew"} and crew["flips"]["items"] == 2
    assert rows[0]["budget_tokens"] == round(_median_crew_cost(isolated_env))
    assert json.loads(report.stdout) == rows  # reprinted from the store alone
    [listing] = json.loads(listed.stdout)
    assert listing["status"] == "completed" and listing["items"] == 2
    db = sqlite3.connect(isolated_env)
    runs_of = {spec: [json.loads(ids) for (ids,) in db.execute(
        "select run_ids from eval_results r join eval_methods m on m.id = r.method_id "
        "where m.spec = ? order by r.item_id", (spec,))] for spec in ("single", "cot", "sc", "crew", "vote:crew")}
    assert runs_of["vote:crew"] == runs_of["crew"]  # one deliberation, read two ways
    run_ids = [i for spec in ("single", "cot", "sc", "crew") for ids in runs_of[spec] for i in ids]
    assert len(run_ids) == len(set(run_ids)) >= 2 * 4
    for run_id in run_ids:  # each one a completed run whose calls were stored
        status, calls = db.execute(
            "select status, (select count(*) from llm_calls c where c.run_id = r.id) from runs r where id = ?",
            (run_id,)).fetchone()
        assert status == "completed" and calls >= 1


def _median_crew_cost(db_path: Path) -> float:
    db = sqlite3.connect(db_path)
    costs = sorted(p + c for p, c in db.execute(
        "select evaluated_prompt_tokens, completion_tokens from eval_results r "
        "join eval_methods m on m.id = r.method_id where m.spec = 'crew'"))
    return (costs[0] + costs[1]) / 2


SHORT_LOG = """# Harbour log

## Spring

The ferry Puffin ran twice a day. The harbour master counted 12 boats on the slip.

## Autumn

The crane on the north quay broke in October. Mrs Fraser ordered a new crane hook from Bell and Sons.
"""


def test_a_document_task_single_with_retrieval_and_a_chain_on_the_real_model(
        tmp_path: Path, cli_env: dict[str, str], isolated_env: Path) -> None:
    """Two questions about a short log: `single` is one call whose prompt holds passages of it,
    the chain (the shipped recipe, its document line taken out so it reads the task's) walks
    every chunk and its Manager answers; no chain prompt passes the recipe's 1,024 window."""
    (tmp_path / "log.md").write_text(SHORT_LOG, encoding="utf-8")
    tasks = tmp_path / "log.jsonl"
    tasks.write_text(
        '{"id": "hook", "question": "Who ordered the crane hook?", "answer": "Fraser", '
        '"check": "regex", "documents": ["log.md"]}\n'
        '{"id": "boats", "question": "How many boats were on the slip?", "answer": "12", '
        '"documents": ["log.md"]}\n', encoding="utf-8")
    recipe = Path(__file__).resolve().parent.parent / "personae/builtin/scenarios/chain-of-agents.yaml"
    chain = tmp_path / "chain.yaml"
    chain.write_text(recipe.read_text(encoding="utf-8").replace("documents: [docs/keepers-log.md]\n", ""),
                     encoding="utf-8")
    [ran] = run_batch([["eval", str(tasks), "-m", "single", "-m", f"crew:{chain}", "--backend", "embedded",
                        "--format", "json", "-q"]], cli_env, tmp_path / "out", timeout=1200)
    assert ran.returncode == 0, ran.stderr
    rows = {r["method"]: r for r in json.loads(ran.stdout)}
    assert set(rows) == {"single", f"crew:{chain}"} and all(r["items"] == 2 for r in rows.values())
    db = sqlite3.connect(isolated_env)
    results = db.execute("select m.kind, r.answer, r.reply, r.run_ids from eval_results r "
                         "join eval_methods m on m.id = r.method_id").fetchall()
    for kind, answer, reply, run_ids in results:
        [run_id] = json.loads(run_ids)
        chunks = db.execute("select count(*) from memory_nodes where run_id = ? and kind = 'chunk'",
                            (run_id,)).fetchone()[0]
        assert chunks == 2  # the task's document was imported into each run
        calls = db.execute("select prompt_tokens, manifest from llm_calls where run_id = ? and purpose = 'turn'",
                           (run_id,)).fetchall()
        if kind == "single":
            [(_, manifest)] = calls
            sections = {s["section"]: s for s in json.loads(manifest)}
            assert sections["memory/documents"]["node_ids"]  # passages in the one prompt
            continue
        personas = [p for (p,) in db.execute("select persona from messages where run_id = ? order by id", (run_id,))]
        assert personas == ["Worker", "Worker", "Manager"]
        assert all(0 < tokens <= 1024 for tokens, _ in calls)
        manager = db.execute("select raw, structured from messages where run_id = ? and persona = 'Manager'",
                             (run_id,)).fetchone()
        assert reply == manager[0]  # the raw reply is kept; the answer comes from its field
        assert answer == extract(json.loads(manager[1])["answer"], reasoned=True)
