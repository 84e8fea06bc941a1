"""Checkable tasks: a JSONL file of questions with their answers, read with errors a user can fix.

One task a line: ``{"id": "q1", "question": "...", "answer": "42"}``, optionally ``"choices"``
(a list of strings: a multiple-choice item) and ``"check"`` (how an answer is compared; default
``choice`` when there are choices, else ``number`` when the answer is a number, else ``exact``).
Optionally ``"documents"``: the files the question is about, as a list of paths relative to
the task file (``task_documents.py`` says where they may lie); every method then reads them as
one run can (docs/eval.md). Blank lines and lines starting with ``#`` are skipped. Every
mistake is one paragraph naming the file, the line and the fix (``UserError``: exit 2), found
before any model is loaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personae.config.roots import Root
from personae.errors import UserError
from personae.eval.task_documents import task_documents, task_roots

CHECKS = ("exact", "number", "choice", "regex")
MAX_TASK_FILE = 20_000_000  # bytes: a task file is text a person wrote or generated, not a corpus
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")


@dataclass(frozen=True)
class Task:
    """One checkable item. ``score`` is set for generated tasks whose library checks answers
    itself (reasoning-gym): it takes the extracted answer and returns a score in [0, 1]."""

    id: str
    question: str
    answer: str
    check: str = "exact"
    choices: tuple[str, ...] = ()
    score: Callable[[str], float] | None = field(default=None, compare=False, repr=False)
    documents: tuple[Path, ...] = ()  # absolute paths of the files the question is about


def default_check(answer: str, choices: tuple[str, ...]) -> str:
    if choices:
        return "choice"
    return "number" if _NUMBER.match(answer.strip().replace(",", "")) else "exact"


def load_tasks(path: Path, allowed_dirs: Sequence[Path] = ()) -> list[Task]:
    """The tasks of a JSONL file, in file order; a ``UserError`` naming file and line otherwise.
    ``allowed_dirs`` (``--allow-dir``) are folders the tasks' documents may also come from."""
    try:
        size = path.stat().st_size
        if size > MAX_TASK_FILE:
            raise UserError(
                f"{path} is {size:,} bytes; a task file may have at most {MAX_TASK_FILE:,}. "
                "Split it, or pass --items N to use the first N tasks of a smaller file."
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            f"No task file {path}. Give a JSONL file (one {{\"id\", \"question\", \"answer\"}} "
            "object a line) or a generated task set such as rg:basic_arithmetic."
        ) from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder; give a JSONL task file.") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8.") from None
    except OSError as exc:
        raise UserError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    folder = path.parent.resolve()
    roots = task_roots(folder, allowed_dirs)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        task = parse_line(line, f"{path}, line {number}", folder, roots)
        if task.id in seen:
            raise UserError(
                f"{path}, line {number}: duplicate id {task.id!r} (line {seen[task.id]} has it "
                "too). Give every task its own id."
            )
        seen[task.id] = number
        tasks.append(task)
    if not tasks:
        raise UserError(
            f"{path} has no tasks. Write one JSON object a line: "
            '{"id": "q1", "question": "What is 2+3?", "answer": "5"}.'
        )
    return tasks


def parse_line(line: str, where: str, folder: Path | None = None, roots: Sequence[Root] = ()) -> Task:
    """One task from one line of JSON; ``where`` names the file and line in every message.
    ``folder`` is the task file's (documents are named relative to it; default: the working
    folder), ``roots`` where they may lie (default: ``task_roots(folder)``)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{where}: invalid JSON ({exc.msg} at column {exc.colno}). Each line must be one "
            'JSON object, e.g. {"id": "q1", "question": "What is 2+3?", "answer": "5"}.'
        ) from None
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a JSON object, found {type(data).__name__}. "
                        'Write {"id": …, "question": …, "answer": …}.')
    unknown = sorted(set(data) - {"id", "question", "answer", "choices", "check", "documents"})
    if unknown:
        raise UserError(f"{where}: unknown field {unknown[0]!r}. A task has id, question, answer, "
                        "and optionally choices, check and documents.")
    for name in ("id", "question", "answer"):
        if name not in data:
            raise UserError(f"{where}: missing {name!r}. Every task needs id, question and answer.")
    task_id, question, answer = data["id"], data["question"], data["answer"]
    if isinstance(task_id, bool) or not isinstance(task_id, (str, int)) or not str(task_id).strip():
        raise UserError(f"{where}: 'id' must be a non-empty string or a number, not {task_id!r}.")
    if not isinstance(question, str) or not question.strip():
        raise UserError(f"{where}: 'question' must be non-empty text.")
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)) or not str(answer).strip():
        raise UserError(f"{where}: 'answer' must be non-empty text or a number, not {answer!r}.")
    choices = _choices(data.get("choices"), where)
    answer_text = str(answer).strip()
    check = data.get("check") or default_check(answer_text, choices)
    if check not in CHECKS:
        raise UserError(f"{where}: unknown check {check!r}. Use one of: {', '.join(CHECKS)}.")
    _check_fits(check, answer_text, choices, where)
    folder = (folder or Path.cwd()).resolve()
    documents = task_documents(data.get("documents"), where, folder, roots or task_roots(folder))
    return Task(str(task_id).strip(), question.strip(), answer_text, check, choices,
                documents=documents)


def _choices(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) < 2 or not all(
        isinstance(c, str) and c.strip() for c in value
    ):
        raise UserError(f"{where}: 'choices' must be a list of at least two non-empty strings.")
    if len(value) > 26:
        raise UserError(f"{where}: at most 26 choices (they are lettered A to Z).")
    return tuple(c.strip() for c in value)


def _check_fits(check: str, answer: str, choices: tuple[str, ...], where: str) -> None:
    """A check that could never pass is the file's mistake, said now rather than as 0%."""
    if check == "number" and not _NUMBER.match(answer.replace(",", "")):
        raise UserError(f"{where}: check 'number' but the answer {answer!r} is not a number.")
    if check == "choice":
        letters = [chr(ord("A") + i) for i in range(len(choices))]
        if not choices:
            raise UserError(f"{where}: check 'choice' needs 'choices'.")
        if answer not in choices and answer.upper() not in letters:
            raise UserError(
                f"{where}: the answer {answer!r} is neither one of the choices nor a choice "
                f"letter ({letters[0]}–{letters[-1]})."
            )
    if check == "regex":
        try:
            re.compile(answer)
        except re.error as exc:
            raise UserError(f"{where}: the answer is not a valid regular expression ({exc}).") from None
