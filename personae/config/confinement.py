"""Which files a scenario may make Personae read: its documents, and persona files.

A scenario someone else wrote must not pull other files (``~/.ssh``, ``/etc``) into prompts and
the database. Documents must resolve inside one of their roots (``roots.py``); a persona file
found by listing a folder must resolve inside that folder. Symbolic links are followed in both
cases and must stay inside (docs/threat-model.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from personae.config.messages import Problems, config_error, show_value, similar_file
from personae.config.models import Scenario
from personae.config.roots import DocumentProblem, Root, describe, document_roots, locate_document
from personae.config.yaml_source import Source, node_at


def confined(base: Path, path: Path) -> tuple[Path, bool]:
    """``path`` with every symbolic link followed, and whether it still lies inside ``base``: the
    check that confines persona files to their folder, as ``roots.py`` confines documents to
    their roots (docs/threat-model.md). May raise OSError or RuntimeError (a name too long, a
    link loop)."""
    resolved = path.resolve()
    return resolved, resolved.is_relative_to(base.resolve())


def require_inside(base: Path, path: Path, what: str) -> None:
    try:
        target, inside = confined(base, path)
    except (OSError, RuntimeError) as exc:
        problem = f"the {what} cannot be read: {_reason(exc)}."
        raise config_error(str(path), None, "", problem, "Fix the link.") from None
    if not inside:
        raise config_error(
            str(path), None, "",
            f"this {what} is a link that leads outside {base.resolve()} (to {target}).",
            f"Copy the file into {base.resolve()} instead of linking to it: persona files are "
            "read only from inside their folder, as documents are from the scenario's.",
        )


def resolve_documents(
    scenario: Scenario, src: Source, base: Path, allowed: Sequence[Path] = ()
) -> tuple[Path, ...]:
    """Documents are named relative to the scenario's folder and must resolve inside it, inside
    the project the run starts from, or inside a folder the user allowed (``roots.py``), so a
    scenario someone else wrote cannot pull other files (``~/.ssh``, ``/etc``) into prompts and
    the database. Symbolic links are followed and must stay inside too (docs/threat-model.md)."""
    roots = document_roots(base, allowed)
    problems = Problems(src.label)
    found = [
        problems.attempt(lambda: _document(src, index, entry, base, roots))
        for index, entry in enumerate(scenario.documents)
    ]
    problems.raise_all()  # each document's problem, not only the first
    return tuple(path for path in found if path is not None)


def _document(src: Source, index: int, entry: str, base: Path, roots: list[Root]) -> Path:
    """One document entry, resolved and checked."""
    node, _ = node_at(src.node, ("documents", index))
    where = f"documents[{index}]"
    others = describe(roots[1:])
    inside = (
        f"Copy the file into the scenario's folder, {base}, and name it relative to it"
        + (f" (or into {others})" if others else "")
        + "; or allow its folder with --allow-dir DIR."
    )
    try:
        return locate_document(base, entry, roots)
    except DocumentProblem as refused:
        path, kind, reason = refused.path, refused.kind, refused.reason
    if kind == "nul":
        problem = "a document path cannot contain a NUL character."
        raise config_error(src.label, node, where, problem, "Fix the path.")
    if kind == "absolute":
        raise config_error(
            src.label, node, where,
            f"document {show_value(entry)} is not relative to the scenario's folder.", inside,
        )
    if kind == "unreadable":
        problem = f"document {show_value(entry)} cannot be read: {reason}."
        raise config_error(src.label, node, where, problem, "Fix the path.")
    assert path is not None, "a followed entry names where it led"
    if kind == "outside":
        raise config_error(
            src.label, node, where,
            f"document {show_value(entry)} is outside the scenario's folder"
            + (f" and {others}" if others else "") + f" (it leads to {path}).",
            inside,
        )
    if kind == "missing":
        siblings = list(path.parent.iterdir()) if path.parent.is_dir() else []
        guess = similar_file(path, siblings)
        hint = f" Did you mean '{guess}'?" if guess else ""
        raise config_error(
            src.label, node, where, f"document {show_value(entry)} not found (looked for {path}).",
            f"Document paths are relative to the scenario's folder, {base}.{hint}",
        )
    raise config_error(
        src.label, node, where, f"document {show_value(entry)} is not a file ({path}).",
        "List each document file separately (Markdown or plain text).",
    )


def _reason(exc: OSError | RuntimeError) -> str:
    """Why a path cannot be followed: the system's words (an OSError), or the exception's (a
    RuntimeError for a link loop)."""
    return getattr(exc, "strerror", None) or str(exc)
