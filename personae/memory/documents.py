"""Importing a scenario's documents into the memory graph: document → section → chunk.

Markdown is split along its headings (ATX ``#`` headings; ``#`` inside fenced code is text), each
section's text into chunks of a few paragraphs, so retrieval can hand a persona the one passage
that matters instead of the whole file. Plain text has no headings: its chunks hang off the
document. Every node is indexed in ``memory_fts``; ``part_of`` edges keep the tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personae.errors import UserError
from personae.store.graph_rows import EdgeSpec, GraphEdit, NodeSpec
from personae.store.repo import Store

CHUNK_CHARS = 900  # about 200 tokens: small enough to place a few in a 2k window
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
PATH_SEPARATOR = " › "


@dataclass
class _Section:
    key: str
    title: str
    depth: int
    path: str
    line: int
    paragraphs: list[tuple[int, int, str]] = field(default_factory=list)  # (first, last, text)


def split_document(text: str, name: str, *, markdown: bool = True) -> GraphEdit:
    """The document's nodes and ``part_of`` edges, keys local to the edit (``doc``, ``s1``…)."""
    lines = text.splitlines()
    root = _Section("doc", name, 0, "", 1)
    sections = [root]
    stack = [root]
    paragraph: list[str] = []
    start = 0
    in_fence = False

    def flush(end: int) -> None:
        if paragraph and any(part.strip() for part in paragraph):
            stack[-1].paragraphs.append((start, end, "\n".join(paragraph).strip()))
        paragraph.clear()

    for number, line in enumerate(lines, start=1):
        if markdown and _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence or not markdown else _HEADING.match(line)
        if heading:
            flush(number - 1)
            depth = len(heading.group(1))
            while stack[-1].depth >= depth:
                stack.pop()
            parent = stack[-1]
            title = heading.group(2).strip() or "(untitled)"
            path = f"{parent.path}{PATH_SEPARATOR}{title}" if parent.path else title
            section = _Section(f"s{len(sections)}", title, depth, path, number)
            sections.append(section)
            stack.append(section)
            continue
        if not line.strip() and not in_fence:
            flush(number - 1)
            continue
        if not paragraph:
            start = number
        paragraph.append(line)
    flush(len(lines))

    parents = _parents(sections)
    nodes = [NodeSpec("doc", "document", name, data={"name": name, "lines": len(lines)}, turn=0)]
    edges: list[EdgeSpec] = []
    chunk_count = 0
    for section in sections:
        if section is not root:
            nodes.append(
                NodeSpec(
                    section.key, "section", section.title, level=section.depth,
                    data={"path": section.path, "line": section.line, "document": name}, turn=0,
                )
            )
            edges.append(EdgeSpec(section.key, parents[section.key], "part_of", 0))
        for first, last, chunk in _chunks(section.paragraphs):
            chunk_count += 1
            key = f"c{chunk_count}"
            data = {"document": name, "path": section.path, "lines": [first, last]}
            nodes.append(NodeSpec(key, "chunk", chunk, data=data, turn=0))
            edges.append(EdgeSpec(key, section.key, "part_of", 0))
    return GraphEdit(tuple(nodes), tuple(edges), meta={"chunks": chunk_count})


def split_file(path: Path, text: str) -> GraphEdit:
    """``split_document`` for a file: Markdown unless it is ``.txt`` (plain text has no headings)."""
    return split_document(text, path.name, markdown=path.suffix.lower() != ".txt")


def chunk_location(data: Mapping[str, Any] | None) -> str:
    """Where a chunk stands, from its node data: "document › section › subsection"."""
    data = data or {}
    return PATH_SEPARATOR.join(p for p in (data.get("document"), data.get("path")) if p)


def _parents(sections: Sequence[_Section]) -> dict[str, str]:
    """section key -> the key of the nearest section above it with a smaller depth."""
    parents: dict[str, str] = {}
    stack: list[_Section] = []
    for section in sections:
        while stack and stack[-1].depth >= section.depth:
            stack.pop()
        if stack:
            parents[section.key] = stack[-1].key
        stack.append(section)
    return parents


def _chunks(paragraphs: Sequence[tuple[int, int, str]]) -> Iterator[tuple[int, int, str]]:
    """Whole paragraphs packed up to CHUNK_CHARS; a longer paragraph is cut at line or word ends."""
    first, last, size = 0, 0, 0
    parts: list[str] = []
    for p_first, p_last, text in paragraphs:
        for piece in _pieces(text):
            if parts and size + len(piece) + 2 > CHUNK_CHARS:
                yield first, last, "\n\n".join(parts)
                parts, size = [], 0
            if not parts:
                first = p_first
            parts.append(piece)
            size += len(piece) + 2
            last = p_last
    if parts:
        yield first, last, "\n\n".join(parts)


def _pieces(text: str) -> Iterator[str]:
    while len(text) > CHUNK_CHARS:
        cut = text.rfind("\n", 0, CHUNK_CHARS)
        if cut < CHUNK_CHARS // 2:
            cut = text.rfind(" ", 0, CHUNK_CHARS)
        if cut < CHUNK_CHARS // 2:
            cut = CHUNK_CHARS
        yield text[:cut].strip()
        text = text[cut:].strip()
    if text:
        yield text


def read_documents(paths: Sequence[Path]) -> dict[Path, str]:
    """Every document's text, or ``UserError`` naming the first that cannot be read. A run reads
    them before its row exists, so a bad document leaves no empty run behind."""
    texts: dict[Path, str] = {}
    for path in paths:
        try:
            texts[path] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(
                f"Cannot read the document {path}: {exc}. Check the scenario's `documents:` "
                "entry, or save the file as UTF-8 text or Markdown."
            ) from exc
    return texts


def stored_document_paths(store: Store, run_id: int) -> set[str]:
    """The paths of the documents a run has imported (its memory holds their text)."""
    return {
        str((node.data or {}).get("path"))
        for node in store.memory_nodes(run_id, ["document"])
    }


def import_documents(
    store: Store, run_id: int, paths: Sequence[Path], texts: dict[Path, str] | None = None
) -> int:
    """Import the documents this run does not have yet (resume imports nothing twice); returns
    the number of chunks added. ``texts`` are documents already read (``read_documents``)."""
    have = stored_document_paths(store, run_id)
    missing = [path for path in paths if str(path) not in have]
    texts = {**read_documents([p for p in missing if p not in (texts or {})]), **(texts or {})}
    added = 0
    for path in missing:
        edit = split_file(path, texts[path])
        doc = edit.nodes[0]
        edit = GraphEdit(
            (NodeSpec(doc.key, doc.kind, doc.text, data={**(doc.data or {}), "path": str(path)},
                      turn=0),) + edit.nodes[1:],
            edit.edges,
            meta=edit.meta,
        )
        store.add_graph(run_id, edit)
        added += int(edit.meta.get("chunks", 0))
    return added
