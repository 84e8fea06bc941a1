"""Structured replies: check a reply against its JSON Schema and render it as text.

Constrained decoding (an Ollama ``format``, a llama.cpp grammar) makes a reply *look* like the
schema, but a reply cut off by ``num_predict`` is not JSON at all, and a server that ignores the
schema answers in prose. So every structured reply is parsed and validated here before it is
stored; a failure is recorded on the turn (``messages.meta["structured_error"]``), never raised.

The validator covers the JSON Schema keywords that grammar converters honour (type, properties,
required, additionalProperties, items, enum, const, min/maxItems, min/maxLength, minimum/maximum,
anyOf) — enough for output schemas, without a dependency.
"""

from __future__ import annotations

import json
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "null": (type(None),),
}


def validate(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Problems with ``value`` under ``schema``, each naming where (``$.issues[2]``)."""
    problems: list[str] = []
    expected = schema.get("type")
    if expected is not None:
        names = [expected] if isinstance(expected, str) else list(expected)
        if not any(_is_type(value, name) for name in names):
            return [f"{path}: expected {' or '.join(names)}, got {_kind(value)}"]
    if "const" in schema and value != schema["const"]:
        problems.append(f"{path}: must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
    if "anyOf" in schema and all(validate(value, s, path) for s in schema["anyOf"]):
        problems.append(f"{path}: matches none of the allowed shapes")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{path}: missing required field '{key}'")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                problems += validate(item, properties[key], f"{path}.{key}")
            elif extra is False:
                problems.append(f"{path}: unexpected field '{key}'")
            elif isinstance(extra, dict):
                problems += validate(item, extra, f"{path}.{key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            problems.append(f"{path}: needs at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(f"{path}: has more than {schema['maxItems']} items")
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                problems += validate(item, items, f"{path}[{i}]")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            problems.append(f"{path}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{path}: longer than {schema['maxLength']} characters")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{path}: below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{path}: above the maximum {schema['maximum']}")
    return problems


def _is_type(value: Any, name: str) -> bool:
    if name in ("number", "integer") and isinstance(value, bool):
        return False  # JSON true is not 1
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(name, (object,)))


def _kind(value: Any) -> str:
    order = ("boolean", "integer", "number", "string", "array", "object", "null")
    return next((name for name in order if _is_type(value, name)), "unknown")


def parse(text: str, schema: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(the reply as a JSON object, None), or (None, why it is not a valid one)."""
    try:
        data = json.loads(text, strict=False)  # grammars let raw line breaks into strings
    except RecursionError:  # "[[[[…" nested deeper than Python's stack: not a usable reply
        return None, "not valid JSON: nested too deeply"
    except ValueError as exc:
        cut = " (cut off: raise num_predict?)" if text.strip() and not text.rstrip().endswith("}") else ""
        return None, f"not valid JSON{cut}: {exc}"
    if not isinstance(data, dict):  # a schema without "type": "object" would let it through
        return None, f"expected a JSON object, got {_kind(data)}"
    problems = validate(data, schema)
    if problems:
        return None, "; ".join(problems[:5])
    return data, None


def label(key: str) -> str:
    return key.replace("_", " ").strip().capitalize()


def render(data: dict[str, Any]) -> str:
    """A structured reply as the text other personas read: one line or one list per field."""
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, list):
            lines.append(f"{label(key)}:" if value else f"{label(key)}: none")
            lines += [f"- {_inline(item)}" for item in value]
        else:
            lines.append(f"{label(key)}: {_inline(value)}")
    return "\n".join(lines)


def _inline(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value.strip()
    return json.dumps(value, ensure_ascii=False)


def schema_hint(schema: dict[str, Any]) -> str:
    """One line telling the model what the JSON holds (Ollama's docs advise saying it too). A
    field's own ``description`` says it best; otherwise its type does."""
    fields = []
    for key, sub in schema.get("properties", {}).items():
        if sub.get("description"):
            fields.append(f"{key} ({sub['description'].strip().rstrip('.')})")
            continue
        kind = sub.get("type", "value")
        if kind == "array":
            kind = f"a list of {sub.get('items', {}).get('type', 'value')}s"
        elif kind == "boolean":
            kind = "true or false"
        elif "enum" in sub:
            kind = "one of " + ", ".join(map(str, sub["enum"]))
        fields.append(f"{key} ({kind})")
    return "Reply with one JSON object only, with these fields: " + ", ".join(fields) + "."
