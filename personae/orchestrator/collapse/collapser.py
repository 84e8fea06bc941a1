"""When to collapse, what to collapse, and the memory block every rebuilt prompt carries."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from personae.config.loader import LoadedScenario
from personae.config.models import CollapseConfig
from personae.llm.base import Backend
from personae.memory import items as schema
from personae.memory.block import MemoryBlock, block_query, build_block
from personae.memory.ranking import Weights
from personae.memory.retrieval import rank
from personae.memory.view import MemoryView
from personae.orchestrator.collapse.budget import (
    GROWTH,
    TEMPLATE_SLACK,
    Budget,
    budget_for,
)
from personae.orchestrator.collapse.edit import (
    CollapsePlan,
    SummaryRef,
    add_items,
    pack,
    summary_ref,
)
from personae.orchestrator.collapse.importance import rate_items
from personae.orchestrator.collapse.summarizer import (
    Summarizer,
    known_line,
    source_line,
)
from personae.orchestrator.prompts import Prompt, entry_tokens
from personae.orchestrator.state import Collapsed, RunSettings, RunState, TurnPlan, Utterance
from personae.store.graph_rows import EdgeSpec, NodeSpec
from personae.store.models import MemoryNode
from personae.store.repo import Store

PromptFor = Callable[[RunState, TurnPlan], Prompt]


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
    _views: dict[int, MemoryView] = field(default_factory=dict)
    _ceilings: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.summarizer = Summarizer(
            self.loaded, self.backend, self.config, self.budget, seed=self.seed
        )

    # -- the memory block of the next prompt --------------------------------------------------
    def block(self, state: RunState) -> MemoryBlock:
        """The memory block as of the last collapse; computed once per collapse (or once after
        a resume, from the database) and reused verbatim until the next."""
        cached = self._blocks.get(state.run_id)
        if cached is None:
            cached = self._build_block(self._view(state.run_id), state.history)
            self._blocks[state.run_id] = cached
        return cached

    def _view(self, run_id: int) -> MemoryView:
        """The run's memory as of the last collapse: read whole once (or after a resume), then
        brought up to date by each collapse with what it wrote (``MemoryView.refreshed``)."""
        view = self._views.get(run_id)
        if view is None:
            view = self._views[run_id] = MemoryView.load(self.store, run_id)
        return view

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
            count=self.backend.count_text_tokens, generative=self._weights(),
        )

    def _weights(self) -> Weights | None:
        """``memory.ranking`` as the block takes it: None for plain BM25."""
        ranking = self.loaded.scenario.memory.ranking
        if ranking.type != "generative":
            return None
        return Weights(ranking.recency, ranking.importance, ranking.relevance, ranking.decay)

    # -- deciding -------------------------------------------------------------------------------
    def due(self, state: RunState, speaker: TurnPlan, tokens: int) -> str | None:
        if not state.history:
            return None
        if tokens > self.trigger(state):
            return "at_fraction"
        every = self.config.every_turns
        if every and state.turn - self.block(state).as_of >= every:
            return "every_turns"
        if self.config.on_phase_end:
            last = next((u for u in reversed(state.history) if u.phase is not None), None)
            if last is not None and last.phase != speaker.phase:
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
            first = self._view(state.run_id).collapses()[0].turn
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
        self, state: RunState, speaker: TurnPlan, prompt_for: PromptFor
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
        speaker: TurnPlan,
        reason: str,
        tokens_before: int,
        prompt_for: PromptFor,
    ) -> Collapsed | None:
        started = time.monotonic()
        run_id, at = state.run_id, state.turn
        view = self._view(run_id)
        keep = self.keep(state)
        covered = view.covered()  # once: it walks the graph
        span = [u for u in state.history if covered < u.turn <= at - keep]
        if not span:
            return None
        index = len(view.collapses()) + 1
        nodes = self.store.message_node_ids(run_id, [u.turn for u in span])
        pinned = view.pinned(at)
        known = self._known(view, at, span)
        plan = CollapsePlan()
        level_one: list[SummaryRef] = []
        for g, group in enumerate(self._groups(span, known, pinned)):
            sources = [schema.Source((u.turn,), u.persona, u.content, u.id) for u in group]
            output = plan.record(
                self.summarizer.ask(sources, known, pinned, at=at, index=index, level=1)
            )
            first, last = group[0].turn, group[-1].turn
            key = f"s{g}"
            plan.nodes.append(NodeSpec(
                key, "summary", output.summary, level=1, turn=at,
                data={"collapse": index, "span": [first, last], "reason": reason,
                      "mode": plan.modes[-1], "phase": speaker.phase},
            ))
            plan.edges += [EdgeSpec(key, nodes[u.turn], "summarizes", at) for u in group
                           if u.turn in nodes]
            add_items(plan, output, view, known, nodes, at=at, key=key)
            level_one.append((key, first, last, output.summary))
        plan.added["summaries"] = len(level_one)
        self._level_up(plan, view, level_one, at=at, index=index)
        if self._weights() is not None:  # Generative Agents: each new item rated once, now
            rate_items(plan, self.backend, goal=self.loaded.scenario.goal, at=at,
                       num_ctx=self.budget.window, seed=self.seed)
        edit = plan.edit()
        self.store.commit_collapse(run_id, edit, plan.calls)

        # What this collapse wrote, read on top of the view: the new block and the counts.
        now = self._views[run_id] = view.refreshed(self.store, run_id, [n for n, _ in edit.close])
        self._blocks[run_id] = self._build_block(now, state.history)
        after = prompt_for(state, speaker).full_tokens
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
        chosen: list[MemoryNode] = []
        used = 0
        query = " ".join(u.content for u in span)
        for node_id in rank(query, [(n.id, n.text) for n in candidates]):
            line = known_line(len(chosen) + 1, by_id[node_id])
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
            tokens = self.backend.count_text_tokens(source_line(u.turn, u.persona, u.content)) + 2
            if tokens > room:  # one message longer than a whole call: it goes in clipped
                ratio = room / tokens
                u = replace(u, content=u.content[: max(16, int(len(u.content) * ratio) - 16)])
                tokens = room
            sized.append((u, tokens))
        return pack(sized, room)

    def _room(self, known: Sequence[MemoryNode], pinned: Sequence[MemoryNode]) -> int:
        """Tokens left for the text being collapsed in one call."""
        fixed = self.backend.count_tokens(self.summarizer.messages([], known, pinned, level=1))
        return max(32, self.budget.window - self.config.max_tokens - fixed - TEMPLATE_SLACK)

    def _level_up(
        self,
        plan: CollapsePlan,
        view: MemoryView,
        new: list[SummaryRef],
        *,
        at: int,
        index: int,
    ) -> None:
        """While a level holds more than ``fan_in`` summaries, merge them into the level above."""
        level = 1
        pending = [summary_ref(n) for n in view.frontier(at, level=1)] + new
        made = 0
        while len(pending) > self.config.fan_in:
            groups = self._summary_groups(pending)
            if len(groups) >= len(pending):  # none fit together in one call: leave the level
                break
            merged: list[SummaryRef] = []
            for group in groups:
                sources = [schema.Source((first, last), "summary", text, ref)
                           for ref, first, last, text in group]
                output = plan.record(
                    self.summarizer.ask(sources, [], [], at=at, index=index, level=level + 1)
                )
                made += 1
                key = f"L{level + 1}.{made}"
                first, last = group[0][1], group[-1][2]
                plan.nodes.append(NodeSpec(
                    key, "summary", output.summary, level=level + 1, turn=at,
                    data={"span": [first, last], "merged_at_collapse": index,
                          "mode": plan.modes[-1]},
                ))
                plan.edges += [EdgeSpec(key, ref, "summarizes", at) for ref, *_ in group]
                plan.count(f"level{level + 1}")
                merged.append((key, first, last, output.summary))
            level += 1
            pending = [summary_ref(n) for n in view.frontier(at, level=level)] + merged

    def _summary_groups(self, pending: Sequence[SummaryRef]) -> list[list[SummaryRef]]:
        room = max(32, self.budget.window - self.config.max_tokens
                   - self.backend.count_text_tokens(self.summarizer.header) - 2 * TEMPLATE_SLACK - 64)
        ordered = sorted(pending, key=lambda e: e[1])
        return pack([(e, self.backend.count_text_tokens(e[3]) + 8) for e in ordered], room)


def make_collapser(
    loaded: LoadedScenario, backend: Backend, store: Store, settings: RunSettings, reply_reserve: int
) -> Collapser | None:
    """The scenario's collapser, or None when ``memory.collapse`` is off."""
    config = loaded.scenario.memory.collapse
    if config is None:
        return None
    budget = budget_for(loaded, backend, settings, reply_reserve, config.at_fraction)
    return Collapser(loaded, backend, store, config, budget, seed=settings.seed, layout=settings.layout)
