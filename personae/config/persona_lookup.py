"""Find personas by name, and apply ``extends``.

Personas named in a scenario (in its roster, as ``extends:``, or as the collapse summarizer) are
looked up in this order, first match wins, matching the ``name:`` inside each file:

1. inline definitions in the scenario's ``personas:`` list;
2. ``personas/`` beside the scenario file, then ``personas/`` in the folder above it (the layout
   ``personae init`` writes: ``personas/`` and ``scenarios/`` side by side);
3. ``./personas`` in the current folder;
4. the built-in personas shipped in ``personae/builtin/personas``.

A persona that ``extends`` its own name (``name: Critic, extends: Critic``) extends the next
definition further down that order, which is how a user tweaks a built-in persona in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from personae.config.builtin import builtin_dir
from personae.config.confinement import require_inside
from personae.config.messages import config_error, did_you_mean, format_path, unknown
from personae.config.models import Loc, Persona, Scenario
from personae.config.validation import validate
from personae.config.yaml_source import YAML_SUFFIXES, Source, node_at, parse_yaml, read_text
from personae.errors import ConfigError


@dataclass(frozen=True)
class FoundPersona:
    """A persona definition as written, and where it came from (for messages and ``extends``)."""

    persona: Persona
    origin: str  # "inline", "builtin" or a file path
    level: int  # index of the search place it came from; -1: outside the search places
    src: Source
    node: yaml.Node | None  # the persona's mapping node
    prefix: str  # field path of the persona within its file ("" or "personas[2]")


@dataclass
class SearchPlace:
    """One place personas are looked for: the scenario's inline list, or a folder of YAML files."""

    label: str
    path: Path | None = None  # a folder (resolved); None for the inline list
    builtin: bool = False
    inline: dict[str, FoundPersona] = field(default_factory=dict)
    files_by_name: dict[str, list[Path]] | None = None
    broken: dict[Path, ConfigError] = field(default_factory=dict)
    given: Path | None = None  # the folder as named, before links were followed

    def index(self) -> dict[str, list[Path]]:
        """name -> files defining it, read once, on first use. Unreadable files are set aside.

        Like documents, persona files are read only from inside their folder, and the folder
        only from inside the one that holds it: a link in a project someone else wrote must not
        copy ``~/.ssh`` or ``/etc`` into the run's personas and every prompt."""
        if self.files_by_name is None:
            self.files_by_name = {}
            if self.path is not None and self.path.is_dir():
                if self.given is not None:
                    require_inside(self.given.parent, self.given, "persona folder")
                for file in sorted(self.path.iterdir()):
                    if file.suffix not in YAML_SUFFIXES or not file.is_file():
                        continue
                    if not self.builtin:
                        require_inside(self.path, file, "persona file")
                    try:
                        data = parse_yaml(read_text(file, str(file)), str(file)).data
                    except ConfigError as exc:
                        self.broken[file] = exc
                        continue
                    name = data.get("name") if isinstance(data, dict) else None
                    if isinstance(name, str):
                        self.files_by_name.setdefault(name, []).append(file)
        return self.files_by_name

    def names(self) -> set[str]:
        return set(self.inline) if self.path is None else set(self.index())


class PersonaCatalog:
    """Finds personas by name through the search places in order, and applies ``extends``."""

    def __init__(self, places: list[SearchPlace]) -> None:
        self.places = places
        self._resolved: dict[tuple[int, str], Persona] = {}
        # A persona whose chain failed fails with the same error when asked again (its own
        # roster entry, a persona extending it): one problem is reported once.
        self._failed: dict[tuple[int, str], ConfigError] = {}

    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for place in self.places:
            seen.update(dict.fromkeys(sorted(place.names())))
        return list(seen)

    def find(self, name: str, start: int = 0) -> FoundPersona | None:
        for level in range(start, len(self.places)):
            place = self.places[level]
            if place.path is None:
                if name in place.inline:
                    return place.inline[name]
                continue
            paths = place.index().get(name, [])
            if len(paths) > 1:
                raise config_error(
                    str(paths[1]), None, "name",
                    f"persona '{name}' is also defined in {paths[0]}.",
                    "Rename or remove one of them.",
                )
            if not paths:
                # A file named after the persona that cannot be read was surely meant: say why.
                for broken, exc in place.broken.items():
                    if broken.stem.casefold() == name.casefold():
                        raise exc
                continue
            src = parse_yaml(read_text(paths[0], str(paths[0])), str(paths[0]))
            persona = validate(Persona, src)
            origin = "builtin" if place.builtin else str(paths[0])
            return FoundPersona(persona, origin, level, src, src.node, "")
        return None

    def describe(self) -> str:
        parts = []
        for place in self.places:
            if place.path is not None and not place.builtin and not place.path.is_dir():
                parts.append(f"{place.label} (no such folder)")
            else:
                parts.append(place.label)
        broken = [str(p) for place in self.places for p in place.broken]
        text = ", ".join(parts)
        if broken:
            text += f"; skipped invalid files {', '.join(broken)} (see `personae validate`)"
        return text

    def resolve(self, found: FoundPersona, chain: tuple[tuple[int, str], ...] = ()) -> Persona:
        """Apply ``extends`` (recursively): inherit every field, then the child's own fields win."""
        persona = found.persona
        key = (found.level, persona.name)
        if key in self._resolved:
            return self._resolved[key]
        if key in self._failed:
            raise self._failed[key]
        if persona.extends is None:
            self._resolved[key] = persona
            return persona
        start = found.level + 1 if persona.extends == persona.name else 0
        parent = self.find(persona.extends, start)
        where = (*prefix_loc(found.prefix), "extends")
        extends_node, _ = node_at(found.node, ("extends",))
        if parent is None:
            extra = (
                f"A persona that extends its own name extends the next '{persona.name}' further "
                "down the search places, and there is none: remove `extends`, or extend another "
                "persona." if persona.extends == persona.name else ""
            )
            raise unknown_persona(persona.extends, found.src.label, extends_node, where, self, extra)
        if len(chain) >= MAX_EXTENDS_DEPTH:
            raise config_error(
                found.src.label, extends_node, format_path(where),
                f"the extends chain from here is more than {MAX_EXTENDS_DEPTH} personas long.",
                "Let a persona extend one that extends few others; a real chain needs a handful.",
            )
        parent_key = (parent.level, parent.persona.name)
        if parent_key in (*chain, key):
            names = [name for _, name in (*chain, key)]
            cycle = names[names.index(parent.persona.name):] + [parent.persona.name]
            raise config_error(
                found.src.label, extends_node, format_path(where),
                f"extends cycle: {' -> '.join(cycle)}.",
                "Remove `extends` from one of these personas.",
            )
        if parent_key in self._failed:
            raise self._failed[parent_key]
        try:
            merged = _merge(self.resolve(parent, (*chain, key)), persona)
        except ConfigError as exc:
            self._failed[key] = exc
            raise
        self._resolved[key] = merged
        return merged


MAX_EXTENDS_DEPTH = 32  # resolved recursively: far below Python's recursion limit


def prefix_loc(prefix: str) -> Loc:
    """``personas[2]`` -> ("personas", 2): inline personas live inside the scenario file."""
    if not prefix:
        return ()
    name, _, index = prefix.partition("[")
    return (name, int(index.rstrip("]")))


def _merge(parent: Persona, child: Persona) -> Persona:
    merged = parent.model_dump()
    for name in child.model_fields_set:
        if name == "options":
            own = child.options.model_dump(exclude_unset=True)
            merged["options"] = {**parent.options.as_dict(), **own}
        else:
            merged[name] = child.model_dump(include={name})[name]
    merged["name"] = child.name
    return Persona.model_validate(merged)


def unknown_persona(
    name: str, label: str, node: yaml.Node | None, loc: Loc, catalog: PersonaCatalog, extra_fix: str = ""
) -> ConfigError:
    problem = unknown("persona", name, did_you_mean(name, catalog.names()))
    fix = (
        f"Looked in: {catalog.describe()}. Fix the name, or add a persona file with "
        f"`name: {name}` to one of those folders. {extra_fix}"
    )
    return config_error(label, node, format_path(loc), problem, fix.strip())


def builtin_place() -> SearchPlace:
    return SearchPlace("built-in personas", builtin_dir() / "personas", builtin=True)


def dir_places(folders: list[Path]) -> list[SearchPlace]:
    """Folder places in order, without repeats and without the built-in folder (always last)."""
    seen = {(builtin_dir() / "personas").resolve()}
    places = []
    for folder in folders:
        resolved = folder.expanduser().resolve()
        if resolved not in seen:
            seen.add(resolved)
            places.append(SearchPlace(str(resolved), resolved, given=folder.expanduser().absolute()))
    return places


def scenario_places(scenario: Scenario, src: Source, base: Path) -> list[SearchPlace]:
    inline = SearchPlace("inline definitions in the scenario")
    for index, entry in enumerate(scenario.personas):
        if isinstance(entry, Persona):
            node, _ = node_at(src.node, ("personas", index))
            inline.inline[entry.name] = FoundPersona(entry, "inline", 0, src, node, f"personas[{index}]")
    folders = [base / "personas", base.parent / "personas", Path.cwd() / "personas"]
    return [inline, *dir_places(folders), builtin_place()]
