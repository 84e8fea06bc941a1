"""Where a scenario's documents may come from (docs/threat-model.md, section 3).

A document is named relative to its scenario's folder and must resolve, symbolic links followed,
inside one of these roots:

- the scenario's folder (always);
- the working folder the run starts from, when that is a project that holds the scenario: the
  common layout ``scenarios/review.yaml`` naming ``../docs/notes.md``. Not when the working folder
  is the file system's root or the home folder (every file would be "in the project"), and not
  through a hidden name (``.ssh``, ``.env``) below it;
- each folder the user allows explicitly (``--allow-dir``), wholly.

A scenario someone else wrote therefore still cannot pull ``~/.ssh/id_rsa`` or ``/etc/passwd`` into
prompts and the database: absolute paths stay refused, and so does any path that leaves every root.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Root:
    folder: Path  # resolved
    why: str  # "the scenario's folder", "the working folder", "--allow-dir"
    hidden_ok: bool  # may a path below it pass through a dot-name


def document_roots(scenario_dir: Path, allowed: Sequence[Path] = (), cwd: Path | None = None) -> list[Root]:
    """The roots for a scenario in ``scenario_dir`` (resolved), run from ``cwd``."""
    roots = [Root(scenario_dir, "the scenario's folder", True)]
    here = (cwd or Path.cwd()).resolve()
    too_wide = {Path(here.anchor), Path.home().resolve()}
    if here not in too_wide and scenario_dir.is_relative_to(here) and here != scenario_dir:
        roots.append(Root(here, "the working folder", False))
    for folder in allowed:
        roots.append(Root(Path(folder).expanduser().resolve(), "--allow-dir", True))
    return roots


def root_of(path: Path, roots: Sequence[Root]) -> Root | None:
    """The first root that holds ``path`` (resolved), or None."""
    for root in roots:
        if path.is_relative_to(root.folder):
            below = path.relative_to(root.folder).parts
            if root.hidden_ok or not any(part.startswith(".") for part in below):
                return root
    return None


def describe(roots: Sequence[Root]) -> str:
    return ", ".join(f"{r.why} ({r.folder})" for r in roots)


class DocumentProblem(Exception):
    """Why a document entry is refused (``locate_document``); each caller words it for its own
    file — a scenario's line and column, a task file's line."""

    def __init__(self, kind: str, path: Path | None = None, reason: str = "") -> None:
        super().__init__(kind)
        self.kind = kind  # "nul", "absolute", "unreadable", "outside", "missing", "not_file"
        self.path = path  # where the entry led, when it was followed
        self.reason = reason  # "unreadable": the system's words


def locate_document(base: Path, entry: str, roots: Sequence[Root]) -> Path:
    """The file a document entry names relative to ``base``, links followed, once it is known to
    lie inside ``roots``, to exist and to be a file; else ``DocumentProblem``. One check for every
    file that names documents, so the confinement cannot drift between them."""
    if "\x00" in entry:
        raise DocumentProblem("nul")
    if Path(entry).is_absolute() or entry.startswith("~"):
        raise DocumentProblem("absolute")
    try:
        path = (base / entry).resolve()
        inside = root_of(path, roots) is not None
        exists, is_file = path.exists(), path.is_file()
    except (OSError, RuntimeError) as exc:  # too long a name, a symlink loop
        raise DocumentProblem("unreadable", reason=getattr(exc, "strerror", None) or str(exc)) from None
    if not inside:
        raise DocumentProblem("outside", path)
    if not exists:
        raise DocumentProblem("missing", path)
    if not is_file:
        raise DocumentProblem("not_file", path)
    return path
