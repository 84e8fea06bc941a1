"""Continuing a stored run: rebuilding its scenario and settings from the database, and deciding
whether it may be continued at all.

Nothing here is pickled: the scenario is the YAML stored in ``runs.scenario_yaml``, the personas
are the definitions frozen in ``run_personas`` when the run started (so editing a persona file
later does not change a run being resumed), and the settings are the run row's. Everything else —
who speaks next, the phase, the stop-rule counters, collapse and memory — is derived from the
committed transcript and tables by the run loop itself.

A run is resumable when it is ``interrupted`` or ``failed``, or ``running`` while the process that
ran it is gone (killed, crashed, machine rebooted). "Gone" is judged from ``runs.pid`` on this
machine (``personae.liveness``). A run that is ``completed`` or alive is refused.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from personae.config.loader import LoadedScenario, load_scenario, load_scenario_text
from personae.config.models import GuardConfig, Persona, Scenario
from personae.config.overrides import apply_options, typed_options
from personae.config.substitution import fill_scenario, settle_values
from personae.errors import ConfigError, UserError
from personae.liveness import process_alive
from personae.llm.base import Backend
from personae.memory.documents import stored_document_paths
from personae.orchestrator.run import settings_for
from personae.orchestrator.state import RunSettings
from personae.store.models import Run
from personae.store.repo import Store
from personae.words import count


def reload_scenario(store: Store, run: Run, *, scenario_file: Path | None = None) -> LoadedScenario:
    """The scenario of ``run`` with the personas it used.

    With ``scenario_file``, that file and the persona files it finds are loaded as they are now
    instead (replay uses this to show where an edit would change a run).
    """
    if scenario_file is not None:
        return as_it_ran(run, load_scenario(scenario_file, **given_values(run)))
    return as_it_ran(run, _stored_scenario(store, run))


# The first version with a reply guard. A run started before it had none, and a scenario without
# a `guard:` key must not gain one when it is resumed or replayed: its prompts would change.
GUARD_SINCE = (0, 2, 0)
# The first version whose collapse check measures a turn's prompt with its schema hint.
MEASURE_PREPARED_SINCE = (0, 2, 1)
# The first version whose reply guard calls placeholder-filled structured replies copies and
# whose cut replies are trimmed at their last complete sentence. Version 0.3.0,
# the release that brought them.
REPLY_RULES_SINCE = (0, 3, 0)
SELF_COPIES_SINCE = (0, 3, 1)  # the guard counts a reply's repeats of itself as copied


def as_it_ran(run: Run, loaded: LoadedScenario) -> LoadedScenario:
    """The scenario with the defaults of the version that started ``run``."""
    if _version(run.personae_version) >= GUARD_SINCE:
        return loaded
    if "guard" in (yaml.safe_load(loaded.source_yaml) or {}):
        return loaded
    scenario = loaded.scenario.model_copy(update={"guard": GuardConfig(enabled=False)})
    return replace(loaded, scenario=scenario)


def _version(text: str | None) -> tuple[int, ...]:
    parts = []
    for piece in (text or "0").split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def given_values(run: Run) -> dict[str, Any]:
    """The variables and option overrides a run was started with, as the loader takes them."""
    return {"variables": run.variables or None, "options": run.options or None}


def _stored_scenario(store: Store, run: Run) -> LoadedScenario:
    frozen = {
        p.name: Persona.model_validate(p.definition) for p in store.run_personas(run.id)
    }
    sources = {p.name: p.source for p in store.run_personas(run.id)}
    label = Path(run.scenario_path) if run.scenario_path else Path(f"<scenario of run {run.id}>")
    # Documents were imported at the start; only a run cut off before that needs the files, and
    # then only from the scenario's own folder — never from the current directory.
    folder = label.parent if run.scenario_path and label.is_absolute() and label.parent.is_dir() else None
    if folder is None:
        return _without_folder(store, run, label, frozen, sources)
    try:
        loaded = load_scenario_text(
            run.scenario_yaml, path=label, base_dir=folder, **given_values(run)
        )
    except ConfigError as exc:
        # The persona files or documents may have moved since; the frozen definitions and the
        # imported documents are all a run needs.
        if not frozen:
            raise
        # The loader reports every problem at once: only documents missing is the case for
        # the database's copies; anything else (a persona file gone) is the frozen personas'.
        problems = getattr(exc, "problems", None) or (exc,)
        fields = [str(getattr(p, "field", "") or "") for p in problems]
        if all(field.startswith("documents") for field in fields):
            return _without_folder(store, run, label, frozen, sources, cause=exc)
        return _from_frozen(run, label, frozen, sources, exc)
    personas = {name: frozen.get(name, persona) for name, persona in loaded.personas.items()}
    return replace(loaded, personas=personas, path=label if run.scenario_path else None)


def _without_folder(
    store: Store,
    run: Run,
    label: Path,
    frozen: dict[str, Persona],
    sources: dict[str, str],
    cause: ConfigError | None = None,
) -> LoadedScenario:
    """The run rebuilt from the database alone, when its documents cannot be read where they
    were; refused if the run never imported them."""
    listed = set(_listed_documents(run))
    if listed and len(stored_document_paths(store, run.id)) < len(listed):
        where = f"the scenario's folder {label.parent} is gone or moved" if run.scenario_path else (
            "the run has no scenario folder to read them from"
        )
        raise UserError(
            f"Run {run.id} stopped before its documents were imported, and {where}. "
            "Put the scenario back where it was (with its documents), or start a new run: "
            f"personae run SCENARIO. The documents are never read from the current directory."
        )
    error = cause or ConfigError(f"the scenario of run {run.id} has no folder to resolve files in")
    # The very files the run imported, where they still are (replay re-imports them into its
    # scratch run); never a file of the same name somewhere else.
    paths = [str((n.data or {}).get("path")) for n in store.memory_nodes(run.id, ["document"])]
    imported = tuple(dict.fromkeys(Path(p) for p in paths if Path(p).is_file()))  # import order
    return replace(_from_frozen(run, label, frozen, sources, error), documents=imported)


def _listed_documents(run: Run) -> list[str]:
    try:
        data = yaml.safe_load(run.scenario_yaml)
    except yaml.YAMLError:
        return []
    docs = data.get("documents") if isinstance(data, dict) else None
    return [str(d) for d in docs] if isinstance(docs, list) else []


def _from_frozen(
    run: Run,
    label: Path,
    frozen: dict[str, Persona],
    sources: dict[str, str],
    cause: ConfigError,
) -> LoadedScenario:
    try:
        scenario = Scenario.model_validate(yaml.safe_load(run.scenario_yaml))
        values = settle_values(scenario, None, run.variables)
        scenario = fill_scenario(scenario, None, values)
        overrides = typed_options(run.options)
    except Exception:  # noqa: BLE001 - the loader's own message says more
        raise cause from None
    missing = [name for name in scenario.roster if name not in frozen]
    if missing:
        raise cause
    ordered = {name: frozen[name] for name in scenario.roster}
    ordered |= {name: p for name, p in frozen.items() if name not in ordered}
    # The frozen personas were stored filled in and with the overrides on; the scenario was not.
    scenario, _ = apply_options(scenario, {}, overrides)
    return LoadedScenario(
        scenario=scenario,
        personas=ordered,
        path=label if run.scenario_path else None,
        source_yaml=run.scenario_yaml,
        documents=(),
        persona_sources=sources,
        variables=values,
        options=overrides,
    )


def run_settings(run: Run, loaded: LoadedScenario, backend: Backend, **overrides: Any) -> RunSettings:
    """The settings the run started with (its row), with any explicit overrides on top."""
    values: dict[str, Any] = {
        "layout": run.layout,
        "max_turns": run.max_turns,
        "num_ctx": run.num_ctx,
        "seed": run.seed,
        "measure_prepared": _version(run.personae_version) >= MEASURE_PREPARED_SINCE,
        "check_placeholders": _version(run.personae_version) >= REPLY_RULES_SINCE,
        "trim_cut_replies": _version(run.personae_version) >= REPLY_RULES_SINCE,
        "check_self_copies": _version(run.personae_version) >= SELF_COPIES_SINCE,
    }
    values |= {k: v for k, v in overrides.items() if v is not None}
    return settings_for(loaded, backend, **values)


# -------------------------------------------------------------------------- may it be resumed?


def check_resumable(run: Run, *, force: bool = False, turns: int | None = None) -> str | None:
    """Raise ``UserError`` (exit 2) if ``run`` must not be continued; else a note for the user
    when the run was left ``running`` by a process that is gone (None otherwise). ``turns``: its
    persona turns (``run.turns`` counts User's messages too), for the fork hint's --max-turns."""
    taken = run.turns if turns is None else turns
    resume_hint = f"personae replay {run.id} --fork-at {run.turns}"
    if run.status == "completed":
        user = run.turns - taken
        length = count(taken, "turn") + (f" and {count(user, 'User message')}" if user else "")
        raise UserError(
            f"Run {run.id} already completed ({run.stop_reason or 'done'}, {length}); "
            f"there is nothing to resume. To continue it with more turns, fork it after its "
            f"last message: {resume_hint} --max-turns {taken + max(taken, 4)}"
        )
    if run.status != "running":
        return None
    if force:
        return f"Run {run.id} is marked running (process {run.pid}); --force resumes it anyway."
    since = run.heartbeat_at or run.started_at
    if process_alive(run.pid, since):
        age = _age(since)
        raise UserError(
            f"Run {run.id} is still running in process {run.pid} on this machine (last heartbeat "
            f"{age} ago). Resuming it now would write the same turns twice. Stop it first "
            f"(Ctrl-C in its terminal, or kill {run.pid}), or wait for it; if that process is "
            "not Personae, pass --force."
        )
    return (
        f"Run {run.id} was left running by process {run.pid}, which is gone (killed or crashed); "
        f"continuing after message {run.turns}."
    )


def _age(since: datetime | None) -> str:
    if since is None:
        return "unknown time"
    seconds = max(0, int(time.time() - since.replace(tzinfo=UTC).timestamp()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def backend_for_run(run: Run, backend: str | None, model: str | None) -> tuple[str, str | None]:
    """The backend kind and model to continue ``run`` with: the run's own unless overridden."""
    kind = backend or run.backend
    if kind not in {"ollama", "embedded", "openai"}:
        raise UserError(
            f"Run {run.id} was made with the '{run.backend}' backend, which cannot be reopened. "
            "Choose one with --backend (ollama, embedded or openai)."
        )
    chosen = model if model else (run.model if kind == run.backend else None)
    return kind, chosen
