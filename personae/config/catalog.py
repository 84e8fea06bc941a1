"""Scenarios by name: `personae run cache-review` and `personae scenarios`.

A name (no folder, no .yaml) is looked up in ``./scenarios/`` first, then among the built-ins, the
order `personae scenarios` shows; a path that exists is always used as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from personae.config.builtin import builtin_dir
from personae.config.messages import did_you_mean
from personae.errors import UserError

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ScenarioFile:
    name: str  # the file's stem: what `personae run NAME` takes
    path: Path
    builtin: bool


def scenario_files(folder: Path = Path("scenarios")) -> list[ScenarioFile]:
    """Local scenarios in ``folder`` (first: they win), then the built-in ones."""
    builtin = (builtin_dir() / "scenarios").resolve()
    found = []
    if folder.is_dir() and folder.resolve() != builtin:
        found += [
            ScenarioFile(p.stem, p, False)
            for p in sorted(folder.iterdir()) if p.suffix in SUFFIXES and p.is_file()
        ]
    found += [ScenarioFile(p.stem, p, True) for p in sorted(builtin.iterdir()) if p.suffix in SUFFIXES]
    return found


def find_scenario(ref: Path, folder: Path = Path("scenarios")) -> Path:
    """The file ``personae run REF`` runs: REF itself if it exists, else the scenario so named."""
    if ref.exists() or len(ref.parts) != 1 or ref.suffix in SUFFIXES:
        return ref  # a path: the loader says what is wrong with it, if anything
    files = scenario_files(folder)
    for file in files:
        if file.name == ref.name:
            return file.path
    names = sorted({f.name for f in files})
    guess = did_you_mean(ref.name, names)
    hint = f" Did you mean {guess!r} (personae run {guess})?" if guess else ""
    raise UserError(
        f"No scenario file {ref} and no scenario named {ref.name!r}.{hint} Scenarios by name: "
        f"{', '.join(names)} (personae scenarios lists them); or give the path of a .yaml file."
    )
