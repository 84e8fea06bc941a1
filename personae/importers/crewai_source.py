"""Read a CrewAI project's `agents.yaml` and `tasks.yaml`, keeping each value's line.

CrewAI's project template (`crewai create crew NAME`) keeps them in ``src/<name>/config/``; a
project may also keep them in ``config/`` or at its root. Both files are mappings: agent key ->
{role, goal, backstory, …} and task key -> {description, expected_output, agent, context, …}, in
the order the crew runs them (sequential process). They are parsed with the same safe, marked
YAML reader as scenario files, so a mistake in them is one message at its line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from personae.config.messages import config_error, did_you_mean, format_path
from personae.config.yaml_source import node_at, parse_yaml, read_text
from personae.errors import UserError

# Folders never searched for a project's config: installed packages and tool caches.
_SKIPPED = {".venv", "venv", "site-packages", "node_modules", ".git", "__pycache__", ".tox"}


@dataclass(frozen=True)
class Field:
    """One value from a CrewAI file, and where it stands (for messages)."""

    value: Any
    label: str
    node: yaml.Node | None
    path: str


@dataclass(frozen=True)
class Entry:
    """An agent or a task: its key and its fields, in file order."""

    key: str
    fields: dict[str, Field]
    label: str
    node: yaml.Node | None

    def text(self, name: str) -> str | None:
        """A text field as written (numbers as their text), stripped; None if absent or empty."""
        found = self.fields.get(name)
        if found is None or found.value is None:
            return None
        if isinstance(found.value, bool) or not isinstance(found.value, str | int | float):
            raise config_error(
                found.label, found.node, found.path, f"`{name}` should be text, not "
                f"{type(found.value).__name__}.", "Write it as a string (a `>` block, as CrewAI's "
                "template does).",
            )
        return str(found.value).strip() or None

    def require(self, name: str, what: str) -> str:
        value = self.text(name)
        if value is None:
            raise config_error(
                self.label, self.node, f"{self.key}.{name}",
                f"{what} '{self.key}' has no `{name}`, which CrewAI requires.",
                f"Add `{name}: ...` under `{self.key}:`.",
            )
        return value


@dataclass(frozen=True)
class CrewProject:
    """The two files of one CrewAI project, read."""

    name: str  # the project's package name (src/<name>), else its folder's name
    agents: list[Entry]
    tasks: list[Entry]
    folder: Path  # the config folder the files came from
    root: Path


def find_config(root: Path) -> Path:
    """The folder under ``root`` that holds agents.yaml and tasks.yaml (one, or an error); the
    path of one of those two files stands for its folder."""
    if root.is_file() and root.name in {"agents.yaml", "tasks.yaml"}:
        root = root.parent
    if not root.is_dir():
        problem = "no such folder" if not root.exists() else "not a folder"
        raise UserError(
            f"{root}: {problem}. Give the CrewAI project's folder (the one with pyproject.toml "
            "and src/), or its config folder."
        )
    found = sorted(_config_folders(root))
    complete = [folder for folder in found if (folder / "tasks.yaml").is_file()]
    if len(complete) == 1:
        return complete[0]
    if len(complete) > 1:
        listed = ", ".join(str(f) for f in complete)
        raise UserError(
            f"{root} holds several CrewAI configs ({listed}). Give the one to import: "
            f"personae import crewai {complete[0]}"
        )
    if found:
        raise UserError(
            f"{found[0] / 'agents.yaml'} has no tasks.yaml beside it. A crew needs both: write "
            "tasks.yaml next to it (CrewAI's template keeps them in src/<name>/config/)."
        )
    raise UserError(
        f"No agents.yaml under {root}. CrewAI keeps a project's agents.yaml and tasks.yaml in "
        "src/<name>/config/; give that project's folder (or the config folder itself)."
    )


def _config_folders(root: Path, depth: int = 6) -> list[Path]:
    """Folders under ``root`` (a few levels deep) holding an agents.yaml; installed packages,
    virtual environments and hidden folders are not entered, so a big tree stays quick."""
    found = []
    level = [root]
    for _ in range(depth + 1):
        below = []
        for folder in level:
            try:
                children = sorted(folder.iterdir())
            except OSError:
                continue
            if any(c.name == "agents.yaml" and c.is_file() for c in children):
                found.append(folder)
            below += [
                c for c in children
                if c.is_dir() and not c.is_symlink() and c.name not in _SKIPPED
                and not c.name.startswith(".")
            ]
        level = below
    return found


def read_project(root: Path) -> CrewProject:
    folder = find_config(root)
    root = folder if root.is_file() else root
    agents = _entries(folder / "agents.yaml", "agent")
    tasks = _entries(folder / "tasks.yaml", "task")
    parts = folder.resolve().parts
    name = parts[-2] if folder.name == "config" and len(parts) >= 3 and parts[-3] == "src" else (
        root.resolve().name
    )
    return CrewProject(name, agents, tasks, folder, root)


def _entries(file: Path, what: str) -> list[Entry]:
    src = parse_yaml(read_text(file, str(file)), str(file))
    if not isinstance(src.data, dict) or not src.data:
        raise config_error(
            src.label, src.node, "", f"the file should map each {what}'s key to its settings.",
            f"Write `my_{what}:` followed by its fields indented below it, as CrewAI's template does.",
        )
    entries = []
    for key, body in src.data.items():
        node, _ = node_at(src.node, (str(key),))
        if not isinstance(body, dict):
            raise config_error(
                src.label, node, str(key), f"{what} '{key}' should be a mapping of its fields.",
                f"Indent its fields ({_FIELDS[what]}) under `{key}:`.",
            )
        fields = {
            str(name): Field(value, src.label, node_at(src.node, (str(key), str(name)))[0],
                             format_path((str(key), str(name))))
            for name, value in body.items()
        }
        entries.append(Entry(str(key), fields, src.label, node))
    return entries


_FIELDS = {"agent": "role, goal, backstory", "task": "description, expected_output, agent"}


def unknown_reference(entry: Entry, field: str, name: str, known: list[str], what: str) -> Exception:
    """A task naming an agent (or a context task) that the files do not define."""
    at = entry.fields[field]
    guess = did_you_mean(name, known)
    return config_error(
        at.label, at.node, at.path, f"unknown {what} '{name}'" + (f" — did you mean '{guess}'?" if guess else "."),
        f"The {what}s defined are: {', '.join(known)}.",
    )

