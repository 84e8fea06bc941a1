"""A stored run as the scorer sees it: everything comes from the database, nothing from files,
so any run can be scored after its scenario has changed or moved."""

from __future__ import annotations

from typing import Any

import yaml

from personae.quality.scoring import Deliberation, Reply, ReplyScore, score
from personae.store.repo import Store


def deliberation_of_run(store: Store, run_id: int) -> Deliberation:
    run = store.run(run_id)
    scenario: dict[str, Any] = yaml.safe_load(run.scenario_yaml) or {}
    termination = scenario.get("termination") or {}
    members = [p for p in store.run_personas(run_id) if p.position is not None]
    members.sort(key=lambda p: p.position or 0)
    instructions = {
        p.name: "\n".join(str(p.definition.get(k) or "") for k in ("description", "system")).strip()
        for p in members
    }
    roles = {
        p.name: f"{instructions[p.name]}\n{p.definition.get('output_template') or ''}".strip()
        for p in members
    }
    schemas = {p.name: p.definition.get("output_schema") for p in members}
    messages = store.messages(run_id)
    kept = _kept_calls(store, run_id, messages)
    replies, others = [], []
    for m in messages:
        if m.persona not in instructions:
            others.append(m.content)
            continue
        call = kept.get(m.id)
        replies.append(
            Reply(
                persona=m.persona,
                content=m.content,
                turn=m.turn,
                done_reason=call.done_reason if call is not None else None,
                prompt="\n".join(p.get("content", "") for p in call.prompt) if call is not None else "",
                fields=m.structured,
                schema=(call.schema if call is not None and call.schema else None) or schemas.get(m.persona),
            )
        )
    documents = tuple(n.text for n in store.memory_nodes(run_id, ["chunk"]))
    return Deliberation(
        goal=str(scenario.get("goal") or ""),
        context=str(scenario.get("context") or ""),
        documents=documents,
        instructions=instructions,
        replies=tuple(replies),
        others=tuple(others),
        stop_phrase=termination.get("stop_phrase", "FINAL DECISION:"),
        roles=roles,
    )


def score_run(store: Store, run_id: int) -> list[ReplyScore]:
    return score(deliberation_of_run(store, run_id))


def _kept_calls(store: Store, run_id: int, messages: list[Any]) -> dict[int, Any]:
    """The model call each message came from: the attempt the reply guard kept."""
    by_message: dict[int, list[Any]] = {}
    for call in store.calls(run_id):
        if call.purpose in ("turn", "retry") and call.message_id is not None:
            by_message.setdefault(call.message_id, []).append(call)
    kept = {}
    for m in messages:
        calls = by_message.get(m.id)
        if not calls:
            continue
        index = ((m.meta or {}).get("guard") or {}).get("kept", len(calls) - 1)
        kept[m.id] = calls[min(int(index), len(calls) - 1)]
    return kept
