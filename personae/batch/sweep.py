"""The sweep file: which scenarios, which axes to vary, which endpoints run them.

```yaml
name: layouts-vs-seeds
scenarios: [../scenarios/cache-review.yaml, pricing-change]   # paths from this file, or names
vary: {layout: [named, classic], seed: [1, 2]}
max_turns: 3
endpoints: [{backend: embedded, concurrency: 2}]
```

Read with the scenario loader's own pieces (``yaml_source``, ``validation``), so a bad sweep gets
the same one paragraph with file, line, column, field and fix. Expansion into variants is a plain
function of the validated model (``expand``): the cartesian product of the axes, scenario first,
each variant with a key that names it the same way every time the same file is expanded.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from personae.config.catalog import SUFFIXES, find_scenario
from personae.config.messages import config_error, format_path
from personae.config.validation import validate
from personae.config.yaml_source import node_at, parse_yaml, read_text, require_file
from personae.config.overrides import typed_options
from personae.errors import ConfigError, UserError
from personae.limits import MAX_TURNS, SEED_MAX

Scalar = str | int | float | bool  # a variable's value as YAML gives it; used as text
LayoutName = Literal["named", "transcript", "cache_friendly", "classic"]
BackendKind = Literal["auto", "embedded", "ollama", "openai"]
MAX_VARIANTS = 10_000  # a typo such as seed: [1, ..., 100000] should be an error, not a week


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Endpoint(_Strict):
    """A model server and how many runs it takes at once. ``model`` fixes the model it serves
    (then only variants of that model, or of none, go to it); ``url`` is an OpenAI-compatible
    server's base URL."""

    backend: BackendKind = Field("auto", description="auto | embedded | ollama | openai")
    concurrency: int = Field(1, ge=1, le=64, description="runs at once on this endpoint")
    model: str | None = Field(None, description="model it serves (default: the variant's)")
    url: str | None = Field(None, description="base URL, for backend openai")

    def serves(self, model: str | None) -> bool:
        return self.model is None or model is None or model == self.model


class Vary(_Strict):
    """The axes; every combination of their values is one variant (per scenario)."""

    layout: list[LayoutName] | None = Field(None, min_length=1)
    seed: list[Annotated[int, Field(ge=0, le=SEED_MAX)]] | None = Field(None, min_length=1)
    model: list[Annotated[str, Field(min_length=1)]] | None = Field(None, min_length=1)
    max_turns: list[Annotated[int, Field(ge=1, le=MAX_TURNS)]] | None = Field(None, min_length=1)
    personas: list[dict[str, str]] | None = Field(
        None, min_length=1,
        description="roster substitutions, e.g. [{}, {Critic: Skeptic}]: {} runs the scenario as written",
    )
    vars: dict[str, Annotated[list[Scalar], Field(min_length=1)]] | None = Field(
        None, description="values of the scenarios' `vars:`, one axis per variable"
    )
    options: dict[str, Annotated[list[Any], Field(min_length=1)]] | None = Field(
        None, description="persona option overrides (as `personae run -o`), one axis per option"
    )

    def axes(self) -> list[tuple[str, list[Any]]]:
        """The axes given, in the order this class declares them (so keys are stable); each
        variable is an axis ``var.NAME``, each option ``opt.KEY``."""
        found: list[tuple[str, list[Any]]] = []
        for name, values in self:
            if values is None:
                continue
            if name in ("vars", "options"):
                prefix = "var" if name == "vars" else "opt"
                found += [(f"{prefix}.{key}", list(v)) for key, v in values.items()]
            else:
                found.append((name, list(values)))
        return found


class Sweep(_Strict):
    name: str = Field(min_length=1, description="the sweep's name, shown in `personae batches`")
    scenarios: list[str] = Field(min_length=1, description="scenario files (from this file's folder) or names")
    vary: Vary = Vary()
    max_turns: int | None = Field(None, ge=1, le=MAX_TURNS, description="every run's turn limit")
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="seed when `vary` has none")
    endpoints: list[Endpoint] = Field(default_factory=lambda: [Endpoint()], min_length=1)
    vars: dict[str, Scalar] = Field(default_factory=dict, description="variables every run gets")
    options: dict[str, Any] = Field(default_factory=dict, description="option overrides every run gets")


@dataclass(frozen=True)
class Variant:
    """One run to make: a scenario file and one value of every axis."""

    key: str
    position: int
    scenario: str  # as the sweep names it (the key uses this)
    path: str  # the file, resolved
    layout: str | None = None
    seed: int | None = None
    model: str | None = None
    max_turns: int | None = None
    variables: dict[str, str] | None = None  # the scenario's `vars:` values
    options: dict[str, Any] | None = None  # option overrides, as `-o`
    personas: dict[str, str] | None = None  # roster substitutions: persona → the one in its place

    def settings(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "path": self.path, "layout": self.layout,
            "seed": self.seed, "model": self.model, "max_turns": self.max_turns,
            "variables": self.variables, "options": self.options, "personas": self.personas,
        }

    @classmethod
    def from_settings(cls, key: str, position: int, settings: dict[str, Any]) -> Variant:
        return cls(key=key, position=position, **settings)


@dataclass(frozen=True)
class LoadedSweep:
    sweep: Sweep
    path: Path | None
    text: str
    base_dir: Path
    scenario_paths: dict[str, Path] = field(default_factory=dict)


def load_sweep(path: Path) -> LoadedSweep:
    file = path.expanduser()
    require_file(file, path, "sweep")
    loaded = load_sweep_text(read_text(file, str(path)), label=str(path), base_dir=file.resolve().parent)
    return LoadedSweep(loaded.sweep, file.resolve(), loaded.text, loaded.base_dir, loaded.scenario_paths)


def load_sweep_text(text: str, *, label: str, base_dir: Path) -> LoadedSweep:
    """Validate a sweep and find its scenario files (each is checked by the scenario loader when
    its first run starts; here only that it exists)."""
    src = parse_yaml(text, label)
    if not isinstance(src.data, dict):
        raise config_error(
            label, src.node, "", "a sweep file must be a mapping of keys.",
            "Write name, scenarios, vary, max_turns and endpoints as `key: value` lines "
            "(see sweeps/layouts-vs-seeds.yaml).",
        )
    sweep = validate(Sweep, src)
    paths: dict[str, Path] = {}
    for index, ref in enumerate(sweep.scenarios):
        found = _scenario_file(ref, base_dir)
        if found is None:
            node, _ = node_at(src.node, ("scenarios", index))
            raise config_error(
                label, node, f"scenarios[{index}]", f"no scenario file or name {ref!r}.",
                f"Give a path relative to the sweep file's folder ({base_dir}), or the name of a "
                "scenario that `personae scenarios` lists.",
            )
        paths[ref] = found
    count = len(sweep.scenarios)
    for _, values in sweep.vary.axes():
        count *= len(values)
    if count > MAX_VARIANTS:
        node, _ = node_at(src.node, ("vary",))
        raise config_error(
            label, node, "vary", f"the axes make {count} variants, more than {MAX_VARIANTS}.",
            "Give fewer values, or split the sweep into several files.",
        )
    _check_endpoints(sweep, src, label)
    _check_options(sweep, src, label)
    return LoadedSweep(sweep, None, text, base_dir, paths)


def _scenario_file(ref: str, base_dir: Path) -> Path | None:
    candidate = (base_dir / ref).expanduser()
    if candidate.is_file():
        return candidate.resolve()
    if Path(ref).suffix in SUFFIXES or len(Path(ref).parts) != 1:
        return None
    try:  # a name: the sweep folder's ./scenarios, then the built-ins
        named = find_scenario(Path(ref), base_dir / "scenarios")
    except UserError:
        return None
    return named.resolve() if named.is_file() else None


def _check_endpoints(sweep: Sweep, src: Any, label: str) -> None:
    """Every model the sweep varies over must have an endpoint that serves it."""
    for index, model in enumerate(sweep.vary.model or []):
        if not any(e.serves(model) for e in sweep.endpoints):
            node, _ = node_at(src.node, ("vary", "model", index))
            served = ", ".join(sorted({e.model for e in sweep.endpoints if e.model}))
            raise config_error(
                label, node, f"vary.model[{index}]",
                f"no endpoint serves model {model!r} (the endpoints serve {served}).",
                "Add an endpoint for it, or one without `model:` (it serves any).",
            )


def _check_options(sweep: Sweep, src: Any, label: str) -> None:
    """Every option value is one ``personae run -o`` would take, said at its line."""
    given: list[tuple[tuple[str | int, ...], str, Any]] = [
        (("options", key), key, value) for key, value in sweep.options.items()
    ]
    for key, values in (sweep.vary.options or {}).items():
        given += [(("vary", "options", key, i), key, value) for i, value in enumerate(values)]
    for loc, key, value in given:
        try:
            typed_options({key: value})
        except ConfigError as exc:
            node, _ = node_at(src.node, loc)
            where = format_path(loc)
            raise config_error(label, node, where, str(exc).removeprefix(f"-o {key}").lstrip(": ")) from None


def _text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def expand(loaded: LoadedSweep) -> list[Variant]:
    """Every variant of the sweep: scenarios × each axis, in the order the file gives them."""
    sweep = loaded.sweep
    axes = sweep.vary.axes()
    variants: list[Variant] = []
    combos = list(itertools.product(*(values for _, values in axes)))
    for ref in sweep.scenarios:
        for combo in combos:
            chosen = dict(zip((name for name, _ in axes), combo, strict=True))
            key = "|".join([ref, *(f"{name}={_label(value)}" for name, value in chosen.items())])
            variants.append(
                Variant(
                    key=key, position=len(variants), scenario=ref,
                    path=str(loaded.scenario_paths[ref]),
                    layout=chosen.get("layout"),
                    seed=chosen.get("seed", sweep.seed),
                    model=chosen.get("model"),
                    max_turns=chosen.get("max_turns", sweep.max_turns),
                    variables=_values(sweep.vars, chosen, "var.", _text) or None,
                    options=_values(sweep.options, chosen, "opt.", lambda v: v) or None,
                    personas=chosen.get("personas") or None,
                )
            )
    return variants


def _label(value: Any) -> str:
    """An axis value in a variant's key; a substitution reads ``Critic:Skeptic``, none ``-``."""
    if isinstance(value, dict):
        return ",".join(f"{old}:{new}" for old, new in value.items()) or "-"
    return str(value)


def _values(fixed: dict[str, Any], chosen: dict[str, Any], prefix: str, as_value: Any) -> dict[str, Any]:
    """The sweep's fixed values with this variant's axis values on top."""
    values = {key: as_value(value) for key, value in fixed.items()}
    values |= {name.removeprefix(prefix): as_value(v) for name, v in chosen.items() if name.startswith(prefix)}
    return values
