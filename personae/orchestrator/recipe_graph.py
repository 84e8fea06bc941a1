"""What a recipe's turn adds to the memory graph, committed in the turn's own transaction.

- ``TurnPlan.links``: edges from the message's node to nodes already stored — a chain worker's
  note and a self-ask intermediate answer are ``derived_from`` the chunk they read.
- The task loop: every task the planner's list takes up becomes a ``task`` node,
  ``derived_from`` the planner's message; a worked task's node is closed (``valid_to``) at the
  executor's turn, whose message is ``derived_from`` it. Open tasks are the task nodes with no
  ``valid_to``: the list lives in the graph as well as in the transcript.

Other turns add nothing here (no query, no rows), so ordinary runs are written as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from personae.orchestrator.policies.task_loop import task_list
from personae.orchestrator.state import TurnPlan, Utterance
from personae.store.graph_rows import MESSAGE_KEY, EdgeSpec, GraphEdit, NodeSpec
from personae.store.repo import Store, TurnRecord


def turn_graph(
    store: Store, run_id: int, speaker: TurnPlan, history: Sequence[Utterance], record: TurnRecord
) -> GraphEdit | None:
    turn = record.turn
    edges = [EdgeSpec(MESSAGE_KEY, node_id, kind, turn) for kind, node_id in speaker.links]
    nodes: list[NodeSpec] = []
    close: list[tuple[int, int]] = []
    kind = (speaker.meta or {}).get("task_loop")
    if kind in ("plan", "execute"):
        max_tasks = int((speaker.meta or {}).get("max_tasks") or 10**6)
        stored = {
            (node.data or {}).get("id"): node
            for node in store.memory_nodes(run_id, ["task"])
        }
        said = Utterance(
            turn, record.persona, record.phase, record.content,
            structured=record.structured, meta=record.meta,
        )
        if kind == "plan":
            for task in task_list([*history, said], max_tasks):
                node = stored.get(task.id)
                if node is None:
                    key = f"task{task.id}"
                    nodes.append(NodeSpec(
                        key, "task", task.text,
                        data={"id": task.id, "status": "done" if task.done else "open"},
                        turn=turn, valid_from=turn,
                    ))
                    edges.append(EdgeSpec(key, MESSAGE_KEY, "derived_from", turn))
                elif task.done and node.valid_to is None:
                    close.append((node.id, turn))
        else:
            node = stored.get((speaker.meta or {}).get("task"))
            if node is not None:
                edges.append(EdgeSpec(MESSAGE_KEY, node.id, "derived_from", turn))
                if node.valid_to is None:
                    close.append((node.id, turn))
    edit = GraphEdit(tuple(nodes), tuple(edges), tuple(close))
    return edit if edit else None
