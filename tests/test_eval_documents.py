"""personae eval on questions about documents (issue 19): task lines with ``documents``, one call
with retrieval as the baseline, the recipes that answer a question (chain-of-agents, self-ask)
by name, and their final answers read right. Scripted backend; the real model:
tests/test_eval_real.py."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from personae.config.builtin import builtin_dir
from personae.errors import UserError
from personae.eval.crews import crew_loader, load_crew
from personae.eval.methods import CREW_SCENARIO, parse_method
from personae.eval.runner import Runner, one_call
from personae.eval.session import run_eval
from personae.eval.storage import load_eval
from personae.eval.tasks import Task, load_tasks
from personae.llm.base import ChatRequest
from personae.llm.scripted import ScriptedBackend
from personae.store.repo import Store

DATA = Path(__file__).resolve().parent.parent / "personae" / "eval" / "data"
SCENARIOS = builtin_dir() / "scenarios"
LOG = (SCENARIOS / "docs" / "keepers-log.md").resolve()
NEEDLE = "The great brass burner of the main lamp cracked"


def write_tasks(folder: Path, *lines: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tasks.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def line(documents: object, task_id: str = "q1") -> str:
    return json.dumps({"id": task_id, "question": "Who?", "answer": "Ross", "documents": documents})


# ------------------------------------------------------------------------------ task files


def test_the_shipped_keepers_questions_are_about_the_log_and_answered_in_it() -> None:
    tasks = load_tasks(DATA / "keepers.jsonl")
    assert 12 <= len(tasks) <= 20 and len({t.id for t in tasks}) == len(tasks)
    assert all(t.documents == (LOG,) for t in tasks)
    text = LOG.read_text(encoding="utf-8")
    for task in tasks:  # every answer is in the log, and none is given away by its question
        if task.check == "regex":
            assert re.search(task.answer, text, re.IGNORECASE), task.id
            assert not re.search(task.answer, task.question, re.IGNORECASE), task.id
        else:
            assert task.check == "number" and f"held {task.answer} cans" in text, task.id
            assert text.count(f"held {task.answer} cans") == 1, task.id


def test_documents_are_named_relative_to_the_task_file(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "log.md").write_text("# Log\n\nRoss ordered it.\n", encoding="utf-8")
    path = write_tasks(tmp_path / "tasks", line(["../docs/log.md", "../docs/log.md"]),
                       json.dumps({"id": "q2", "question": "Q?", "answer": "4"}))
    with_docs, without = load_tasks(path, allowed_dirs=[tmp_path / "docs"])
    assert with_docs.documents == ((tmp_path / "docs" / "log.md").resolve(),)  # once, resolved
    assert without.documents == ()


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ("log.md", "'documents' must be a list of file paths"),
        ([], "'documents' must be a list of file paths"),
        ([3], "'documents' must be a list of file paths"),
        (["/etc/passwd"], "document '/etc/passwd' is not relative to the task file"),
        (["~/notes.md"], "document '~/notes.md' is not relative to the task file"),
        (["missing.md"], "document 'missing.md' not found"),
        (["sub"], "document 'sub' is not a file"),
        (["../outside.md"], "document '../outside.md' leads outside the folders a task file may read"),
    ],
)
def test_a_bad_documents_field_names_file_line_and_fix(tmp_path: Path, documents: object,
                                                       message: str) -> None:
    (tmp_path / "outside.md").write_text("secret\n", encoding="utf-8")
    folder = tmp_path / "tasks"
    (folder / "sub").mkdir(parents=True)
    path = write_tasks(folder, json.dumps({"id": "q0", "question": "Q?", "answer": "4"}), line(documents))
    with pytest.raises(UserError) as caught:
        load_tasks(path)
    assert str(caught.value).startswith(f"{path}, line 2: {message}")
    assert caught.value.exit_code == 2


def test_allow_dir_lets_documents_come_from_another_folder(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "log.md").write_text("Ross.\n", encoding="utf-8")
    path = write_tasks(tmp_path / "tasks", line(["../shared/log.md"]))
    with pytest.raises(UserError, match="--allow-dir"):
        load_tasks(path)
    [task] = load_tasks(path, allowed_dirs=[tmp_path / "shared"])
    assert task.documents == ((tmp_path / "shared" / "log.md").resolve(),)


def test_a_link_out_of_the_task_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.md").write_text("secret\n", encoding="utf-8")
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "log.md").symlink_to(tmp_path / "secret.md")
    with pytest.raises(UserError, match="leads outside"):
        load_tasks(write_tasks(folder, line(["log.md"])))


# ----------------------------------------------------------------- one call with retrieval


def keepers_task(question: str = "Which part of the main lamp cracked in October 1911?",
                 task_id: str = "burner") -> Task:
    return Task(task_id, question, "burner", "regex", documents=(LOG,))


@pytest.mark.parametrize("reasoned", [False, True])
def test_the_one_call_scenario_of_a_document_task_carries_its_documents(reasoned: bool) -> None:
    loaded = one_call(keepers_task(), reasoned=reasoned, temperature=0.0, num_predict=48, num_ctx=2048)
    assert loaded.documents == (LOG,)
    assert loaded.scenario.memory.collapse is not None  # the memory block, where passages go
    plain = one_call(Task("q", "What is 2 + 3?", "5", "number"), reasoned=reasoned,
                     temperature=0.0, num_predict=48, num_ctx=2048)
    assert plain.documents == () and plain.scenario.memory.collapse is None


def test_single_is_one_call_whose_prompt_holds_the_passages_that_match_best(tmp_path: Path) -> None:
    """The one prompt of `single` on a document task holds the passage that answers it (the
    manifest names its chunk), within the window, and the answer read from it is checked."""
    backend = ScriptedBackend(default="The burner.")
    store = Store.open(tmp_path / "e.db")
    runner = Runner(backend, store, lambda m, t: pytest.fail("no crew"), seed=1)
    eval_id = run_eval(store, runner, tasks=[keepers_task()], methods=[parse_method("single")],
                       tasks_source="keepers", budget=None)
    [result] = load_eval(store, eval_id).results
    assert result.correct == 1 and result.answer == "burner"
    [request] = backend.requests
    assert NEEDLE in request.messages[0].content
    [run_id] = result.run_ids
    [call] = store.calls(run_id)
    passages = next(m for m in call.manifest if m["section"] == "memory/documents")
    chunks = {n.id: n.text for n in store.memory_nodes(run_id, ["chunk"])}
    assert len(chunks) == 34 and 1 <= len(passages["node_ids"]) < len(chunks)
    assert NEEDLE in chunks[passages["node_ids"][0]]  # ranked first
    assert call.prompt_tokens <= 2048


def test_a_crew_without_documents_gets_the_tasks_and_one_with_its_own_keeps_them() -> None:
    task = keepers_task()
    plain = load_crew(parse_method("crew"), task)
    assert plain.path == CREW_SCENARIO and plain.documents == (LOG,)
    assert plain.scenario.memory.collapse is not None
    assert plain.scenario.goal.endswith(task.question)
    chain = load_crew(parse_method("crew:chain-of-agents"), Task("q", "Who?", "x", documents=()))
    assert chain.documents == (LOG,) and chain.scenario.goal == "Who?"


def test_a_recipe_without_documents_walks_the_tasks_with_no_memory_block_added(tmp_path: Path) -> None:
    """The chain reads the run's chunks itself: it gets the task's documents, and its prompts
    stay isolated (collapse stays off, so no memory block of passages is added)."""
    text = (SCENARIOS / "chain-of-agents.yaml").read_text(encoding="utf-8")
    bare = tmp_path / "chain.yaml"
    bare.write_text(text.replace("documents: [docs/keepers-log.md]\n", ""), encoding="utf-8")
    doc = tmp_path / "notes.md"
    doc.write_text("# Notes\n\nRoss ordered it.\n", encoding="utf-8")
    loaded = load_crew(parse_method(f"crew:{bare}"), Task("q", "Who?", "Ross", documents=(doc.resolve(),)))
    assert loaded.documents == (doc.resolve(),) and loaded.scenario.memory.collapse is None


# ------------------------------------------------------------------ recipes, by name


def test_recipe_scenarios_resolve_by_name_as_personae_run_does(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_method("crew:chain-of-agents").scenario == SCENARIOS / "chain-of-agents.yaml"
    assert parse_method("vote:self-ask").scenario == SCENARIOS / "self-ask.yaml"
    assert parse_method("crew:crew").scenario == CREW_SCENARIO
    with pytest.raises(UserError, match=r"-m crew:chain-of-agent: .*Did you mean -m crew:chain-of-agents\?"):
        parse_method("crew:chain-of-agent")
    with pytest.raises(UserError, match="the scenario file nowhere/x.yaml does not exist"):
        parse_method("crew:nowhere/x.yaml")
    local = tmp_path / "scenarios" / "self-ask.yaml"  # ./scenarios/ wins, as for `personae run`
    local.parent.mkdir()
    local.write_text((SCENARIOS / "self-ask.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    assert parse_method("crew:self-ask").scenario == Path("scenarios/self-ask.yaml")


@pytest.mark.parametrize("name", ["chain-of-agents", "self-ask"])
def test_the_recipes_take_the_question_as_a_variable_and_keep_their_own_by_default(name: str) -> None:
    from personae.config.loader import load_scenario

    default = load_scenario(SCENARIOS / f"{name}.yaml")
    assert "October 1911" in default.scenario.goal and default.variables["question"] == default.scenario.goal
    asked = load_scenario(SCENARIOS / f"{name}.yaml", variables={"question": "Who rang the bell?"})
    assert asked.scenario.goal == "Who rang the bell?"


def chain_reply(request: ChatRequest) -> str:
    """Workers copy a marker of the chunk into the note once it names the burner; the Manager
    answers from the last note in a sentence."""
    schema = json.dumps(request.schema)
    prompt = request.messages[-1].content
    if '"notes"' in schema:
        note = "Ross ordered a burner from Chance Brothers." if NEEDLE in prompt else "nothing yet"
        previous = re.search(r"Notes so far:\n(.*)\n", prompt)
        kept = previous.group(1) if previous and "Chance" in previous.group(1) else note
        return json.dumps({"notes": kept})
    assert '"answer"' in schema and "Chance Brothers" in prompt  # the Manager reads the last note
    return json.dumps({"answer": "The replacement came from Chance Brothers of Smethwick."})


def one_crew_result(
    tmp_path: Path, spec: str, task: Task, reply: Callable[[ChatRequest], str]
) -> tuple[Any, list[Any]]:
    """One crew method on one task, scripted: its stored result and its run's messages."""
    methods = [parse_method(spec)]
    load, _ = crew_loader(methods, [task], default_num_ctx=2048)
    store = Store.open(tmp_path / "e.db")
    runner = Runner(ScriptedBackend(default=reply), store, load, seed=1)
    [result] = load_eval(store, run_eval(store, runner, tasks=[task], methods=methods,
                                         tasks_source="t", budget=None)).results
    return result, store.messages(result.run_ids[0])


def test_the_chain_answer_is_the_managers(tmp_path: Path) -> None:
    task = Task("company", "From which company was the burner ordered?", "Chance", "regex", documents=(LOG,))
    result, messages = one_crew_result(tmp_path, "crew:chain-of-agents", task, chain_reply)
    assert [m.persona for m in messages].count("Worker") == 34 and messages[-1].persona == "Manager"
    assert result.answer == "replacement came from Chance Brothers of Smethwick" and result.correct == 1
    assert result.reply == messages[-1].raw and json.loads(result.reply)["answer"]  # raw kept
    assert result.first_answer == "nothing yet"  # the first worker's note: the flip is counted


def self_ask_reply(request: ChatRequest) -> str:
    schema = json.dumps(request.schema)
    prompt = request.messages[-1].content
    if '"step"' not in schema:  # the Retriever, shown one passage
        return json.dumps({"answer": "Keeper Duncan Ross." if NEEDLE in prompt else "Not said."})
    if "Follow up" in schema and "Intermediate answer" not in "\n".join(m.content for m in request.messages):
        return json.dumps({"step": "Follow up", "text": "Who ordered the replacement burner?"})
    return json.dumps({"step": "So the final answer is", "text": "Duncan Ross"})


def test_the_self_ask_answer_is_what_follows_so_the_final_answer_is(tmp_path: Path) -> None:
    task = Task("orderer", "Who ordered the replacement burner?", r"\bRoss\b", "regex", documents=(LOG,))
    result, messages = one_crew_result(tmp_path, "crew:self-ask", task, self_ask_reply)
    assert [m.persona for m in messages] == ["Asker", "Retriever", "Asker"]
    assert messages[-1].content == "So the final answer is: Duncan Ross"
    assert result.answer == "Duncan Ross" and result.correct == 1
    assert result.reply == messages[-1].raw and json.loads(result.reply)["step"] == "So the final answer is"


def test_a_matched_budget_on_a_document_task_counts_every_token_of_the_crews_runs(tmp_path: Path) -> None:
    """The eval crew, given the task's log, sets the budget (its median evaluated prompt +
    completion tokens per item, passages included); sc's K follows from its samples' cost."""
    tasks = [keepers_task(), keepers_task("Which part of the lamp did Chance Brothers replace?", "burner-2")]

    def reply(request: ChatRequest) -> str:
        return json.dumps({"answer": "The burner."}) if request.schema is not None else "Reading.\nANSWER: burner"

    methods = [parse_method(s) for s in ("single", "sc", "crew")]
    load, _ = crew_loader(methods, tasks, default_num_ctx=2048)
    store = Store.open(tmp_path / "e.db")
    runner = Runner(ScriptedBackend(default=reply), store, load, seed=1)
    stored = load_eval(store, run_eval(store, runner, tasks=tasks, methods=methods, tasks_source="t",
                                       budget="matched"))
    crew = [r for r in stored.results if r.method_id == stored.methods[2].id]
    for result in crew:
        calls = store.calls(result.run_ids[0])
        assert result.evaluated_prompt_tokens + result.completion_tokens == sum(
            c.evaluated_tokens + c.completion_tokens for c in calls)
        assert any(NEEDLE in c.prompt[0]["content"] for c in calls)  # the crew read the log
    assert stored.row.budget_tokens == round(sum(r.evaluated_prompt_tokens + r.completion_tokens for r in crew) / 2)
    sc = [r for r in stored.results if r.method_id == stored.methods[1].id]
    assert stored.methods[1].samples >= 1 and all(len(r.run_ids) == stored.methods[1].samples for r in sc)
    assert all(r.correct == 1 for r in stored.results)


@pytest.mark.parametrize(
    ("raw", "answer"),
    [  # replies cut at num_predict before the JSON closed: stored unparsed, read as far as they go
        ('{\n  "answer": "The replacement came from Chance Brothers of Smethwick. The keeper Dun',
         "replacement came from Chance Brothers of Smethwick. The keeper Dun"),
        ('{"step": "So the final answer is", "text": "Duncan Ross', "Duncan Ross"),
        ('{"step": "Follow up", "text": "Who ordered', "Who ordered"),  # not final: read as any reply
        ("Keeper Ross.\nANSWER: Ross", "Ross"),
    ],
)
def test_a_cut_structured_reply_is_read_from_its_field(raw: str, answer: str) -> None:
    from personae.eval.runner import persona_answer
    from personae.store.models import Message

    message = Message(persona="Manager", content=raw, raw=raw, structured=None)
    assert persona_answer(message) == answer
