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
