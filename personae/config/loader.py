"""Load persona and scenario YAML into validated models, with errors a person can act on.

The top-level load functions; each composes the steps the other modules do, in this order:
``yaml_source`` reads and parses a file (keeping line and column marks), ``validation`` builds
the pydantic model and maps its errors back to those marks, ``persona_lookup`` finds the personas
a scenario names and applies ``extends``, ``policy_checks`` makes the cross-field checks, and
``confinement`` resolves the documents. Every error is one ``ConfigError`` from ``messages``
naming the file, line and column, the field path, the bad value and a fix, in one paragraph.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from personae.config.confinement import require_inside, resolve_documents
from personae.config.messages import Problems, config_error, did_you_mean, format_path
from personae.config.models import Loc, Persona, Scenario
from personae.config.overrides import apply_options, typed_options
from personae.config.persona_lookup import (
    FoundPersona,
    PersonaCatalog,
    prefix_loc,
    builtin_place,
    dir_places,
    scenario_places,
    unknown_persona,
)
from personae.config.policy_checks import scenario_problems
from personae.config.substitution import (
    Spot,
    fill_persona,
    fill_scenario,
    settle_values,
    uses_variables,
)
from personae.config.validation import check, validate
from personae.errors import ConfigError
from personae.config.yaml_source import Source, node_at, parse_yaml, read_text, require_file, require_mapping


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
    # The value of every variable the scenario declares (`vars:`), as filled in; empty without.
    variables: dict[str, str] = field(default_factory=dict)
    # The run's option overrides (`-o KEY VALUE`), typed; already applied to scenario and personas.
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def roster(self) -> list[str]:
        return self.scenario.roster


def load_scenario(
    path: str | Path,
    *,
    variables: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
    allowed_dirs: Sequence[Path] = (),
    require_values: bool = True,
) -> LoadedScenario:
    """Read, validate and resolve a scenario file; documents resolve relative to its folder
    (and may lie in the project or in ``allowed_dirs``: ``roots.py``).

    ``variables`` gives values to the scenario's ``vars:`` (text, never expanded again);
    ``options`` overrides every persona's options (``-o``), typed as ``llm -o`` does. A variable
    without a default and without a value is an error, unless ``require_values`` is False (to
    check or list a file): then its ``{name}`` stays in the texts."""
    file = Path(path).expanduser()
    require_file(file, Path(path), "scenario")
    loaded = load_scenario_text(
        read_text(file, str(path)), path=Path(path), base_dir=file.parent,
        variables=variables, options=options, allowed_dirs=allowed_dirs,
        require_values=require_values,
    )
    # Messages name the file as the user typed it; the record keeps where it really is.
    return replace(loaded, path=file.resolve())


def load_scenario_text(
    text: str, *, path: Path | None = None, base_dir: Path | None = None,
    variables: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
    allowed_dirs: Sequence[Path] = (),
    require_values: bool = True,
) -> LoadedScenario:
    """Validate and resolve a scenario given as YAML text (resume and replay reload stored YAML).

    ``path`` only names the file in messages; ``base_dir`` is where documents and ``personas/`` are
    looked for (default: the folder of ``path``, else the current folder). ``variables`` and
    ``options`` as for :func:`load_scenario`; ``source_yaml`` stays the text as written.
    """
    overrides = typed_options(options)  # a bad -o flag is a usage error of its own
    src = parse_yaml(text, str(path) if path is not None else "<scenario>")
    require_mapping(src, "scenario")
    # Every problem is reported at once: each check below runs when what it needs was built,
    # even if an earlier one failed (a YAML syntax error or a missing `goal:` stops everything).
    problems = Problems(src.label)
    checked = check(Scenario, src)
    for problem in checked.problems:
        problems.add(problem)
    if checked.model is None:
        problems.raise_all()
    scenario: Scenario = checked.model
    after_schema = len(problems.found)
    values = problems.attempt(
        lambda: settle_values(scenario, src, variables, require=require_values)
    ) or settle_values(scenario, src, None, require=False)
    if base_dir is None:
        base_dir = Path(path).expanduser().parent if path is not None else Path.cwd()
    base = base_dir.expanduser().resolve()

    catalog = PersonaCatalog(scenario_places(scenario, src, base))
    personas: dict[str, Persona] = {}
    origins: dict[str, str] = {}
    found_by_name: dict[str, FoundPersona] = {}
    needed: list[tuple[Loc, str, str]] = [
        (("personas", i), name, "") for i, name in enumerate(scenario.roster)
    ]
    collapse = scenario.memory.collapse
    if collapse is not None and collapse.summarizer not in scenario.roster:
        needed.append((
            ("memory", "collapse", "summarizer"), collapse.summarizer,
            "Or set `collapse: null` under `memory:` to turn collapse off.",
        ))
    for loc, name, extra_fix in needed:
        found = problems.attempt(lambda: _find(catalog, src, loc, name, extra_fix))
        if found is None:
            continue
        resolved = problems.attempt(lambda: catalog.resolve(found))
        if resolved is not None:
            personas[name], origins[name], found_by_name[name] = resolved, found.origin, found

    for cross in scenario_problems(scenario):
        node, _ = node_at(src.node, cross.loc)
        problems.add(config_error(src.label, node, format_path(cross.loc), cross.problem, cross.fix))
    documents = problems.attempt(lambda: resolve_documents(scenario, src, base, allowed_dirs)) or ()
    if uses_variables(scenario):
        scenario = problems.attempt(lambda: fill_scenario(scenario, src, values)) or scenario
        for name, persona in personas.items():
            spot = _field_spot(catalog, found_by_name[name])
            personas[name] = problems.attempt(lambda: fill_persona(persona, values, spot)) or persona
    # What a later check says about a field the schema rejected (and so left at its default)
    # is about a value the user did not write: the schema's message is the one that helps.
    problems.found[after_schema:] = [
        e for e in problems.found[after_schema:] if not _under(e, checked.dropped)
    ]
    problems.raise_all()
    scenario, personas = apply_options(scenario, personas, overrides)
    return LoadedScenario(
        scenario=scenario,
        personas=personas,
        path=path,
        source_yaml=text,
        documents=documents,
        persona_sources=origins,
        variables=values,
        options=overrides,
    )


def _find(catalog: PersonaCatalog, src: Source, loc: Loc, name: str, extra_fix: str) -> FoundPersona:
    """The persona a scenario names at ``loc``, or the error saying where it was looked for."""
    found = catalog.find(name)
    if found is None:
        node, _ = node_at(src.node, loc)
        raise unknown_persona(name, src.label, node, loc, catalog, extra_fix)
    return found


def _under(error: ConfigError, dropped: tuple[Loc, ...]) -> bool:
    field = str(getattr(error, "field", "") or "")
    for loc in dropped:
        path = format_path(loc)
        if field == path or field.startswith((path + ".", path + "[")):
            return True
    return False


def _field_spot(catalog: PersonaCatalog, found: FoundPersona) -> Callable[[str], Spot]:
    """Where a persona's field was written: its own definition, or the one it inherits it from
    through ``extends`` (for the message about a placeholder in it)."""

    def where(field: str) -> Spot:
        here = found
        while field not in here.persona.model_fields_set and here.persona.extends:
            start = here.level + 1 if here.persona.extends == here.persona.name else 0
            parent = catalog.find(here.persona.extends, start)
            if parent is None:
                break
            here = parent
        node, _ = node_at(here.node, (field,))
        return Spot(here.src.label, node, (*prefix_loc(here.prefix), field))

    return where


def load_persona_file(path: str | Path, *, folder: Path | None = None) -> Persona:
    """Read and validate one persona file as written (``extends`` is not applied). Found by
    listing ``folder``, it must lie inside it (no link leading elsewhere)."""
    file = Path(path).expanduser()
    require_file(file, Path(path), "persona")
    if folder is not None:
        require_inside(folder, file, "persona file")
    src = parse_yaml(read_text(file, str(path)), str(path))
    require_mapping(src, "persona")
    return validate(Persona, src)


def builtin_personas() -> dict[str, Persona]:
    """The personas shipped with Personae, resolved, keyed by name."""
    catalog = PersonaCatalog([builtin_place()])
    found = (catalog.find(name) for name in catalog.names())
    return {f.persona.name: catalog.resolve(f) for f in found if f is not None}


def validate_file(path: str | Path, *, allowed_dirs: Sequence[Path] = ()) -> str:
    """Fully check a persona or scenario file and say in a few words what it is.

    A scenario is recognised by its ``goal:`` or ``personas:`` key; anything else shaped like a
    persona is checked as one, including its ``extends`` chain.
    """
    file = Path(path).expanduser()
    require_file(file, Path(path), "YAML")
    text = read_text(file, str(path))
    src = parse_yaml(text, str(path))
    require_mapping(src, "persona or scenario")
    kind = _guess_kind(src)
    if kind == "scenario":
        loaded = load_scenario_text(
            text, path=Path(path), base_dir=file.parent, allowed_dirs=allowed_dirs,
            require_values=False,
        )
        text = f"scenario '{loaded.scenario.name}': {_count(len(loaded.roster), 'persona')}"
        if loaded.documents:
            text += f", {_count(len(loaded.documents), 'document')}"
        required = [name for name, default in loaded.scenario.vars.items() if default is None]
        if loaded.scenario.vars:
            text += f", {_count(len(loaded.scenario.vars), 'variable')}"
        if required:
            text += f" ({', '.join(required)} given with --var when run)"
        return text
    problems = Problems(src.label)
    checked = check(Persona, src)
    for problem in checked.problems:
        problems.add(problem)
    persona: Persona | None = checked.model
    if persona is not None and persona.extends is not None:
        folder = file.resolve().parent
        places = dir_places([folder, Path.cwd() / "personas"])
        level = 0 if places and places[0].path == folder else -1
        catalog = PersonaCatalog([*places, builtin_place()])
        found = FoundPersona(persona, str(file), level, src, src.node, "")
        problems.attempt(lambda: catalog.resolve(found))
    problems.raise_all()
    assert persona is not None
    if persona.extends is None:
        return f"persona '{persona.name}'"
    return f"persona '{persona.name}' (extends '{persona.extends}')"


def _guess_kind(src: Source) -> str:
    """Scenario or persona? By the keys only one of them has, forgiving a misspelt key."""
    keys = {str(k) for k in src.data}
    if keys & {"goal", "personas"}:
        return "scenario"
    scenario_only = set(Scenario.model_fields) - set(Persona.model_fields)
    persona_only = set(Persona.model_fields) - set(Scenario.model_fields)
    scenario_score = sum(k in scenario_only or did_you_mean(k, scenario_only) is not None for k in keys)
    persona_score = sum(k in persona_only or did_you_mean(k, persona_only) is not None for k in keys)
    if scenario_score > persona_score:
        return "scenario"
    if persona_score or "name" in keys:
        return "persona"
    raise config_error(
        src.label, src.node, "",
        "the file is neither a persona nor a scenario.",
        "A persona has name and system; a scenario has name, goal and personas.",
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
