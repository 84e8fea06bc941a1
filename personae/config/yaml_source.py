"""Read a persona or scenario file and parse it into data that remembers where each value stood.

A typo in a YAML file must never become a traceback or a silently ignored setting. So every file is
parsed once into PyYAML's node tree (which keeps line and column marks) and constructed with the
SafeLoader (plain data: nothing in a file can run code). What YAML itself would let through but a
run cannot use (duplicate keys, lone surrogates, alias bombs) is refused here, pointing at the node;
``node_at`` finds the node of a field path, so later checks can point at the line too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from personae.config.messages import config_error, show_value, similar_file
from personae.config.models import Loc
from personae.errors import ConfigError
from personae.limits import MAX_FILE_BYTES


YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Source:
    """One parsed YAML file: its name for messages, its node tree (with marks) and its data."""

    label: str
    node: yaml.Node | None
    data: Any


def require_file(file: Path, as_given: Path, what: str) -> None:
    if file.is_file():
        return
    if file.is_dir():
        raise config_error(
            str(as_given), None, "", f"is a folder, not a {what} file.",
            "Pass the path of a .yaml file.",
        )
    folder = file.parent
    siblings = [p for p in folder.iterdir() if p.suffix in YAML_SUFFIXES] if folder.is_dir() else []
    guess = similar_file(file, siblings)
    fix = f"Did you mean '{guess}'?" if guess else "Check the path."
    if what == "scenario":
        fix += " `personae init` writes example scenarios into ./scenarios."
    raise config_error(str(as_given), None, "", f"{what} file not found.", fix)


def read_text(file: Path, label: str) -> str:
    """Read a file as UTF-8, pointing at the first byte that is not (line and column)."""
    try:
        with file.open("rb") as handle:  # no more than the limit, whatever the size claims
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        problem = f"the file cannot be read: {exc.strerror}."
        raise config_error(label, None, "", problem, "Check its permissions.") from None
    if len(raw) > MAX_FILE_BYTES:
        # Checked before parsing: a huge file takes minutes and gigabytes to compose.
        size = max(len(raw), _size(file))
        raise config_error(
            label, None, "",
            f"the file is {size:,} bytes, more than the {MAX_FILE_BYTES:,} a persona or "
            "scenario file may have.",
            "Move long text into `documents:` (files beside the scenario), which are read in parts.",
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, column = _line_column(raw[: exc.start].decode("latin-1"))  # one char a byte
        raise config_error(
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


def _line_column(before: str) -> tuple[int, int]:
    """Line and column (from 1, as editors count) of what follows ``before``, the text up to it."""
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


def parse_yaml(text: str, label: str) -> Source:
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
        raise config_error(
            label, None, "", "lists or mappings are nested too deeply to read.",
            "A persona or scenario file needs only a few levels of nesting.",
        ) from None
    except yaml.reader.ReaderError as exc:
        line, column = _line_column(text[: exc.position])
        raise config_error(
            label, None, "",
            f"the file contains a character YAML does not allow (#x{exc.character:04x}).",
            "Remove it, or write it as an escape inside a double-quoted string.",
            line=line, column=column,
        ) from None
    return Source(label, node, data)


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
    return config_error(label, None, "", f"YAML syntax error: {problem}.", fix, line=line, column=column)


def _children(node: yaml.Node) -> list[yaml.Node]:
    """A collection's nodes in document order (a mapping's keys and values in turn)."""
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _each_node(root: yaml.Node) -> Iterator[yaml.Node]:
    """Every node once, even one an alias reaches twice (so a self-containing alias ends)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(_children(node))


def _reject_duplicate_keys(root: yaml.Node, label: str) -> None:
    """SafeLoader keeps the last of two equal keys silently; a duplicate is almost always a slip."""
    for node in _each_node(root):
        if not isinstance(node, yaml.MappingNode):
            continue
        first: dict[str, yaml.Node] = {}
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if key.value in first:
                    line = first[key.value].start_mark.line + 1
                    problem = f"key '{key.value}' appears twice (first on line {line})."
                    raise config_error(label, key, "", problem, "Keep one of them.")
                first[key.value] = key


_SURROGATE = re.compile("[\ud800-\udfff]")


def _reject_surrogates(root: yaml.Node, label: str) -> None:
    """A double-quoted ``"\\udcff"`` is a lone surrogate: no character, not storable as UTF-8
    (the run's first commit would fail on it). Point at it while the file is still at hand."""
    for node in _each_node(root):
        if not isinstance(node, yaml.ScalarNode):
            continue
        bad = _SURROGATE.search(node.value)
        if bad:
            raise config_error(
                label, node, "", f"the text holds the escape \\u{ord(bad.group()):04x}, a lone "
                "surrogate, which is not a character.",
                "Remove it, or write the character itself (or its \\U00XXXXXX escape).",
            )


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
        children = _children(node)
        if children_done:
            open_.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_EXPANDED_NODES:
                if sizes[id(node)] <= len(sizes):  # as many distinct nodes: no alias made it big
                    raise config_error(
                        label, node, "", f"this value holds more than {MAX_EXPANDED_NODES:,} "
                        "items, far more than any persona or scenario needs.",
                        "Check that this is the file you meant; keep large data in documents.",
                    )
                raise config_error(
                    label, node, "", "aliases (*name) expand this value to more than "
                    f"{MAX_EXPANDED_NODES:,} items.", "Write the data out instead of aliasing it.",
                )
            continue
        if id(node) in open_:
            raise _alias_loop(label, node)
        open_.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in open_:
                raise _alias_loop(label, child)
            if id(child) not in sizes:
                stack.append((child, False))


def _alias_loop(label: str, node: yaml.Node) -> ConfigError:
    return config_error(
        label, node, "", "an alias refers to the value that contains it.",
        "Remove the alias (*name) or point it at another anchor.",
    )


def require_mapping(src: Source, what: str) -> None:
    example = {
        "scenario": "name, goal and personas",
        "persona": "name and system",
    }.get(what, "name, goal and personas (a scenario) or name and system (a persona)")
    if src.data is None:
        fix = f"A {what} file is a mapping with keys such as {example}."
        raise config_error(src.label, None, "", "the file is empty.", fix)
    if not isinstance(src.data, dict):
        kind = "a list" if isinstance(src.data, list) else f"a single value ({show_value(src.data)})"
        raise config_error(
            src.label, src.node, "", f"the file must be a mapping of keys, but it is {kind}.",
            f"A {what} file has `key: value` lines at the top level, such as {example}.",
        )


def node_at(root: yaml.Node | None, loc: Loc) -> tuple[yaml.Node | None, yaml.Node | None]:
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
