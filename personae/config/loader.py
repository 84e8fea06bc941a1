"""Load persona and scenario YAML into validated models, with errors a person can act on.

A typo in a YAML file must never become a traceback or a silently ignored setting. So every file is
parsed once into PyYAML's node tree (which keeps line and column marks) and constructed with the
SafeLoader (plain data: nothing in a file can run code). pydantic validates the data, and its error
locations are mapped back to those nodes, so each ``ConfigError`` names the file, line and column,
the field path, the bad value and a fix, in one paragraph.

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

import difflib
import re
import types
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from personae.config.models import Persona, Scenario
from personae.config.roots import describe, document_roots, root_of
from personae.config.policy_checks import consensus_refs, policy_problems
from personae.errors import ConfigError
from personae.limits import MAX_FILE_BYTES

YAML_SUFFIXES = (".yaml", ".yml")

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedScenario:
    """A scenario with every persona it needs found, resolved and ready for the orchestrator.

    ``source_yaml`` is kept verbatim so a run can store it, and resume or replay can load it again
    with :func:`load_scenario_text` exactly as it was.
    """

    scenario: Scenario
    # Fully resolved (``extends`` applied), roster order first, then personas the scenario needs
    # beyond its roster (the collapse summarizer).
    personas: dict[str, Persona]
    path: Path | None
    source_yaml: str
    documents: tuple[Path, ...]  # absolute paths of the scenario's documents
    persona_sources: dict[str, str]  # name -> "inline", "builtin" or the persona file's path

    @property
    def roster(self) -> list[str]:
        return self.scenario.roster


# ---------------------------------------------------------------------------------- public API


def builtin_dir() -> Path:
    """The folder of built-in personas and scenarios inside the installed package."""
    return Path(str(files("personae") / "builtin"))


def load_scenario(path: str | Path, *, allowed_dirs: Sequence[Path] = ()) -> LoadedScenario:
    """Read, validate and resolve a scenario file; documents resolve relative to its folder
    (and may lie in the project or in ``allowed_dirs``: ``roots.py``)."""
    file = Path(path).expanduser()
    _require_file(file, Path(path), "scenario")
    loaded = load_scenario_text(
        _read_text(file, str(path)), path=Path(path), base_dir=file.parent, allowed_dirs=allowed_dirs
    )
    # Messages name the file as the user typed it; the record keeps where it really is.
    return replace(loaded, path=file.resolve())


def load_scenario_text(
    text: str, *, path: Path | None = None, base_dir: Path | None = None,
    allowed_dirs: Sequence[Path] = (),
) -> LoadedScenario:
    """Validate and resolve a scenario given as YAML text (resume and replay reload stored YAML).

    ``path`` only names the file in messages; ``base_dir`` is where documents and ``personas/`` are
    looked for (default: the folder of ``path``, else the current folder).
    """
    src = _parse(text, str(path) if path is not None else "<scenario>")
    _require_mapping(src, "scenario")
    scenario = _validate(Scenario, src)
    if base_dir is None:
        base_dir = Path(path).expanduser().parent if path is not None else Path.cwd()
    base = base_dir.expanduser().resolve()

    catalog = _Catalog(_scenario_places(scenario, src, base))
    personas: dict[str, Persona] = {}
    origins: dict[str, str] = {}
    for index, name in enumerate(scenario.roster):
        found = catalog.find(name)
        if found is None:
            node, _ = _node_at(src.node, ("personas", index))
            raise _unknown_persona(name, src.label, node, ("personas", index), catalog)
        personas[name] = catalog.resolve(found)
        origins[name] = found.origin

    _check_speakers(scenario, src)
    collapse = scenario.memory.collapse
    if collapse is not None and collapse.summarizer not in personas:
        found = catalog.find(collapse.summarizer)
        if found is None:
            loc = ("memory", "collapse", "summarizer")
            node, _ = _node_at(src.node, loc)
            raise _unknown_persona(
                collapse.summarizer, src.label, node, loc, catalog,
                "Or set `collapse: null` under `memory:` to turn collapse off.",
            )
        personas[collapse.summarizer] = catalog.resolve(found)
        origins[collapse.summarizer] = found.origin

    return LoadedScenario(
        scenario=scenario,
        personas=personas,
        path=path,
        source_yaml=text,
        documents=_resolve_documents(scenario, src, base, allowed_dirs),
        persona_sources=origins,
    )


def load_persona_file(path: str | Path, *, folder: Path | None = None) -> Persona:
    """Read and validate one persona file as written (``extends`` is not applied). Found by
    listing ``folder``, it must lie inside it (no link leading elsewhere)."""
    file = Path(path).expanduser()
    _require_file(file, Path(path), "persona")
    if folder is not None:
        _require_inside(folder, file, "persona file")
    src = _parse(_read_text(file, str(path)), str(path))
    _require_mapping(src, "persona")
    return _validate(Persona, src)


def builtin_personas() -> dict[str, Persona]:
    """The personas shipped with Personae, resolved, keyed by name."""
    catalog = _Catalog([_builtin_place()])
    found = (catalog.find(name) for name in catalog.names())
    return {f.persona.name: catalog.resolve(f) for f in found if f is not None}


def validate_file(path: str | Path, *, allowed_dirs: Sequence[Path] = ()) -> str:
    """Fully check a persona or scenario file and say in a few words what it is.

    A scenario is recognised by its ``goal:`` or ``personas:`` key; anything else shaped like a
    persona is checked as one, including its ``extends`` chain.
    """
    file = Path(path).expanduser()
    _require_file(file, Path(path), "YAML")
    text = _read_text(file, str(path))
    src = _parse(text, str(path))
    _require_mapping(src, "persona or scenario")
    kind = _guess_kind(src)
    if kind == "scenario":
        loaded = load_scenario_text(text, path=Path(path), base_dir=file.parent, allowed_dirs=allowed_dirs)
        text = f"scenario '{loaded.scenario.name}': {_count(len(loaded.roster), 'persona')}"
        if loaded.documents:
            text += f", {_count(len(loaded.documents), 'document')}"
        return text
    persona = _validate(Persona, src)
    if persona.extends is None:
        return f"persona '{persona.name}'"
    folder = file.resolve().parent
    places = _dir_places([folder, Path.cwd() / "personas"])
    level = 0 if places and places[0].path == folder else -1
    catalog = _Catalog([*places, _builtin_place()])
    catalog.resolve(_Found(persona, str(file), level, src, src.node, ""))
    return f"persona '{persona.name}' (extends '{persona.extends}')"


# ------------------------------------------------------------------------- reading and parsing


@dataclass(frozen=True)
class _Source:
    """One parsed YAML file: its name for messages, its node tree (with marks) and its data."""

    label: str
    node: yaml.Node | None
    data: Any


def _require_file(file: Path, as_given: Path, what: str) -> None:
    if file.is_file():
        return
    if file.is_dir():
        raise _error(
            str(as_given), None, "", f"is a folder, not a {what} file.",
            "Pass the path of a .yaml file.",
        )
    folder = file.parent
    siblings = [p for p in folder.iterdir() if p.suffix in YAML_SUFFIXES] if folder.is_dir() else []
    guess = _similar_file(file, siblings)
    fix = f"Did you mean '{guess}'?" if guess else "Check the path."
    if what == "scenario":
        fix += " `personae init` writes example scenarios into ./scenarios."
    raise _error(str(as_given), None, "", f"{what} file not found.", fix)


def _read_text(file: Path, label: str) -> str:
    """Read a file as UTF-8, pointing at the first byte that is not (line and column)."""
    try:
        with file.open("rb") as handle:  # no more than the limit, whatever the size claims
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        problem = f"the file cannot be read: {exc.strerror}."
        raise _error(label, None, "", problem, "Check its permissions.") from None
    if len(raw) > MAX_FILE_BYTES:
        # Checked before parsing: a huge file takes minutes and gigabytes to compose.
        size = max(len(raw), _size(file))
        raise _error(
            label, None, "",
            f"the file is {size:,} bytes, more than the {MAX_FILE_BYTES:,} a persona or "
            "scenario file may have.",
            "Move long text into `documents:` (files beside the scenario), which are read in parts.",
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _error(
            label, None, "",
            f"the file is not valid UTF-8 (byte 0x{raw[exc.start]:02x}).",
            "Save the file with UTF-8 encoding.",
            line=line, column=column,
        ) from None


def _size(file: Path) -> int:
    try:
        return file.stat().st_size
    except OSError:
        return 0


def _parse(text: str, label: str) -> _Source:
    """Compose the node tree and construct plain data from it with the SafeLoader, in one pass."""
    try:
        loader = yaml.SafeLoader(text)  # checks every character up front
        try:
            node = loader.get_single_node()
            data = None
            if node is not None:
                _reject_duplicate_keys(node, label)
                _reject_surrogates(node, label)
                _reject_alias_bombs(node, label)
                data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(label, exc) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise _error(
            label, None, "", "lists or mappings are nested too deeply to read.",
            "A persona or scenario file needs only a few levels of nesting.",
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise _error(
            label, None, "",
            f"the file contains a character YAML does not allow (#x{exc.character:04x}).",
            "Remove it, or write it as an escape inside a double-quoted string.",
            line=line, column=column,
        ) from None
    return _Source(label, node, data)


def _yaml_error(label: str, exc: yaml.MarkedYAMLError) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "not valid YAML"
    if exc.context:
        problem = f"{problem} ({exc.context}"
        if exc.context_mark is not None and exc.context_mark is not mark:
            problem += f" at line {exc.context_mark.line + 1}"
        problem += ")"
    if isinstance(exc, yaml.constructor.ConstructorError):
        fix = "YAML tags that build objects (such as !!python/...) are not allowed: files are data."
    elif "single document" in problem:
        fix = "Keep one document per file: remove the extra '---'."
    else:
        fix = (
            "Check the indentation and quoting there; a value that contains ': ' or starts "
            "with one of { [ * & ! # | > must be quoted."
        )
    line = mark.line + 1 if mark is not None else None
    column = mark.column + 1 if mark is not None else None
    return _error(label, None, "", f"YAML syntax error: {problem}.", fix, line=line, column=column)


def _reject_duplicate_keys(root: yaml.Node, label: str) -> None:
    """SafeLoader keeps the last of two equal keys silently; a duplicate is almost always a slip."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, yaml.Node] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if key.value in first:
                        line = first[key.value].start_mark.line + 1
                        problem = f"key '{key.value}' appears twice (first on line {line})."
                        raise _error(label, key, "", problem, "Keep one of them.")
                    first[key.value] = key
                stack.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _reject_surrogates(root: yaml.Node, label: str) -> None:
    """A double-quoted ``"\\udcff"`` is a lone surrogate: no character, not storable as UTF-8
    (the run's first commit would fail on it). Point at it while the file is still at hand."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            bad = _SURROGATE.search(node.value)
            if bad:
                raise _error(
                    label, node, "", f"the text holds the escape \\u{ord(bad.group()):04x}, a lone "
                    "surrogate, which is not a character.",
                    "Remove it, or write the character itself (or its \\U00XXXXXX escape).",
                )
        elif isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


MAX_EXPANDED_NODES = 100_000


def _reject_alias_bombs(root: yaml.Node, label: str) -> None:
    """Aliases let a few lines stand for a huge document ("billion laughs"), or for one that
    contains itself; either would hang or break whatever walks the data later (storing the
    run's personas, for one). Count the document as aliases expand it, without expanding it."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        if children_done:
            open_.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_EXPANDED_NODES:
                raise _error(
                    label, node, "", "aliases (*name) expand this value to more than "
                    f"{MAX_EXPANDED_NODES:,} items.", "Write the data out instead of aliasing it.",
                )
            continue
        if id(node) in open_:
            raise _error(label, node, "", "an alias refers to the value that contains it.",
                         "Remove the alias (*name) or point it at another anchor.")
        open_.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in open_:
                raise _error(label, child, "", "an alias refers to the value that contains it.",
                             "Remove the alias (*name) or point it at another anchor.")
            if id(child) not in sizes:
                stack.append((child, False))


def _require_mapping(src: _Source, what: str) -> None:
    example = {
        "scenario": "name, goal and personas",
        "persona": "name and system",
    }.get(what, "name, goal and personas (a scenario) or name and system (a persona)")
    if src.data is None:
        fix = f"A {what} file is a mapping with keys such as {example}."
        raise _error(src.label, None, "", "the file is empty.", fix)
    if not isinstance(src.data, dict):
        kind = "a list" if isinstance(src.data, list) else f"a single value ({_show(src.data)})"
        raise _error(
            src.label, src.node, "", f"the file must be a mapping of keys, but it is {kind}.",
            f"A {what} file has `key: value` lines at the top level, such as {example}.",
        )


def _guess_kind(src: _Source) -> str:
    """Scenario or persona? By the keys only one of them has, forgiving a misspelt key."""
    keys = {str(k) for k in src.data}
    if keys & {"goal", "personas"}:
        return "scenario"
    scenario_only = set(Scenario.model_fields) - set(Persona.model_fields)
    persona_only = set(Persona.model_fields) - set(Scenario.model_fields)
    scenario_score = sum(_did_you_mean(k, scenario_only) is not None for k in keys)
    persona_score = sum(_did_you_mean(k, persona_only) is not None for k in keys)
    if scenario_score > persona_score:
        return "scenario"
    if persona_score or "name" in keys:
        return "persona"
    raise _error(
        src.label, src.node, "",
        "the file is neither a persona nor a scenario.",
        "A persona has name and system; a scenario has name, goal and personas.",
    )


# ------------------------------------------------------------------------------ error messages


def _error(
    label: str,
    node: yaml.Node | None,
    path: str,
    problem: str,
    fix: str = "",
    *,
    line: int | None = None,
    column: int | None = None,
) -> ConfigError:
    """One paragraph: where (file, line, column, field), what is wrong, and how to fix it."""
    if node is not None:
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
    where = label
    if line is not None:
        where += f", line {line}, column {column}"
    if path:
        where += f", at {path}"
    message = f"{where}: {problem}" + (f" {fix}" if fix else "")
    error = ConfigError(message)
    # Also as attributes, for callers that point an editor at the spot.
    error.file, error.line, error.column, error.field = (  # type: ignore[attr-defined]
        label, line, column, path,
    )
    return error


def _did_you_mean(word: str, choices: list[str] | set[str]) -> str | None:
    choices = sorted(choices)
    for choice in choices:
        if choice.casefold() == word.casefold():
            return choice
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def _similar_file(wanted: Path, candidates: list[Path]) -> Path | None:
    """A near-miss file name, compared without extensions (so 'x.yaml' is not like 's.yaml')."""
    by_stem = {p.stem: p for p in sorted(candidates)}
    guess = _did_you_mean(wanted.stem, list(by_stem))
    return by_stem[guess] if guess else None


def _unknown(what: str, value: str, guess: str | None) -> str:
    return f"unknown {what} '{value}'" + _suggest(guess)


def _suggest(guess: str | None) -> str:
    return f" — did you mean '{guess}'?" if guess else "."


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML (null, true), cut short if long."""
    if isinstance(value, str):
        text = f"'{value}'"
    elif value is None or isinstance(value, bool):
        text = "null" if value is None else str(value).lower()
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _format_path(parts: Loc) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _node_at(root: yaml.Node | None, loc: Loc) -> tuple[yaml.Node | None, yaml.Node | None]:
    """(value node, key node) of a field path; if it is not in the file, its nearest ancestor's."""
    node, key_node = root, None
    for part in loc:
        child = _child(node, part)
        if child is None:
            return node, None
        key_node, node = child
    return node, key_node


def _child(node: yaml.Node | None, part: str | int) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                return key, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return None, node.value[part]
    return None


# ------------------------------------------------------- pydantic errors -> nodes and messages


def _members(annotation: Any) -> list[Any]:
    """The alternatives of an annotation (through Annotated, unions and Optional), None excluded."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [] if annotation in (None, type(None)) else [annotation]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _has_tag(member: Any, tag: str) -> bool:
    """pydantic puts a union member's tag in ``loc``: the class name, or the discriminator value."""
    if _is_model(member):
        type_field = member.model_fields.get("type")
        literal = get_args(type_field.annotation) if type_field is not None else ()
        return member.__name__ == tag or tag in literal
    return getattr(member, "__name__", None) == tag


@dataclass(frozen=True)
class _Spot:
    """Where a pydantic error points in the file."""

    path: Loc  # the field path without union tags
    node: yaml.Node | None
    key_node: yaml.Node | None
    owner: type[BaseModel] | None  # the model whose field the last step names
    through_union: bool


def _spot(model: type[BaseModel], root: yaml.Node | None, loc: Loc) -> _Spot:
    """Follow ``loc`` through the model's annotations and the node tree, dropping union tags."""
    annotation: Any = model
    path: list[str | int] = []
    owner: type[BaseModel] | None = None
    through_union = False
    for part in loc:
        members = _members(annotation)
        if isinstance(part, str) and len(members) > 1:
            tagged = next((m for m in members if _has_tag(m, part)), None)
            if tagged is not None:
                annotation, through_union = tagged, True
                continue
        path.append(part)
        annotation, owner = _step(members, part)
    node, key_node = _node_at(root, tuple(path))
    return _Spot(tuple(path), node, key_node, owner, through_union)


def _step(members: list[Any], part: str | int) -> tuple[Any, type[BaseModel] | None]:
    for member in members:
        origin = get_origin(member)
        if isinstance(part, int) and origin in (list, tuple):
            return get_args(member)[0], None
        if isinstance(part, str) and origin is dict:
            return get_args(member)[1], None
        if isinstance(part, str) and _is_model(member) and part in member.model_fields:
            return member.model_fields[part].annotation, member
    return None, next((m for m in members if _is_model(m)), None)


_TYPE_MISMATCH = {"string_type", "model_type", "model_attributes_type", "dict_type", "list_type"}
_WRITE_A_MAPPING = "Write a mapping: `key: value` lines indented under it, or `{key: value}`."
_TYPE_FIXES = {
    "string_type": "Quote it to make it text (YAML reads yes, no, 1.0 and dates otherwise).",
    "list_type": "Write a list: `[a, b]`, or one `- item` per line.",
    "model_type": _WRITE_A_MAPPING,
    "model_attributes_type": _WRITE_A_MAPPING,
    "dict_type": _WRITE_A_MAPPING,
}
_KIND_WORDS = {
    "string_type": "a text value",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dict_type": "a mapping",
    "list_type": "a list",
}


def _validate(model: type[BaseModel], src: _Source) -> Any:
    try:
        return model.model_validate(src.data)
    except ValidationError as exc:
        raise _validation_error(model, src, exc) from None


def _validation_error(model: type[BaseModel], src: _Source, exc: ValidationError) -> ConfigError:
    """Turn the most useful of pydantic's errors into one message; mention how many more there are.

    A value that fits no branch of a union (``str | Persona``) yields one error per branch; errors
    that only say "wrong type for this branch" rank last, so a real problem inside the branch the
    user meant (a mapping: the Persona) is the one reported.
    """
    errors = exc.errors(include_url=False)
    spots = [_spot(model, src.node, tuple(err["loc"])) for err in errors]
    noise = {
        i for i, spot in enumerate(spots)
        if spot.through_union and errors[i]["type"] in _TYPE_MISMATCH
    }
    # A misspelt key shows up twice: as unknown ('goall') and as missing ('goal'). Report the
    # unknown one, which carries the did-you-mean, and do not count the missing one as another.
    suggested = set()
    for err, spot in zip(errors, spots):
        if err["type"] == "extra_forbidden" and spot.owner is not None:
            guess = _did_you_mean(str(spot.path[-1]), list(spot.owner.model_fields))
            suggested.add((*spot.path[:-1], guess))
    ranked = sorted(
        range(len(errors)),
        key=lambda i: (i in noise, errors[i]["type"] != "extra_forbidden", i),
    )
    err, spot = errors[ranked[0]], spots[ranked[0]]
    problem, fix = _describe(err, spot, [e for e, s in zip(errors, spots) if s.path == spot.path])
    others = {
        spots[i].path for i in range(len(errors))
        if i not in noise and spots[i].path != spot.path
        and not (errors[i]["type"] == "missing" and spots[i].path in suggested)
    }
    if others:
        fix += f" ({len(others)} more problem{'s' if len(others) > 1 else ''} in this file.)"
    node = spot.key_node if err["type"] == "extra_forbidden" else spot.node
    return _error(src.label, node, _format_path(spot.path), problem, fix.strip())


def _describe(
    err: dict[str, Any], spot: _Spot, same_place: list[dict[str, Any]]
) -> tuple[str, str]:
    """(problem, fix) for one pydantic error; ``same_place``: all errors at the same field."""
    kind = err["type"]
    value = err.get("input")
    key = spot.path[-1] if spot.path else ""
    ctx = err.get("ctx") or {}
    schema_hint = "`personae schema scenario` (or `persona`) prints every field and its type."
    if kind == "extra_forbidden":
        allowed = sorted(spot.owner.model_fields) if spot.owner else []
        guess = _did_you_mean(str(key), allowed)
        problem = _unknown("key", str(key), guess)
        return problem, f"Keys allowed here: {', '.join(allowed)}." if allowed else ""
    if kind == "missing":
        return f"required key '{key}' is missing.", f"Add `{key}: ...` here."
    if kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        guess = _did_you_mean(str(ctx.get("tag", "")), tags)
        problem = _unknown("type", str(ctx.get("tag", "")), guess)
        return problem, f"Use one of: {', '.join(tags)}."
    if kind == "union_tag_not_found":
        discriminator = str(ctx.get("discriminator", "type")).strip("'")
        return f"the `{discriminator}:` key is missing.", (
            "Add it, e.g. `type: round_robin` or `type: phases`."
        )
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace(" or ", ", ")
        options = [o.strip(" '") for o in expected.split(",")]
        guess = _did_you_mean(str(value), options)
        problem = f"{_show(value)} is not allowed" + _suggest(guess)
        return problem, f"Use one of: {', '.join(options)}."
    if kind in _TYPE_MISMATCH and spot.through_union:
        kinds = sorted({_KIND_WORDS[e["type"]] for e in same_place if e["type"] in _TYPE_MISMATCH})
        return f"{_show(value)} has the wrong type; expected {' or '.join(kinds)}.", schema_hint
    if kind == "value_error":
        message = str(err["msg"]).removeprefix("Value error, ")
        fix = "List each persona once." if "listed twice" in message else "Fix the value."
        return message if message.endswith(".") else message + ".", fix
    if kind == "too_short":
        least, actual = ctx.get("min_length", 1), ctx.get("actual_length", 0)
        return f"needs at least {least} item(s), but has {actual}.", "Add the missing items."
    if kind == "string_too_short":
        return "must not be empty.", "Write a value."
    if kind == "string_pattern_mismatch" and key == "name":
        return f"{_show(value)} is not a valid name.", (
            "A name may not contain ':' or a line break, and may not start with a space."
        )
    if kind in _TYPE_MISMATCH:
        return f"{_show(value)} should be {_KIND_WORDS[kind]}.", _TYPE_FIXES[kind]
    message = str(err["msg"])
    if message.startswith("Input should"):
        problem = f"{_show(value)} {message.removeprefix('Input ')}."
    else:
        problem = f"{message[:1].lower()}{message[1:]} (got {_show(value)})."
    return problem, schema_hint



# --------------------------------------------------------------------------- persona lookup


@dataclass(frozen=True)
class _Found:
    """A persona definition as written, and where it came from (for messages and ``extends``)."""

    persona: Persona
    origin: str  # "inline", "builtin" or a file path
    level: int  # index of the search place it came from; -1: outside the search places
    src: _Source
    node: yaml.Node | None  # the persona's mapping node
    prefix: str  # field path of the persona within its file ("" or "personas[2]")


@dataclass
class _Place:
    """One place personas are looked for: the scenario's inline list, or a folder of YAML files."""

    label: str
    path: Path | None = None  # a folder (resolved); None for the inline list
    builtin: bool = False
    inline: dict[str, _Found] = field(default_factory=dict)
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
                    _require_inside(self.given.parent, self.given, "persona folder")
                for file in sorted(self.path.iterdir()):
                    if file.suffix not in YAML_SUFFIXES or not file.is_file():
                        continue
                    if not self.builtin:
                        _require_inside(self.path, file, "persona file")
                    try:
                        data = _parse(_read_text(file, str(file)), str(file)).data
                    except ConfigError as exc:
                        self.broken[file] = exc
                        continue
                    name = data.get("name") if isinstance(data, dict) else None
                    if isinstance(name, str):
                        self.files_by_name.setdefault(name, []).append(file)
        return self.files_by_name

    def names(self) -> set[str]:
        return set(self.inline) if self.path is None else set(self.index())


class _Catalog:
    """Finds personas by name through the search places in order, and applies ``extends``."""

    def __init__(self, places: list[_Place]) -> None:
        self.places = places
        self._resolved: dict[tuple[int, str], Persona] = {}

    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for place in self.places:
            seen.update(dict.fromkeys(sorted(place.names())))
        return list(seen)

    def find(self, name: str, start: int = 0) -> _Found | None:
        for level in range(start, len(self.places)):
            place = self.places[level]
            if place.path is None:
                if name in place.inline:
                    return place.inline[name]
                continue
            files_ = place.index().get(name, [])
            if len(files_) > 1:
                raise _error(
                    str(files_[1]), None, "name",
                    f"persona '{name}' is also defined in {files_[0]}.",
                    "Rename or remove one of them.",
                )
            if not files_:
                # A file named after the persona that cannot be read was surely meant: say why.
                for broken, exc in place.broken.items():
                    if broken.stem.casefold() == name.casefold():
                        raise exc
                continue
            src = _parse(_read_text(files_[0], str(files_[0])), str(files_[0]))
            persona = _validate(Persona, src)
            origin = "builtin" if place.builtin else str(files_[0])
            return _Found(persona, origin, level, src, src.node, "")
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

    def resolve(self, found: _Found, chain: tuple[tuple[int, str], ...] = ()) -> Persona:
        """Apply ``extends`` (recursively): inherit every field, then the child's own fields win."""
        persona = found.persona
        key = (found.level, persona.name)
        if key in self._resolved:
            return self._resolved[key]
        if persona.extends is None:
            self._resolved[key] = persona
            return persona
        start = found.level + 1 if persona.extends == persona.name else 0
        parent = self.find(persona.extends, start)
        where = (*_prefix_loc(found.prefix), "extends")
        extends_node, _ = _node_at(found.node, ("extends",))
        if parent is None:
            raise _unknown_persona(persona.extends, found.src.label, extends_node, where, self)
        parent_key = (parent.level, parent.persona.name)
        if parent_key in (*chain, key):
            names = [name for _, name in (*chain, key)]
            cycle = names[names.index(parent.persona.name):] + [parent.persona.name]
            raise _error(
                found.src.label, extends_node, _format_path(where),
                f"extends cycle: {' -> '.join(cycle)}.",
                "Remove `extends` from one of these personas.",
            )
        merged = _merge(self.resolve(parent, (*chain, key)), persona)
        self._resolved[key] = merged
        return merged


def _prefix_loc(prefix: str) -> Loc:
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


def _unknown_persona(
    name: str, label: str, node: yaml.Node | None, loc: Loc, catalog: _Catalog, extra_fix: str = ""
) -> ConfigError:
    problem = _unknown("persona", name, _did_you_mean(name, catalog.names()))
    fix = (
        f"Looked in: {catalog.describe()}. Fix the name, or add a persona file with "
        f"`name: {name}` to one of those folders. {extra_fix}"
    )
    return _error(label, node, _format_path(loc), problem, fix.strip())


def _builtin_place() -> _Place:
    return _Place("built-in personas", builtin_dir() / "personas", builtin=True)


def _dir_places(folders: list[Path]) -> list[_Place]:
    """Folder places in order, without repeats and without the built-in folder (always last)."""
    seen = {(builtin_dir() / "personas").resolve()}
    places = []
    for folder in folders:
        resolved = folder.expanduser().resolve()
        if resolved not in seen:
            seen.add(resolved)
            places.append(_Place(str(resolved), resolved, given=folder.expanduser().absolute()))
    return places


def _scenario_places(scenario: Scenario, src: _Source, base: Path) -> list[_Place]:
    inline = _Place("inline definitions in the scenario")
    for index, entry in enumerate(scenario.personas):
        if isinstance(entry, Persona):
            node, _ = _node_at(src.node, ("personas", index))
            inline.inline[entry.name] = _Found(entry, "inline", 0, src, node, f"personas[{index}]")
    folders = [base / "personas", base.parent / "personas", Path.cwd() / "personas"]
    return [inline, *_dir_places(folders), _builtin_place()]


# ------------------------------------------------------------------ cross-field scenario checks


def _check_speakers(scenario: Scenario, src: _Source) -> None:
    """Every persona a policy or a stop rule names must be in the roster: the roster is who
    takes part. Then the policy-specific checks (modes, router graphs) in ``policy_checks``."""
    named: list[tuple[Loc, str]] = [
        (("policy", *loc), name) for loc, name in scenario.policy.persona_refs()
    ]
    named += [(("termination", *loc), name) for loc, name in consensus_refs(scenario.termination)]
    roster = scenario.roster
    for loc, speaker in named:
        if speaker in roster:
            continue
        node, _ = _node_at(src.node, loc)
        raise _error(
            src.label, node, _format_path(loc),
            _unknown("persona", speaker, _did_you_mean(speaker, roster)),
            f"A speaker must be one of the scenario's personas: {', '.join(roster)}. "
            "Use one of those names, or add it to `personas:`.",
        )
    for problem in policy_problems(scenario):
        node, _ = _node_at(src.node, problem.loc)
        raise _error(src.label, node, _format_path(problem.loc), problem.problem, problem.fix)


def _confined(base: Path, path: Path) -> tuple[Path, bool]:
    """``path`` with every symbolic link followed, and whether it still lies inside ``base``: the
    check that confines persona files to their folder, as ``roots.py`` confines documents to
    their roots (docs/threat-model.md). May raise OSError or RuntimeError (a name too long, a
    link loop)."""
    resolved = path.resolve()
    return resolved, resolved.is_relative_to(base.resolve())


def _require_inside(base: Path, path: Path, what: str) -> None:
    try:
        target, inside = _confined(base, path)
    except (OSError, RuntimeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise _error(str(path), None, "", f"the {what} cannot be read: {reason}.", "Fix the link.") from None
    if not inside:
        raise _error(
            str(path), None, "",
            f"this {what} is a link that leads outside {base.resolve()} (to {target}).",
            f"Copy the file into {base.resolve()} instead of linking to it: persona files are "
            "read only from inside their folder, as documents are from the scenario's.",
        )


def _resolve_documents(
    scenario: Scenario, src: _Source, base: Path, allowed: Sequence[Path] = ()
) -> tuple[Path, ...]:
    """Documents are named relative to the scenario's folder and must resolve inside it, inside
    the project the run starts from, or inside a folder the user allowed (``roots.py``), so a
    scenario someone else wrote cannot pull other files (``~/.ssh``, ``/etc``) into prompts and
    the database. Symbolic links are followed and must stay inside too (docs/threat-model.md)."""
    roots = document_roots(base, allowed)
    found = []
    for index, entry in enumerate(scenario.documents):
        node, _ = _node_at(src.node, ("documents", index))
        where = f"documents[{index}]"
        others = describe(roots[1:])
        inside = (
            f"Copy the file into the scenario's folder, {base}, and name it relative to it"
            + (f" (or into {others})" if others else "")
            + "; or allow its folder with --allow-dir DIR."
        )
        if "\x00" in entry:
            raise _error(src.label, node, where, "a document path cannot contain a NUL character.",
                         "Fix the path.")
        if Path(entry).is_absolute() or entry.startswith("~"):
            raise _error(
                src.label, node, where,
                f"document {_show(entry)} is not relative to the scenario's folder.", inside,
            )
        try:
            path = (base / entry).resolve()
            outside = root_of(path, roots) is None
            exists = path.exists()
        except (OSError, RuntimeError) as exc:  # too long a name, a symlink loop
            reason = getattr(exc, "strerror", None) or str(exc)
            raise _error(src.label, node, where, f"document {_show(entry)} cannot be read: {reason}.",
                         "Fix the path.") from None
        if outside:
            raise _error(
                src.label, node, where,
                f"document {_show(entry)} is outside the scenario's folder"
                + (f" and {others}" if others else "") + f" (it leads to {path}).",
                inside,
            )
        if not exists:
            siblings = list(path.parent.iterdir()) if path.parent.is_dir() else []
            guess = _similar_file(path, siblings)
            hint = f" Did you mean '{guess}'?" if guess else ""
            raise _error(
                src.label, node, where, f"document {_show(entry)} not found (looked for {path}).",
                f"Document paths are relative to the scenario's folder, {base}.{hint}",
            )
        if not path.is_file():
            raise _error(
                src.label, node, where, f"document {_show(entry)} is not a file ({path}).",
                "List each document file separately (Markdown or plain text).",
            )
        found.append(path)
    return tuple(found)
