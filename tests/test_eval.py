"""personae eval: task files, answer extraction, statistics and budget matching, on the scripted
backend whose accuracy each test sets (fast). The real model and the CLI: tests/test_eval_real.py."""

from __future__ import annotations

import ast
import json
import math
import re
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest

from personae.errors import UserError
from personae.eval.answers import extract, is_correct
from personae.eval.budget import parse_budget, samples_for
from personae.eval.crews import crew_loader
from personae.eval.generated import generate
from personae.eval.methods import parse_method
from personae.eval.report import method_rows
from personae.eval.runner import Runner, majority
from personae.eval.session import run_eval
from personae.eval.stats import accuracy, mcnemar
from personae.eval.storage import load_eval
from personae.eval.tasks import Task, load_tasks
from personae.llm.base import ChatRequest
from personae.llm.scripted import ScriptedBackend
from personae.store.repo import Store

SHIPPED = Path(__file__).resolve().parent.parent / "personae" / "eval" / "data" / "basics.jsonl"


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval written out, to check scipy is asked the right question."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_wilson_interval_matches_the_formula() -> None:
    for k, n in [(8, 10), (0, 12), (12, 12), (3, 40)]:
        got = accuracy([True] * k + [False] * (n - k))
        low, high = wilson(k, n)
        assert (got.correct, got.items) == (k, n)
        assert got.low == pytest.approx(max(0.0, low), abs=1e-9)
        assert got.high == pytest.approx(min(1.0, high), abs=1e-9)


def test_exact_mcnemar_counts_only_discordant_pairs() -> None:
    a = [True] * 5 + [True, False] * 3  # 5 items right only with a, then 3 concordant pairs each way
    b = [False] * 5 + [True, False] * 3
    paired = mcnemar(a, b)
    assert (paired.a_only, paired.b_only) == (5, 0)
    assert paired.p_value == pytest.approx(2 * 0.5**5)  # two-sided exact binomial, n=5
    assert mcnemar([True, False], [True, False]).p_value == 1.0
    one_of_seven = mcnemar([True] + [False] * 6, [False] + [True] * 6)
    assert one_of_seven.p_value == pytest.approx(2 * (1 + 7) / 2**7)


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = '{"id": "q%d", "question": "What is %d + 1?", "answer": "%d"}'


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"id": "q7", "question": "What is 2 + 2?"}', "line 7: missing 'answer'"),
        ('{"id": "q7", "question": "What is 2 + 2?", "answer": "4"', "line 7: invalid JSON"),
        ('{"id": "q1", "question": "Again?", "answer": "4"}', "line 7: duplicate id 'q1' (line 1 has it too)"),
        ('{"id": "q7", "question": "Q?", "answer": "4", "check": "fuzzy"}', "line 7: unknown check 'fuzzy'"),
        ('{"id": "q7", "question": "Q?", "answer": "four", "check": "number"}', "line 7: check 'number'"),
        ('{"id": "q7", "question": "Q?", "answer": "E", "choices": ["a", "b"]}', "line 7: the answer 'E'"),
        ('["q7"]', "line 7: expected a JSON object"),
    ],
)
def test_a_bad_task_file_names_its_file_and_line(tmp_path: Path, bad: str, message: str) -> None:
    path = write(tmp_path, [GOOD % (i, i, i + 1) for i in range(1, 7)] + [bad])
    with pytest.raises(UserError) as caught:
        load_tasks(path)
    assert str(caught.value).startswith(f"{path}, {message}")
    assert caught.value.exit_code == 2


def test_the_shipped_task_file_loads_with_checks_chosen_by_answer() -> None:
    tasks = load_tasks(SHIPPED)
    assert len(tasks) == 30 and len({t.id for t in tasks}) == 30
    assert {t.check for t in tasks} == {"number", "exact"}
    assert next(t for t in tasks if t.id == "add-7-8").check == "number"


@pytest.mark.parametrize(
    ("reply", "reasoned", "answer"),
    [
        ("Solver: 7 + 8 = 15\nYou are correct.", False, "15"),
        ("The capital of France is Paris.", False, "Paris"),
        ('The answer, in French, is "Paris."', False, "Paris"),
        ("Let me think. 2 and 3 make 5.\nANSWER: 5", True, "5"),
        ("**Answer:** Tokyo\nmore words", True, "Tokyo"),
        ("It is a kangaroo.", False, "kangaroo"),
        ("", False, ""),
    ],
)
def test_the_answer_is_what_the_reply_says(reply: str, reasoned: bool, answer: str) -> None:
    assert extract(reply, reasoned=reasoned) == answer


def test_checks() -> None:
    number = Task("n", "What is 7 + 8?", "15", "number")
    assert is_correct(number, "15") and is_correct(number, "15.0") and not is_correct(number, "2")
    assert not is_correct(Task("f", "2+3?", "5", "number"), ",.5")  # ".5" is a half, not 5
    assert is_correct(Task("h", "Half?", "0.5", "number"), ".5") and is_correct(Task("k", "?", "1500", "number"), "1,500")
    exact = Task("e", "Capital of France?", "Paris")
    assert is_correct(exact, "paris.") and not is_correct(exact, "Paris, Texas")
    choice = Task("c", "Which?", "B", "choice", ("red", "blue", "green"))
    assert is_correct(choice, "(B)") and is_correct(choice, "it is blue") and not is_correct(choice, "red or blue")
    regex = Task("r", "Name a primary colour", "^(red|blue|yellow)$", "regex")
    assert is_correct(regex, "Blue") and not is_correct(regex, "green")


def test_majority_ignores_empty_answers_and_breaks_ties_by_order() -> None:
    task = Task("n", "?", "4", "number")
    assert majority(task, ["", "3", "4", "4.0", "3"]) == "3"
    assert majority(task, ["", "no idea", "4"]) == "4"


def question_of(request: ChatRequest) -> str:
    found = re.search(r"Goal: (.*)", request.messages[0].content)
    assert found is not None
    return found.group(1).strip()


def test_accuracy_and_interval_follow_a_backend_whose_accuracy_is_set(tmp_path: Path) -> None:
    """The backend knows the right answer to every other question (3 of 6): single must score
    exactly 3/6 with the Wilson interval of 3/6, and every item must be a stored run."""
    tasks = [Task(f"q{i}", f"What is {i} + 1?", str(i + 1), "number") for i in range(6)]
    right = {t.question for t in tasks[::2]}

    def reply(request: ChatRequest) -> str:
        question = question_of(request)
        value = int(question.split()[2]) + (1 if question in right else 2)
        return f"The answer is {value}."

    store = Store.open(tmp_path / "e.db")
    runner = Runner(ScriptedBackend(default=reply), store, lambda m, t: pytest.fail("no crew here"), seed=3)
    eval_id = run_eval(store, runner, tasks=tasks, methods=[parse_method("single")],
                       tasks_source="six", budget=None)
    stored = load_eval(store, eval_id)
    [row] = method_rows(stored)
    low, high = wilson(3, 6)
    assert (row["correct"], row["items"], row["accuracy"]) == (3, 6, 0.5)
    assert (row["ci_low"], row["ci_high"]) == (round(low, 4), round(high, 4))
    assert stored.row.status == "completed"
    for result in stored.results:
        [run_id] = result.run_ids
        assert store.run(run_id).status == "completed"
        calls = store.calls(run_id)
        assert result.evaluated_prompt_tokens == sum(c.evaluated_tokens for c in calls) > 0
        assert result.completion_tokens == sum(c.completion_tokens for c in calls) > 0
        assert result.reply == store.messages(run_id)[-1].raw


def test_self_consistency_takes_the_majority_of_seeded_samples(tmp_path: Path) -> None:
    """Each sample answers by its seed: seeds 1 and 3 right, seed 2 wrong, so sc:3 (seeds 1..3)
    is right though a third of its samples are not; sc:1 sees only seed 1's answer."""
    tasks = [Task("q", "What is 2 + 2?", "4", "number")]

    def reply(request: ChatRequest) -> str:
        return "Thinking.\nANSWER: 5" if request.options["seed"] == 2 + 1 else "Thinking.\nANSWER: 4"

    store = Store.open(tmp_path / "e.db")
    runner = Runner(ScriptedBackend(default=reply), store, lambda m, t: pytest.fail("no crew"), seed=1)
    eval_id = run_eval(store, runner, tasks=tasks, methods=[parse_method("sc:3")], tasks_source="t", budget=None)
    [result] = load_eval(store, eval_id).results
    assert result.votes == ["4", "5", "4"] and result.answer == "4" and result.correct == 1
    assert len(result.run_ids) == 3
    assert [store.run(r).seed for r in result.run_ids] == [1, 2, 3]


def test_a_token_budget_sets_the_samples_of_sc_from_their_measured_cost(tmp_path: Path) -> None:
    tasks = [Task(f"q{i}", f"What is {i} + {i}?", str(2 * i), "number") for i in range(1, 4)]
    store = Store.open(tmp_path / "e.db")
    runner = Runner(ScriptedBackend(default="Two and two.\nANSWER: 4"), store,
                    lambda m, t: pytest.fail("no crew"), seed=1)
    eval_id = run_eval(store, runner, tasks=tasks, methods=[parse_method("sc:9")], tasks_source="t",
                       budget="500")
    stored = load_eval(store, eval_id)
    first_costs = []
    for result in stored.results:
        calls = store.calls(result.run_ids[0])
        first_costs.append(sum(c.evaluated_tokens + c.completion_tokens for c in calls))
    expected = max(1, math.floor(500 / sorted(first_costs)[1]))
    assert 1 < expected < 9  # the budget, not the 9 typed, decides
    assert stored.methods[0].samples == expected
    assert all(len(r.run_ids) == expected for r in stored.results)
    assert stored.row.budget_tokens == 500


def test_budget_flag() -> None:
    assert parse_budget("matched") == "matched" and parse_budget("800") == "800" and parse_budget(None) is None
    with pytest.raises(UserError, match="--budget lots"):
        parse_budget("lots")
    assert samples_for(1000, [90, 110, 100]) == 10
    assert samples_for(50, [100]) == 1


@pytest.mark.parametrize("spec", ["sc:0", "sc:x", "magic", "single:3", "vote", "crew:missing.yaml"])
def test_bad_methods_are_usage_errors(spec: str) -> None:
    with pytest.raises(UserError, match=re.escape(f"-m {spec}")):
        parse_method(spec)


def crew_model(tasks: list[Task], solver: Callable[[Task], str]) -> Callable[[ChatRequest], str]:
    """A scripted model for the shipped eval crew: the Checker and the Decider give each task's
    answer, the Solver (and every one-call method) says ``solver(task)``."""

    def reply(request: ChatRequest) -> str:
        text = "\n".join(m.content for m in request.messages)
        task = next(t for t in tasks if t.question in text)
        if "Decider" in request.messages[-1].content and request.schema is not None:
            return json.dumps({"answer": task.answer})
        if "Checker" in request.messages[-1].content:
            return f"Solver is off by one.\nANSWER: {task.answer}"
        return f"Counting.\nANSWER: {solver(task)}"

    return reply


def test_matched_budget_comes_from_the_crew_and_flips_are_counted(tmp_path: Path) -> None:
    """Solver is wrong, Checker and Decider right: the crew's final answer differs from its first
    speaker's on every item, all wrong→right; the vote (2 of 3 right) is right too; sc gets
    K = ⌊crew median / sample median⌋ samples."""
    tasks = [Task(f"q{i}", f"What is {i} + 1?", str(i + 1), "number") for i in range(1, 4)]
    methods = [parse_method(s) for s in ("single", "sc", "crew", "vote:crew")]
    load, _ = crew_loader(methods, tasks, default_num_ctx=2048)

    store = Store.open(tmp_path / "e.db")
    runner = Runner(ScriptedBackend(default=crew_model(tasks, lambda task: "0")), store, load, seed=1)
    eval_id = run_eval(store, runner, tasks=tasks, methods=methods, tasks_source="t", budget="matched")
    stored = load_eval(store, eval_id)
    rows = {r["method"]: r for r in method_rows(stored)}
    assert rows["crew"]["correct"] == 3 and rows["vote:crew"]["correct"] == 3
    assert rows["single"]["correct"] == 0 and rows["sc"]["correct"] == 0
    assert rows["crew"]["flips"] == {"items": 3, "changed": 3, "wrong_to_right": 3,
                                     "right_to_wrong": 0, "wrong_to_wrong": 0}
    assert rows["crew"]["vs"]["single"] == {"items": 3, "crew_only_correct": 3,
                                            "baseline_only_correct": 0, "p_value": 0.25}
    crew_costs = [r.evaluated_prompt_tokens + r.completion_tokens
                  for r in stored.results if r.method_id == stored.methods[2].id]
    budget = round(statistics.median(crew_costs))
    assert stored.row.budget_tokens == budget
    sc_results = [r for r in stored.results if r.method_id == stored.methods[1].id]
    first_costs = [sum(c.evaluated_tokens + c.completion_tokens for c in store.calls(r.run_ids[0]))
                   for r in sc_results]
    k = max(1, math.floor(budget / statistics.median(first_costs)))
    assert stored.methods[1].samples == k > 1
    assert all(len(r.run_ids) == k for r in sc_results)
    by_method = {m.spec: [r.run_ids for r in stored.results if r.method_id == m.id] for m in stored.methods}
    assert by_method["vote:crew"] == by_method["crew"]  # the deliberation ran once per item
    assert len(store.runs()) == 3 * (1 + k + 1)  # single, sc's samples, one crew run per item
    for result in stored.results:  # every run of every method is a completed, stored run
        assert all(store.run(run_id).status == "completed" for run_id in result.run_ids)


def test_nothing_below_imports_the_eval_package() -> None:
    """personae/eval sits above the orchestrator: only itself and what sits above it (the viewer,
    whose eval pages call its report, and the CLI) may import it."""
    package = SHIPPED.parent.parent.parent
    offenders = []
    for path in package.rglob("*.py"):
        part = path.relative_to(package).parts[0]
        if part in ("eval", "web", "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path}: {n}" for n in names if n.startswith("personae.eval")]
    assert package.name == "personae" and not offenders


@pytest.mark.slow  # importing reasoning-gym takes seconds
def test_generated_tasks_are_seeded_and_checked_by_reasoning_gym(tmp_path: Path) -> None:
    tasks = generate("rg:basic_arithmetic", items=4, seed=7)
    assert [t.question for t in tasks] == [t.question for t in generate("rg:basic_arithmetic", items=4, seed=7)]
    assert [t.question for t in tasks] != [t.question for t in generate("rg:basic_arithmetic", items=4, seed=8)]
    answers = {t.question: t.answer for t in tasks}

    def reply(request: ChatRequest) -> str:  # right on the first two questions only
        question = question_of(request)
        right = question in [t.question for t in tasks[:2]]
        return f"{answers[question] if right else answers[question] + '1'}"

    store = Store.open(tmp_path / "e.db")
    runner = Runner(ScriptedBackend(default=reply), store, lambda m, t: pytest.fail("no crew"), seed=7)
    eval_id = run_eval(store, runner, tasks=tasks, methods=[parse_method("single")],
                       tasks_source="rg:basic_arithmetic", budget=None)
    stored = load_eval(store, eval_id)
    assert [r.correct for r in stored.results] == [1, 1, 0, 0]
    assert {i.check for i in stored.items} == {"scorer"}
    with pytest.raises(UserError, match="Did you mean rg:basic_arithmetic"):
        generate("rg:basic_arithmetc", items=2, seed=1)
