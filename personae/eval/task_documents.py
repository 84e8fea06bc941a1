"""A task's ``"documents"``: the files a question is about, named relative to the task file.

A task file someone else wrote must not pull other files (``~/.ssh``, ``/etc``) into prompts and
the database, any more than a scenario may (docs/threat-model.md). So a task's documents follow
the scenario rule of ``config/roots.py`` with the task file's folder in the scenario folder's
place — the task file's folder, the working folder when it holds the task file, each
``--allow-dir`` — plus one root of Personae's own: the installed ``personae`` package, whose
shipped documents (``builtin/scenarios/docs/``) the shipped task files ask about. Symbolic links
are followed and must stay inside; hidden names are refused below the working folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from personae.config.roots import DocumentProblem, Root, describe, document_roots, locate_document
from personae.errors import UserError

PACKAGE = Path(__file__).resolve().parent.parent  # the installed personae package
MAX_DOCUMENTS = 32


def task_roots(task_dir: Path, allowed: Sequence[Path] = ()) -> list[Root]:
    """Where the documents of a task file in ``task_dir`` may lie."""
    return [*document_roots(task_dir.resolve(), allowed), Root(PACKAGE, "Personae's shipped files", False)]


def task_documents(value: Any, where: str, task_dir: Path, roots: Sequence[Root]) -> tuple[Path, ...]:
    """The resolved files of a task's ``documents`` value, or a UserError naming ``where``
    (file and line), the entry and the fix."""
    if value is None:
        return ()
    if not isinstance(value, list) or not value or not all(isinstance(d, str) and d.strip() for d in value):
        raise UserError(f"{where}: 'documents' must be a list of file paths (text), relative to the "
                        'task file, e.g. "documents": ["docs/log.md"].')
    if len(value) > MAX_DOCUMENTS:
        raise UserError(f"{where}: at most {MAX_DOCUMENTS} documents a task; this one lists {len(value)}.")
    found = []
    for entry in value:
        found.append(_resolve(entry.strip(), where, task_dir, roots))
    return tuple(dict.fromkeys(found))


def _resolve(entry: str, where: str, task_dir: Path, roots: Sequence[Root]) -> Path:
    shown = repr(entry)
    relative = f"Name it relative to the task file's folder, {task_dir}"
    try:
        return locate_document(task_dir, entry, roots)
    except DocumentProblem as refused:
        path, kind, reason = refused.path, refused.kind, refused.reason
    if kind == "nul":
        raise UserError(f"{where}: document {shown} contains a NUL character. Fix the path.")
    if kind == "absolute":
        raise UserError(f"{where}: document {shown} is not relative to the task file. {relative}.")
    if kind == "unreadable":
        raise UserError(f"{where}: document {shown} cannot be read: {reason}. Fix the path.")
    if kind == "outside":
        raise UserError(
            f"{where}: document {shown} leads outside the folders a task file may read "
            f"({describe(roots)}): to {path}. Copy it next to the task file, or allow its folder "
            "with --allow-dir DIR."
        )
    if kind == "missing":
        raise UserError(f"{where}: document {shown} not found (looked for {path}). {relative}.")
    raise UserError(f"{where}: document {shown} is not a file ({path}). List each document "
                    "file separately (Markdown or plain text).")


def named_from(base: Path, documents: Sequence[Path]) -> list[str]:
    """``documents`` (absolute) as a scenario in ``base`` names them: relative to ``base``."""
    return [os.path.relpath(doc, base) for doc in documents]


def common_folder(documents: Sequence[Path]) -> Path:
    """The deepest folder that holds every one of ``documents`` (absolute paths)."""
    return Path(os.path.commonpath([str(doc.parent) for doc in documents]))
