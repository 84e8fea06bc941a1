"""A run's memory graph as a networkx ``MultiDiGraph``, and its export formats.

Nodes are the rows of ``memory_nodes`` (id = the row id) with their kind, level, text, turns and
validity; edges the rows of ``memory_edges`` (key = the row id) with their kind and turn. Several
edges may join the same pair (a fact both ``derived_from`` and ``supports``), hence a multigraph.
Exports: ``json`` (node-link), ``graphml`` (for Gephi, yEd, ``networkx.read_graphml``), ``mermaid``
(renders in Markdown viewers) and ``dot`` (Graphviz).
"""

from __future__ import annotations

import io
import json
from typing import Any

import networkx as nx

from personae.store.repo import Store

NODE_KINDS = (
    "message", "persona", "summary", "fact", "decision", "question", "document", "section", "chunk"
)
EDGE_KINDS = (
    "authored_by", "replies_to", "summarizes", "derived_from", "supports", "contradicts",
    "supersedes", "part_of",
)
FORMATS = ("json", "graphml", "mermaid", "dot")
LABEL_CHARS = 60


def load_graph(store: Store, run_id: int) -> nx.MultiDiGraph:
    """The whole memory graph of a run, from the database."""
    store.run(run_id)  # a clear error for an unknown run
    graph = nx.MultiDiGraph(run_id=run_id)
    for node in store.memory_nodes(run_id):
        attrs: dict[str, Any] = {"kind": node.kind, "text": node.text}
        for name in ("level", "turn", "valid_from", "valid_to", "message_id"):
            value = getattr(node, name)
            if value is not None:
                attrs[name] = value
        if node.data:
            attrs["data"] = node.data
        graph.add_node(node.id, **attrs)
    for edge in store.memory_edges(run_id):
        attrs = {"kind": edge.kind}
        if edge.turn is not None:
            attrs["turn"] = edge.turn
        graph.add_edge(edge.src, edge.dst, key=edge.id, **attrs)
    return graph


def export(graph: nx.MultiDiGraph, fmt: str) -> str:
    if fmt == "json":
        return to_json(graph)
    if fmt == "graphml":
        return to_graphml(graph)
    if fmt == "mermaid":
        return to_mermaid(graph)
    if fmt == "dot":
        return to_dot(graph)
    raise ValueError(f"unknown graph format {fmt!r}; choose one of {', '.join(FORMATS)}")


def to_json(graph: nx.MultiDiGraph) -> str:
    try:
        data = nx.node_link_data(graph, edges="edges")
    except TypeError:  # networkx before 3.4 names the argument `link`
        data = nx.node_link_data(graph, link="edges")
    return json.dumps(data, ensure_ascii=False, indent=2)


def to_graphml(graph: nx.MultiDiGraph) -> str:
    """GraphML allows only scalar attributes: ``data`` goes in as a JSON string."""
    flat = nx.MultiDiGraph(**{k: v for k, v in graph.graph.items() if v is not None})
    for node, attrs in graph.nodes(data=True):
        flat.add_node(node, **{k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v
                               for k, v in attrs.items()})
    for src, dst, key, attrs in graph.edges(keys=True, data=True):
        flat.add_edge(src, dst, key=key, **attrs)
    buffer = io.BytesIO()
    nx.write_graphml(flat, buffer, encoding="utf-8")
    return buffer.getvalue().decode("utf-8")


def label(attrs: dict[str, Any]) -> str:
    kind = attrs.get("kind", "")
    if kind == "summary":
        kind = f"summary L{attrs.get('level', 1)}"
    elif kind == "message":
        kind = f"message t{attrs.get('turn')}"
    text = " ".join(str(attrs.get("text", "")).split())
    if len(text) > LABEL_CHARS:
        text = text[: LABEL_CHARS - 1] + "…"
    return f"{kind}: {text}" if text else kind


def to_mermaid(graph: nx.MultiDiGraph) -> str:
    """A ``flowchart`` with one class per node kind; labels are quoted and entity-escaped, so
    any text renders."""
    lines = ["flowchart LR"]
    for node, attrs in graph.nodes(data=True):
        text = (label(attrs).replace("#", "#35;").replace('"', "#quot;").replace("`", "#96;")
                .replace("<", "#lt;").replace(">", "#gt;"))
        lines.append(f'  n{node}["{text}"]:::{attrs.get("kind", "node")}')
    for src, dst, attrs in graph.edges(data=True):
        lines.append(f"  n{src} -->|{attrs.get('kind', '')}| n{dst}")
    styles = {
        "message": "#eef", "persona": "#ffd", "summary": "#dfd", "fact": "#fdd",
        "decision": "#fcf", "question": "#ddf", "document": "#eee", "section": "#eee",
        "chunk": "#f6f6f6",
    }
    lines += [f"  classDef {kind} fill:{color},stroke:#888" for kind, color in styles.items()]
    return "\n".join(lines) + "\n"


def to_dot(graph: nx.MultiDiGraph) -> str:
    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'

    shapes = {"summary": "box", "fact": "note", "decision": "octagon", "question": "diamond",
              "persona": "ellipse", "document": "folder", "section": "tab", "chunk": "component"}
    lines = [f"digraph memory_run_{graph.graph.get('run_id', 0)} {{", "  rankdir=LR;"]
    for node, attrs in graph.nodes(data=True):
        shape = shapes.get(attrs.get("kind", ""), "plaintext")
        lines.append(f"  n{node} [label={quote(label(attrs))}, shape={shape}, "
                     f"kind={quote(attrs.get('kind', ''))}];")
    for src, dst, attrs in graph.edges(data=True):
        kind = attrs.get("kind", "")
        lines.append(f"  n{src} -> n{dst} [label={quote(kind)}, kind={quote(kind)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
