"""Validate parsed data with pydantic, and turn its errors into one message at the right line.

pydantic's error locations name fields and, through unions, the branch tried (``Persona`` or a
policy's ``type``). They are followed through the model's annotations and the node tree, tags
dropped, so the message names the field path as the user wrote it and points at its node; each
field pydantic found wrong gets one message (the most useful of its errors there), and the model
is built once more without the broken parts so the checks after the schema can run too.
"""

from __future__ import annotations

import copy
import types
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from personae.config.messages import Problems, config_error, did_you_mean, format_path, show_value, suggest, unknown
from personae.config.models import Loc
from personae.config.yaml_source import Source, node_at
from personae.errors import ConfigError


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


@dataclass(frozen=True)
class Checked:
    """What the schema made of a file: the model, built with the broken parts left out when
    that works (None when even that fails), every problem, and the field paths left out."""

    model: Any
    problems: list[ConfigError]
    dropped: tuple[Loc, ...] = ()


def validate(model: type[BaseModel], src: Source) -> Any:
    """The model, or every schema problem of the file at once (``Problems.raise_all``)."""
    checked = check(model, src)
    problems = Problems(src.label)
    for problem in checked.problems:
        problems.add(problem)
    problems.raise_all()
    return checked.model


def check(model: type[BaseModel], src: Source) -> Checked:
    """Validate, and on errors try again without the broken parts, so that the checks which
    follow the schema (personas, policy, documents, placeholders) can still look at the rest.

    A broken key is left out where it is written (its field then takes its default), else its
    whole top-level section is; a required field that is missing or broken leaves no model.
    """
    try:
        return Checked(model.model_validate(src.data), [])
    except ValidationError as exc:
        found = _validation_errors(model, src, exc)
    problems = [error for _, error in found]
    for deepest in (True, False):
        data = copy.deepcopy(src.data)
        dropped = tuple(cut for path, _ in found if (cut := _drop(data, path, deepest)))
        try:
            return Checked(model.model_validate(data), problems, dropped)
        except ValidationError:
            continue
    return Checked(None, problems)


def _drop(data: Any, path: Loc, deepest: bool) -> Loc | None:
    """Remove the key on ``path`` (the deepest one written, or the top-level one) from ``data``;
    the path removed, or None when no key on it is there."""
    keys: list[tuple[dict[Any, Any], int]] = []
    here = data
    for depth, part in enumerate(path):
        if isinstance(here, dict) and part in here:
            keys.append((here, depth))
            here = here[part]
        elif isinstance(here, list) and isinstance(part, int) and 0 <= part < len(here):
            here = here[part]
        else:
            break
    if not keys:
        return None
    container, depth = keys[-1] if deepest else keys[0]
    del container[path[depth]]
    return path[:depth + 1]


def _validation_errors(
    model: type[BaseModel], src: Source, exc: ValidationError
) -> list[tuple[Loc, ConfigError]]:
    """One message per field pydantic found wrong, the most useful of its errors there.

    A value that fits no branch of a union (``str | Persona``) yields one error per branch; errors
    that only say "wrong type for this branch" are left out where a real problem inside the branch
    the user meant (a mapping: the Persona) is reported, and rank last at the same field.
    """
    errors = exc.errors(include_url=False)
    spots = [_spot(model, src.node, tuple(err["loc"])) for err in errors]
    noise = {
        i for i, spot in enumerate(spots)
        if spot.through_union and errors[i]["type"] in _TYPE_MISMATCH
    }
    # A misspelt key shows up twice: as unknown ('goall') and as missing ('goal'). Report the
    # unknown one, which carries the did-you-mean, and not the missing one as another problem.
    suggested = set()
    for err, spot in zip(errors, spots):
        if err["type"] == "extra_forbidden" and spot.owner is not None:
            guess = did_you_mean(str(spot.path[-1]), list(spot.owner.model_fields))
            suggested.add((*spot.path[:-1], guess))
    skip = {i for i, err in enumerate(errors) if err["type"] == "missing" and spots[i].path in suggested}
    real = [spots[i].path for i in range(len(errors)) if i not in noise and i not in skip]
    ranked = sorted(
        range(len(errors)),
        key=lambda i: (i in noise, errors[i]["type"] != "extra_forbidden", i),
    )
    best: dict[Loc, int] = {}
    for i in ranked:
        path = spots[i].path
        if i in skip or (i in noise and any(p[:len(path)] == path for p in real)):
            continue
        best.setdefault(path, i)
    found = []
    for path, i in best.items():
        err, spot = errors[i], spots[i]
        problem, fix = _describe(err, spot, [e for e, s in zip(errors, spots) if s.path == path])
        node = spot.key_node if err["type"] == "extra_forbidden" else spot.node
        found.append((path, config_error(src.label, node, format_path(path), problem, fix.strip())))
    return found


def _describe(
    err: ErrorDetails, spot: _Spot, same_place: list[ErrorDetails]
) -> tuple[str, str]:
    """(problem, fix) for one pydantic error; ``same_place``: all errors at the same field."""
    kind = err["type"]
    value = err.get("input")
    key = spot.path[-1] if spot.path else ""
    ctx = err.get("ctx") or {}
    schema_hint = "`personae schema scenario` (or `persona`) prints every field and its type."
    if kind == "extra_forbidden":
        allowed = sorted(spot.owner.model_fields) if spot.owner else []
        guess = did_you_mean(str(key), allowed)
        problem = unknown("key", str(key), guess)
        return problem, f"Keys allowed here: {', '.join(allowed)}." if allowed else ""
    if kind == "missing":
        return f"required key '{key}' is missing.", f"Add `{key}: ...` here."
    if kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        guess = did_you_mean(str(ctx.get("tag", "")), tags)
        problem = unknown("type", str(ctx.get("tag", "")), guess)
        return problem, f"Use one of: {', '.join(tags)}."
    if kind == "union_tag_not_found":
        discriminator = str(ctx.get("discriminator", "type")).strip("'")
        return f"the `{discriminator}:` key is missing.", (
            "Add it, e.g. `type: round_robin` or `type: phases`."
        )
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace(" or ", ", ")
        options = [o.strip(" '") for o in expected.split(",")]
        guess = did_you_mean(str(value), options)
        problem = f"{show_value(value)} is not allowed" + suggest(guess)
        return problem, f"Use one of: {', '.join(options)}."
    if kind in _TYPE_MISMATCH and spot.through_union:
        kinds = sorted({_KIND_WORDS[e["type"]] for e in same_place if e["type"] in _TYPE_MISMATCH})
        return f"{show_value(value)} has the wrong type; expected {' or '.join(kinds)}.", schema_hint
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
        return f"{show_value(value)} is not a valid name.", (
            "A name may not contain ':' or a line break, and may not start with a space."
        )
    if kind in _TYPE_MISMATCH:
        return f"{show_value(value)} should be {_KIND_WORDS[kind]}.", _TYPE_FIXES[kind]
    message = str(err["msg"])
    if message.startswith("Input should"):
        problem = f"{show_value(value)} {message.removeprefix('Input ')}."
    else:
        problem = f"{message[:1].lower()}{message[1:]} (got {show_value(value)})."
    return problem, schema_hint


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
    node, key_node = node_at(root, tuple(path))
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
