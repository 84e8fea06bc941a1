"""Collapse→rebuild: keeping a long deliberation inside the served window without forgetting.

Before each turn the run loop asks ``Collapser.before_turn``. When the next prompt would pass
``collapse.at_fraction`` of the window (or ``every_turns`` have passed, or a phase ended), the
turns since the last collapse — all but the last ``keep_recent`` — are handed to the summarizer
persona, which answers under a JSON schema (constrained decoding) with a summary, facts,
decisions and open questions, each citing its turns. An answer that fails validation is asked for
once more with the reason; a second failure (or a model error) gives way to a deterministic
extractive collapse, so a collapse never stops a run. A span too long for one call is collapsed
in chunks, each its own summary; when a level holds more than ``fan_in`` summaries they are merged
into one a level up, so memory grows like a tree.

Nothing established is dropped: items stay valid until a later answer supersedes or contradicts
them, which closes them with an edge saying so; restated items get ``supports`` edges instead of
duplicates. Everything a collapse makes — nodes, edges, closed items and its ``llm_calls`` rows
(purpose ``collapse``) — is committed in one transaction, and all collapse state is read back from
the database (``memory/view.py``), so a resumed run continues exactly here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from personae.config.loader import LoadedScenario
from personae.config.models import CollapseConfig
from personae.errors import BackendError
from personae.llm.base import Backend, ChatMessage, ChatRequest
from personae.memory import items as schema
from personae.memory.block import MemoryBlock, block_query, build_block, item_line
from personae.memory.retrieval import rank
from personae.memory.view import MemoryView
from personae.orchestrator.context import (
    Prompt,
    entry_tokens,
    header_text,
    instructions_text,
    layout_header,
)
from personae.orchestrator.state import Collapsed, RunState, Speaker, Utterance
from personae.store.graph_rows import EdgeSpec, GraphEdit, NodeSpec
from personae.store.models import MemoryNode
from personae.store.repo import CallRecord, Store

MEMORY_SHARE = 0.4  # of the room left under the trigger once header and instructions are in
MESSAGE_OVERHEAD = 24  # a transcript entry's cue (or name and phase) and template tokens
GROWTH = 2  # messages a rebuilt prompt must be able to take before it collapses again
TEMPLATE_SLACK = 48  # tokens a chat template and a retry note may add to a collapse prompt
PromptFor = Callable[[RunState, Speaker], Prompt]
T = TypeVar("T")


@dataclass(frozen=True)
class Budget:
    """Token budgets, all derived from the served window."""

    window: int
    reply: int  # kept free for the persona's reply
    trigger: int  # collapse when the next prompt passes this
    memory: int  # the memory block's budget
    fixed: int = 0  # what every prompt holds anyway: header, the longest instructions, template
    message: int = 0  # room one more message takes in the transcript

    @property
    def limit(self) -> int:
        """No prompt may be larger than this."""
        return self.window - self.reply

    @classmethod
    def derive(cls, window: int, reply: int, at_fraction: float, fixed: int) -> Budget:
        """The memory block gets a share of what the trigger leaves beside the fixed parts, but
        never so much that a rebuilt prompt could not take two more messages before the next
        collapse."""
        limit = window - reply
        trigger = max(1, min(int(window * at_fraction), limit))
        message = reply + MESSAGE_OVERHEAD
        free = max(0, trigger - fixed)
        memory = max(64, min(int(free * MEMORY_SHARE), free - GROWTH * message))
        return cls(window, reply, trigger, memory, fixed, message)


@dataclass
class _Plan:
    """A collapse being assembled: graph additions and the calls that produced them."""

    nodes: list[NodeSpec] = field(default_factory=list)
    edges: list[EdgeSpec] = field(default_factory=list)
    close: list[tuple[int, int]] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    added: dict[str, int] = field(default_factory=dict)

    def edit(self) -> GraphEdit:
        return GraphEdit(tuple(self.nodes), tuple(self.edges), tuple(self.close))


@dataclass
class Collapser:
    loaded: LoadedScenario
    backend: Backend
    store: Store
    config: CollapseConfig
    budget: Budget
    seed: int | None = None
    layout: str = "cache_friendly"  # the turn prompts' layout: what one more message costs
    _blocks: dict[int, MemoryBlock] = field(default_factory=dict)
    _ceilings: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.header = header_text(self.loaded.scenario, self.loaded.personas)
        self.summarizer = self.config.summarizer
        self.limits = schema.Limits.for_tokens(self.config.max_tokens)

    # -- the memory block of the next prompt --------------------------------------------------
    def block(self, state: RunState) -> MemoryBlock:
        """The memory block as of the last collapse; computed once per collapse (or once after
        a resume, from the database) and reused verbatim until the next."""
        cached = self._blocks.get(state.run_id)
        if cached is None:
            view = MemoryView.load(self.store, state.run_id)
            cached = self._build_block(view, state.history)
            self._blocks[state.run_id] = cached
        return cached

    def _build_block(self, view: MemoryView, history: Sequence[Utterance]) -> MemoryBlock:
        marks = view.collapses()
        as_of = marks[-1].turn if marks else 0
        phase = None  # the phase the latest collapse prepared for
        for node in view.nodes.values():
            if node.kind == "summary" and node.level == 1 and (node.turn or 0) <= as_of:
                phase = (node.data or {}).get("phase", phase)
        recent = [u.content for u in history if u.turn <= as_of][-max(2, self.config.keep_recent):]
        query = block_query(self.loaded.scenario.goal, phase, recent)
        return build_block(
            view, as_of=as_of, query=query, budget=self.budget.memory,
            count=self.backend.count_text_tokens,
        )

    # -- deciding -------------------------------------------------------------------------------
    def due(self, state: RunState, speaker: Speaker, tokens: int) -> str | None:
        if not state.history:
            return None
        if tokens > self.trigger(state):
            return "at_fraction"
        every = self.config.every_turns
        if every and state.turn - self.block(state).as_of >= every:
            return "every_turns"
        if self.config.on_phase_end:
            spoken = [u for u in state.history if u.phase is not None]
            if spoken and spoken[-1].phase != speaker.phase:
                return "phase_end"
        return None

    def trigger(self, state: RunState) -> int:
        """Collapse above this many prompt tokens: ``at_fraction`` of the window until the first
        collapse; after it, the largest prompt sent up to then (but never so low that a fresh
        rebuild would sit above it). So no later prompt is larger than the first cycle's, and the
        bound is read back from ``llm_calls`` on resume."""
        if self.block(state).as_of == 0:
            return self.budget.trigger
        ceiling = self._ceilings.get(state.run_id)
        if ceiling is None:
            first = MemoryView.load(self.store, state.run_id).collapses()[0].turn
            peak = max(
                (c.prompt_tokens for c in self.store.calls(state.run_id, "turn")
                 if c.turn is not None and c.turn <= first),
                default=self.budget.trigger,
            )
            floor = self.budget.trigger - self.budget.reply - TEMPLATE_SLACK
            ceiling = max(min(peak, self.budget.trigger), floor)
            self._ceilings[state.run_id] = ceiling
        return ceiling

    def keep(self, state: RunState) -> int:
        """Messages left verbatim by a collapse now: ``keep_recent``, or fewer when keeping
        them would leave the rebuilt prompt no room for ``GROWTH`` more messages (a small window,
        long replies) — which would otherwise mean a collapse at every turn."""
        room = self.trigger(state) - self.budget.fixed - self.budget.memory
        room -= GROWTH * self.budget.message
        kept = used = 0
        for u in reversed(state.history):
            if kept == self.config.keep_recent:
                break
            used += entry_tokens(u, self.loaded.personas, self.layout, self.backend)
            if used > room:
                break
            kept += 1
        return kept

    def before_turn(
        self, state: RunState, speaker: Speaker, prompt_for: PromptFor
    ) -> Iterator[Collapsed]:
        """Collapse if one is due for this turn; yields the event when one happened."""
        tokens = prompt_for(state, speaker).full_tokens
        reason = self.due(state, speaker, tokens)
        if reason is not None:
            event = self.collapse(state, speaker, reason, tokens, prompt_for)
            if event is not None:
                yield event

    # -- collapsing -----------------------------------------------------------------------------
    def collapse(
        self,
        state: RunState,
        speaker: Speaker,
        reason: str,
        tokens_before: int,
        prompt_for: PromptFor,
    ) -> Collapsed | None:
        started = time.monotonic()
        run_id, at = state.run_id, state.turn
        view = MemoryView.load(self.store, run_id)
        keep = self.keep(state)
        span = [u for u in state.history if view.covered() < u.turn <= at - keep]
        if not span:
            return None
        index = len(view.collapses()) + 1
        nodes = self.store.message_node_ids(run_id, [u.turn for u in span])
        pinned = view.pinned(at)
        known = self._known(view, at, span)
        plan = _Plan()
        level_one: list[tuple[str | int, int, int, str]] = []  # (ref, first, last, text)
        for g, group in enumerate(self._groups(span, known, pinned)):
            sources = [schema.Source((u.turn,), u.persona, u.content, u.id) for u in group]
            output = self._ask(plan, sources, known, pinned, at=at, index=index, level=1)
            first, last = group[0].turn, group[-1].turn
            key = f"s{g}"
            plan.nodes.append(NodeSpec(
                key, "summary", output.summary, level=1, turn=at,
                data={"collapse": index, "span": [first, last], "reason": reason,
                      "mode": plan.modes[-1], "phase": speaker.phase},
            ))
            plan.edges += [EdgeSpec(key, nodes[u.turn], "summarizes", at) for u in group
                           if u.turn in nodes]
            self._items(plan, output, view, known, nodes, at=at, key=key)
            level_one.append((key, first, last, output.summary))
        plan.added["summaries"] = len(level_one)
        self._level_up(plan, view, level_one, at=at, index=index)
        self.store.commit_collapse(run_id, plan.edit(), plan.calls)

        self._blocks.pop(run_id, None)
        after = prompt_for(state, speaker).full_tokens
        now = MemoryView.load(self.store, run_id)
        kept = {"summaries": len(now.frontier(at))}
        for kind in ("fact", "decision", "question"):
            kept[f"{kind}s"] = len(now.items(at, (kind,)))
        mode = "fallback" if "fallback" in plan.modes else (
            "retried" if "retried" in plan.modes else "model"
        )
        return Collapsed(
            turn=at, first=span[0].turn, last=span[-1].turn, reason=reason,
            tokens_before=tokens_before, tokens_after=after, kept=kept, new=dict(plan.added),
            mode=mode, seconds=time.monotonic() - started,
        )

    def _known(self, view: MemoryView, at: int, span: Sequence[Utterance]) -> list[MemoryNode]:
        """Items in memory the summarizer is shown (and may supersede): the most relevant to
        the span, within a quarter of what a collapse prompt may hold."""
        candidates = sorted(
            (n for n in view.items(at) if not (n.data or {}).get("pinned")), key=lambda n: -n.id
        )
        by_id = {n.id: n for n in candidates}
        room = (self.budget.window - self.config.max_tokens) // 4
        chosen, used = [], 0
        query = " ".join(u.content for u in span)
        for node_id in rank(query, [(n.id, n.text) for n in candidates]):
            line = _known_line(len(chosen) + 1, by_id[node_id])
            tokens = self.backend.count_text_tokens(line) + 1
            if used + tokens > room:
                continue
            chosen.append(by_id[node_id])
            used += tokens
        return sorted(chosen, key=lambda n: n.id)

    def _groups(
        self, span: Sequence[Utterance], known: Sequence[MemoryNode], pinned: Sequence[MemoryNode]
    ) -> list[list[Utterance]]:
        """Split the span so that every collapse prompt fits the window with its reply."""
        room = self._room(known, pinned)
        sized: list[tuple[Utterance, int]] = []
        for u in span:
            tokens = self.backend.count_text_tokens(_source_line(u.turn, u.persona, u.content)) + 2
            if tokens > room:  # one message longer than a whole call: it goes in clipped
                ratio = room / tokens
                u = replace(u, content=u.content[: max(16, int(len(u.content) * ratio) - 16)])
                tokens = room
            sized.append((u, tokens))
        return _pack(sized, room)

    def _room(self, known: Sequence[MemoryNode], pinned: Sequence[MemoryNode]) -> int:
        """Tokens left for the text being collapsed in one call."""
        fixed = self.backend.count_tokens(self._messages([], known, pinned, level=1))
        return max(32, self.budget.window - self.config.max_tokens - fixed - TEMPLATE_SLACK)

    def _ask(
        self,
        plan: _Plan,
        sources: Sequence[schema.Source],
        known: Sequence[MemoryNode],
        pinned: Sequence[MemoryNode],
        *,
        at: int,
        index: int,
        level: int,
    ) -> schema.CollapseOutput:
        """The model's collapse of ``sources``, validated; asked twice at most, then the
        extractive fallback. Every call is recorded in ``plan.calls``."""
        items = level == 1
        turns = sorted({t for s in sources for t in s.turns})
        # Items are labelled 1, 2, 3 … in the prompt, not by node id: the prompt (and its hash,
        # which replay compares) must not depend on what else the database holds.
        known_ids = list(range(1, len(known) + 1)) if items else []
        json_schema = schema.output_schema(turns, known_ids, self.limits, items=items)
        options = self._options(at, index, level)
        error: str | None = None
        for attempt in (1, 2):
            messages = self._messages(sources, known if items else [], pinned, level=level,
                                      error=error)
            call = CallRecord(
                purpose="collapse", persona=self.summarizer, backend=self.backend.name,
                model=self.backend.model, options=options, prompt=messages,
                manifest=self._manifest(sources, known if items else [], pinned, index, level,
                                        attempt),
                response=None, schema=json_schema, turn=at + 1,
            )
            started = time.perf_counter_ns()
            try:
                result = self.backend.chat(
                    ChatRequest(messages=messages, options=options, schema=json_schema)
                )
            except BackendError as exc:
                error = f"the model server failed: {exc}"
                plan.calls.append(replace(call, error=error,
                                          wall_ns=time.perf_counter_ns() - started))
                break
            usage = result.usage
            call = replace(
                call, response=result.text, done_reason=result.done_reason,
                usage=usage, wall_ns=time.perf_counter_ns() - started,
            )
            try:
                output = schema.validate(result.text, turns, known_ids, self.limits, items=items)
            except ValueError as exc:
                error = str(exc)
                plan.calls.append(replace(call, error=f"rejected: {error}"))
                continue
            plan.calls.append(call)
            plan.modes.append("model" if attempt == 1 else "retried")
            return output
        plan.modes.append("fallback")
        return schema.extractive(sources, self.limits, items=items)

    def _options(self, at: int, index: int, level: int) -> dict[str, Any]:
        persona = self.loaded.personas.get(self.summarizer)
        options: dict[str, Any] = {"temperature": 0.2}
        options |= self.loaded.scenario.options.as_dict()
        if persona is not None:
            options |= persona.options.as_dict()
        options.pop("stop", None)  # a stop string could cut the JSON short
        options["num_predict"] = self.config.max_tokens
        options["num_ctx"] = self.budget.window
        if self.seed is not None:
            options["seed"] = self.seed + 100_000 + index * 10 + level
        return options

    def _messages(
        self,
        sources: Sequence[schema.Source],
        known: Sequence[MemoryNode],
        pinned: Sequence[MemoryNode],
        *,
        level: int,
        error: str | None = None,
    ) -> tuple[ChatMessage, ...]:
        parts = []
        if pinned:
            parts.append("Pinned by the user:\n" + "\n".join(item_line(n) for n in pinned))
        if known:
            parts.append(
                "Already in memory (id in brackets):\n"
                + "\n".join(_known_line(i, n) for i, n in enumerate(known, start=1))
            )
        if level == 1:
            parts.append("Turns to collapse:\n" + "\n".join(
                _source_line(s.turns[0], s.author, s.text) for s in sources
            ))
            ask = COLLAPSE_INSTRUCTIONS
        else:
            parts.append("Summaries to merge:\n" + "\n".join(
                f"[turns {s.turns[0]}-{s.turns[-1]}] {s.text}" for s in sources
            ))
            ask = MERGE_INSTRUCTIONS
        persona = self.loaded.personas.get(self.summarizer)
        who = f"You are {self.summarizer}" + (
            f": {persona.description.strip()}" if persona and persona.description else "."
        )
        body = "\n\n".join(parts) + f"\n\n---\n{who}\n{ask}"
        if error:
            body += f"\nYour previous answer was rejected: {error}. Answer again, correctly."
        return (ChatMessage("system", self.header), ChatMessage("user", body))

    def _manifest(
        self,
        sources: Sequence[schema.Source],
        known: Sequence[MemoryNode],
        pinned: Sequence[MemoryNode],
        index: int,
        level: int,
        attempt: int,
    ) -> list[dict[str, Any]]:
        count = self.backend.count_text_tokens
        span_text = "\n".join(s.text for s in sources)
        refs = [s.ref for s in sources]
        # Messages by id; summaries by node id, or by key when made in this same collapse (the
        # store swaps keys for ids when it commits the collapse).
        span: dict[str, Any] = (
            {"message_ids": refs} if level == 1 else {
                "node_ids": [r for r in refs if isinstance(r, int)],
                "node_keys": [r for r in refs if isinstance(r, str)],
            }
        )
        return [
            {"section": "collapse", "index": index, "level": level, "attempt": attempt},
            {"section": "header", "tokens": count(self.header)},
            {"section": "memory/pinned", "node_ids": [n.id for n in pinned],
             "tokens": sum(count(item_line(n)) for n in pinned)},
            {"section": "memory/known", "node_ids": [n.id for n in known],
             "tokens": sum(count(_known_line(i, n)) for i, n in enumerate(known, start=1))},
            {"section": "span", "turns": sorted({t for s in sources for t in s.turns}),
             **span, "tokens": count(span_text)},
        ]

    def _items(
        self,
        plan: _Plan,
        output: schema.CollapseOutput,
        view: MemoryView,
        known: Sequence[MemoryNode],
        nodes: dict[int, int],
        *,
        at: int,
        key: str,
    ) -> None:
        """Facts, decisions and questions of one answer: new nodes, or ``supports`` edges to the
        same item already in memory; superseded or contradicted items are closed with an edge."""
        existing: dict[tuple[str, str], str | int] = {
            (n.kind, _norm(n.text)): n.id for n in view.items(at)
        }
        existing |= {(n.kind, _norm(n.text)): n.key for n in plan.nodes if n.kind != "summary"}
        labelled = {i: n.id for i, n in enumerate(known, start=1)}  # prompt label -> node id
        closed = {node_id for node_id, _ in plan.close}
        for name, kind in schema.ITEM_KINDS.items():
            for i, item in enumerate(getattr(output, name)):
                cited = [nodes[t] for t in item.turns if t in nodes]
                same = existing.get((kind, _norm(item.text)))
                if same is not None and not (item.supersedes or item.contradicts):
                    plan.edges += [EdgeSpec(m, same, "supports", at) for m in cited]
                    continue
                item_key = f"{key}.{name}{i}"
                existing[(kind, _norm(item.text))] = item_key
                plan.nodes.append(NodeSpec(
                    item_key, kind, item.text, turn=at, valid_from=min(item.turns),
                    data={"turns": sorted(item.turns), "source": plan.modes[-1]},
                ))
                plan.edges += [EdgeSpec(item_key, m, "derived_from", at) for m in cited]
                plan.added[f"{kind}s"] = plan.added.get(f"{kind}s", 0) + 1
                for relation, targets in (("supersedes", item.supersedes),
                                          ("contradicts", item.contradicts)):
                    for label in targets:
                        old = labelled.get(label)
                        if old is not None and old not in closed:
                            plan.edges.append(EdgeSpec(item_key, old, relation, at))
                            plan.close.append((old, at))
                            closed.add(old)

    def _level_up(
        self,
        plan: _Plan,
        view: MemoryView,
        new: list[tuple[str | int, int, int, str]],
        *,
        at: int,
        index: int,
    ) -> None:
        """While a level holds more than ``fan_in`` summaries, merge them into the level above."""
        level = 1
        pending = [_ref(n) for n in view.frontier(at, level=1)] + new
        made = 0
        while len(pending) > self.config.fan_in:
            groups = self._summary_groups(pending)
            if len(groups) >= len(pending):  # none fit together in one call: leave the level
                break
            merged: list[tuple[str | int, int, int, str]] = []
            for group in groups:
                sources = [schema.Source((first, last), "summary", text, ref)
                           for ref, first, last, text in group]
                output = self._ask(plan, sources, [], [], at=at, index=index, level=level + 1)
                made += 1
                key = f"L{level + 1}.{made}"
                first, last = group[0][1], group[-1][2]
                plan.nodes.append(NodeSpec(
                    key, "summary", output.summary, level=level + 1, turn=at,
                    data={"span": [first, last], "merged_at_collapse": index,
                          "mode": plan.modes[-1]},
                ))
                plan.edges += [EdgeSpec(key, ref, "summarizes", at) for ref, *_ in group]
                plan.added[f"level{level + 1}"] = plan.added.get(f"level{level + 1}", 0) + 1
                merged.append((key, first, last, output.summary))
            level += 1
            pending = [_ref(n) for n in view.frontier(at, level=level)] + merged

    def _summary_groups(
        self, pending: Sequence[tuple[str | int, int, int, str]]
    ) -> list[list[tuple[str | int, int, int, str]]]:
        room = max(32, self.budget.window - self.config.max_tokens
                   - self.backend.count_text_tokens(self.header) - 2 * TEMPLATE_SLACK - 64)
        ordered = sorted(pending, key=lambda e: e[1])
        return _pack([(e, self.backend.count_text_tokens(e[3]) + 8) for e in ordered], room)


def make_collapser(
    loaded: LoadedScenario, backend: Backend, store: Store, settings: Any, reply_reserve: int
) -> Collapser | None:
    """The scenario's collapser, or None when ``memory.collapse`` is off. The budgets come from
    the served window (``settings.num_ctx``) and what every prompt holds anyway."""
    config = loaded.scenario.memory.collapse
    if config is None:
        return None
    scenario, personas = loaded.scenario, loaded.personas
    layout = settings.layout
    header = backend.count_text_tokens(layout_header(scenario, personas, layout))
    instructions = max(
        backend.count_text_tokens(
            instructions_text(scenario, personas[name], Speaker(name, "phase"), layout)
        )
        for name in scenario.roster
    )
    budget = Budget.derive(
        settings.num_ctx, reply_reserve, config.at_fraction, header + instructions + TEMPLATE_SLACK
    )
    return Collapser(loaded, backend, store, config, budget, seed=settings.seed, layout=layout)


COLLAPSE_INSTRUCTIONS = (
    "Collapse the turns above into memory. Reply with JSON only: \"summary\" says in one to "
    "three sentences what these turns did; \"facts\" are numbers and statements established "
    "there; \"decisions\" what was decided; \"open_questions\" what is still open. Every item "
    "cites the turns it comes from in \"turns\". When an item replaces or contradicts one "
    "already in memory, put that item's id in \"supersedes\" or \"contradicts\". Do not repeat "
    "items already in memory."
)
MERGE_INSTRUCTIONS = (
    "Merge these summaries into one shorter summary of the whole span, keeping names, numbers "
    "and decisions. Reply with JSON only: {\"summary\": \"...\"}."
)


def _pack(sized: Sequence[tuple[T, int]], room: int) -> list[list[T]]:
    """Consecutive items, in order, into as few groups of at most ``room`` tokens as a greedy
    pass makes (an item larger than ``room`` gets a group of its own)."""
    groups: list[list[T]] = [[]]
    used = 0
    for item, tokens in sized:
        if groups[-1] and used + tokens > room:
            groups.append([])
            used = 0
        groups[-1].append(item)
        used += tokens
    return groups


def _source_line(turn: int, author: str, text: str) -> str:
    return f"[turn {turn}] {author}: {text}"


def _known_line(label: int, node: MemoryNode) -> str:
    return f"[{label}] {node.kind}: {node.text}"


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def _ref(node: MemoryNode) -> tuple[str | int, int, int, str]:
    first, last = (node.data or {}).get("span", [node.turn or 0, node.turn or 0])
    return (node.id, first, last, node.text)
