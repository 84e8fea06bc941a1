"""Checking a persona's ``output_schema`` at load, so that no backend meets a schema it cannot use.

A schema is used twice: to validate replies (``jsonschema``) and to constrain decoding (llama.cpp
turns it into a grammar; Ollama does the same on its side). ``validate`` used to accept schemas the
grammar converter rejects with an ``AssertionError`` mid-run — an unanchored ``pattern``, a remote
or dangling ``$ref``, an unknown ``type`` — so both are tried here, and the loader turns the
``ValueError`` into its usual message with the file, line and column of ``output_schema``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError


def check_output_schema(schema: dict[str, Any]) -> None:
    """Raise ``ValueError`` saying what is wrong with ``schema`` and how to fix it."""
    try:
        Draft202012Validator.check_schema(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    except SchemaError as exc:
        at = "/".join(str(p) for p in exc.path)
        raise ValueError(
            f"output_schema is not a valid JSON Schema{f' at {at}' if at else ''}: {exc.message}"
        ) from None
    for ref in _refs(schema):
        if not ref.startswith("#"):
            raise ValueError(
                f"output_schema refers to {ref!r}, outside the schema; nothing is fetched. "
                "Copy that definition under `$defs:` and refer to it as '#/$defs/NAME'."
            )
        if _pointer(schema, ref[1:]) is None:
            raise ValueError(
                f"output_schema refers to {ref!r}, which is not in the schema. Define it under "
                "`$defs:` (e.g. '#/$defs/NAME'), or fix the reference."
            )
    problem = _grammar_problem(schema)
    if problem is not None:
        raise ValueError(
            f"output_schema cannot be turned into a grammar for constrained decoding: {problem}. "
            "Patterns must be anchored ('^…$'); keep to the JSON Schema types "
            "(object, array, string, number, integer, boolean, null)."
        )


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _pointer(schema: Any, pointer: str) -> Any:
    """The part of ``schema`` a JSON pointer ('/$defs/x') names, or None."""
    node = schema
    for raw in [p for p in pointer.split("/") if p]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _grammar_problem(schema: Any) -> str | None:
    """What llama.cpp's grammar conversion refuses that JSON Schema allows, or None.

    Constrained decoding reads a ``pattern`` as the whole string's shape, so it must be anchored
    (``^…$``): an unanchored one matches differently in a validator and in the grammar. (This was
    the complaint of llama-cpp-python's converter; the engine now converts on the server side, so
    the rule is checked here, the same for every backend.)"""
    if isinstance(schema, dict):
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and not (pattern.startswith("^") and pattern.endswith("$")):
            return f"the pattern {pattern!r} is not anchored"
        for value in schema.values():
            found = _grammar_problem(value)
            if found:
                return found
    elif isinstance(schema, list):
        for value in schema:
            found = _grammar_problem(value)
            if found:
                return found
    return None
