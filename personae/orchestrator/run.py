"""The run loop: pick a speaker, build the prompt, call the model, record the turn, maybe stop.

It yields typed events (``TurnStarted``, ``TurnDone``, ``Stopped``); rendering belongs to the
caller. All state that matters is in the database after every turn, so a run started here can be
continued by ``resume`` in another process.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from typing import Any

from personae.config.loader import LoadedScenario
from personae.config.modes import mode_table
from personae.errors import DatabaseMoved, PersonaeError, StoreConflict, StoreError
from personae.llm.base import Backend, ChatRequest, ChatResult, TokenCallback
from personae.llm.calibration import calibrate_from_calls
from personae.memory.documents import import_documents, read_documents
from personae.orchestrator.calls import call_model
from personae.orchestrator.collapse import make_collapser
from personae.orchestrator.collapse.budget import TEMPLATE_SLACK
from personae.orchestrator.guard import (
    Check,
    ReplyGuard,
    best_attempt,
    retry_messages,
    retry_note,
    retry_options,
)
from personae.orchestrator.inputs import AskUser, commit_user_message, user_messages
from personae.orchestrator.policies import make_policy, reads_documents
from personae.orchestrator.policies.passages import load_passages
from personae.orchestrator.recipe_graph import turn_graph
from personae.orchestrator.prompts import Prompt, RenderCache, build_prompt
from personae.orchestrator.selector import LLMSelector, Selector
from personae.orchestrator.state import (
    Event,
    InputGiven,
    Retrying,
    RunSettings,
    RunState,
    Stopped,
    TurnDone,
    TurnPlan,
    TurnStarted,
    Utterance,
    utterance_of,
)
from personae.orchestrator.termination import StopRule, TurnCap, make_stop_rule
from personae.orchestrator.turns import TurnOutput, interpret, prepare
from personae.orchestrator.window import TurnFit, check_window, reply_budgets
from personae.replies.ending import complete_part
from personae.store.repo import CallRecord, NewRun, RunTotals, Store, TurnRecord


def settings_for(loaded: LoadedScenario, backend: Backend, **overrides: Any) -> RunSettings:
    scenario = loaded.scenario
    num_ctx = (
        overrides.get("num_ctx")
        or scenario.memory.num_ctx
        or getattr(backend, "num_ctx", None)
        or backend.context_length()
        or 4096
    )
    return RunSettings(
        layout=overrides.get("layout") or scenario.layout,
        max_turns=overrides.get("max_turns") or scenario.termination.max_turns,
        num_ctx=int(num_ctx),
        seed=overrides.get("seed") if overrides.get("seed") is not None else scenario.options.seed,
        measure_prepared=overrides.get("measure_prepared", True),
        check_placeholders=overrides.get("check_placeholders", True),
        trim_cut_replies=overrides.get("trim_cut_replies", True),
        check_self_copies=overrides.get("check_self_copies", True),
    )


def start_run(
    store: Store,
    loaded: LoadedScenario,
    backend: Backend,
    settings: RunSettings,
    *,
    parent_run_id: int | None = None,
    fork_turn: int | None = None,
    batch_variant_id: int | None = None,
) -> int:
    """Create the run row with the scenario and personas frozen as they are now (and, for a
    fork, the run and turn it continues; for a sweep, the variant it runs), and import its documents. The documents are read
    first, so one that cannot be read leaves no run behind; once imported, the run needs no
    file again (resume never reads documents from the working directory)."""
    texts = read_documents(loaded.documents)
    roster = loaded.roster
    run_id = store.create_run(
        NewRun(
            scenario_name=loaded.scenario.name,
            # Absolute, so a resume from another folder finds (or misses) the same place.
            scenario_path=str(loaded.path.expanduser().resolve()) if loaded.path else None,
            scenario_yaml=loaded.source_yaml,
            backend=backend.name,
            model=backend.model,
            layout=settings.layout,
            num_ctx=settings.num_ctx,
            max_turns=settings.max_turns,
            seed=settings.seed,
            personas=[
                (
                    name,
                    roster.index(name) if name in roster else None,
                    loaded.persona_sources.get(name, "builtin"),
                    persona.model_dump(mode="json", exclude_none=True),
                )
                for name, persona in loaded.personas.items()
            ],
            parent_run_id=parent_run_id,
            fork_turn=fork_turn,
            # What the stored YAML does not hold; resume and replay load it back with these.
            variables=dict(loaded.variables) if loaded.variables else None,
            options=dict(loaded.options) if loaded.options else None,
            batch_variant_id=batch_variant_id,
        )
    )
    import_documents(store, run_id, loaded.documents, texts)
    return run_id


@dataclass
class Orchestrator:
    loaded: LoadedScenario
    backend: Backend
    store: Store
    settings: RunSettings
    ask_user: AskUser | None = None  # --interactive: a line from the user between turns

    def __post_init__(self) -> None:
        scenario = self.loaded.scenario
        self._fixed_options: dict[str, tuple[dict[str, Any], list[str]]] = {}  # see _options
        self._rendered = RenderCache()  # each committed turn is rendered once, not per prompt
        self.guard = ReplyGuard.for_scenario(
            scenario, self.loaded.personas, placeholders=self.settings.check_placeholders,
            self_copies=self.settings.check_self_copies,
        )
        self.policy = make_policy(scenario.policy, scenario.roster, mode_table(scenario))
        self.stop_rule: StopRule = make_stop_rule(
            scenario.termination, max_turns=self.settings.max_turns, roster=scenario.roster
        ) | TurnCap.for_run(self.settings.max_turns, len(scenario.inputs))
        self.selector: Selector = LLMSelector(
            backend=self.backend, scenario=scenario, personas=self.loaded.personas,
            store=self.store, num_ctx=self.settings.num_ctx, seed=self.settings.seed,
            prompt_for=self._prompt,
        )
        # Room for the longest reply any persona may write; refused now if it cannot fit.
        replies = reply_budgets(list(scenario.roster), self._options)
        self.reply_reserve = max(replies.values())
        check_window(
            self.loaded, self.backend, layout=self.settings.layout,
            num_ctx=self.settings.num_ctx, reply_tokens=replies,
        )
        self.collapser = make_collapser(
            self.loaded, self.backend, self.store, self.settings, self.reply_reserve
        )
        # What a chain by sections packs against: the prompt as sent, the speaker's own reply,
        # and room for a retry note when the guard may ask again.
        retries = scenario.guard.enabled and scenario.guard.retries > 0
        self.fits = TurnFit(
            self.loaded, self.backend, self.settings.layout, self.settings.num_ctx, replies,
            slack=TEMPLATE_SLACK if retries else 0,
        )

    def run(self, run_id: int, on_token: TokenCallback | None = None) -> Generator[Event, None, None]:
        # The database is the truth at the start (a resumed run continues its totals); from then
        # on every turn's commit returns the run's totals as it left them, and nothing that adds
        # tokens (selection, collapse, the turn) happens between that commit and the next check.
        state = RunState(
            run_id=run_id,
            history=tuple(load_history(self.store, run_id)),
            evaluated_tokens=self.store.totals(run_id).evaluated_tokens,
            started_monotonic=time.monotonic(),
        )
        # An estimating backend (Ollama, OpenAI) continues from the ratio the stored calls taught.
        calibrate_from_calls(self.backend, lambda: self.store.calls(run_id))
        import_documents(self.store, run_id, self.loaded.documents)
        scenario = self.loaded.scenario
        if reads_documents(scenario.policy):  # the run's own chunks, as stored (resume too)
            self.policy = make_policy(
                scenario.policy, scenario.roster, mode_table(scenario),
                load_passages(self.store, run_id), self.fits,
            )
        try:
            while True:
                reason = self.stop_rule.check(state)
                speaker = None if reason else self.policy.next_speaker(state.history)
                if reason == "max_turns":  # cut short? say where
                    pending = self.policy.next_speaker(state.history)
                    if pending is not None and pending.phase:
                        reason = f"max_turns (in phase {pending.phase})"
                if speaker is None:
                    reason = reason or self.policy.finish_reason(state.history)
                    self.store.finish_run(run_id, "completed", stop_reason=reason)
                    yield Stopped(run_id, "completed", reason, state.turn)
                    return
                for text, meta in user_messages(self.loaded.scenario.inputs, state, self.ask_user):
                    said = commit_user_message(self.store, run_id, state.turn + 1, text, meta)
                    state = replace(state, history=state.history + (said,))
                    speaker = self.policy.next_speaker(state.history) or speaker
                    yield InputGiven(said)
                chosen_by: tuple[CallRecord, ...] = ()
                if speaker.choices:  # the rules left it open: the selector picks
                    speaker, chosen_by = self.selector.choose(state, speaker)
                # The turn as it will be asked: a structured reply's schema and its instructions.
                prepared = prepare(speaker, self.loaded.personas[speaker.persona])
                if self.collapser is not None:
                    measured = prepared if self.settings.measure_prepared else speaker
                    yield from self.collapser.before_turn(state, measured, self._prompt)
                yield TurnStarted(state.turn + 1, speaker.persona, speaker.phase)
                done, totals = yield from self._take_turn(state, prepared, on_token, chosen_by)
                state = replace(
                    state,
                    history=state.history + (done.utterance,),
                    evaluated_tokens=totals.evaluated_tokens,
                )
                yield done
        except PersonaeError as exc:
            # The model server, the database (disk full) or a rule failed: the run is failed and
            # resumable once the cause is fixed. A write conflict means another process owns it;
            # a database file moved away takes no more writes (they would land in another file).
            if not isinstance(exc, (StoreConflict, DatabaseMoved)):
                _finish_failed(self.store, run_id, exc)
            raise
        except KeyboardInterrupt:
            self.store.finish_run(run_id, "interrupted", stop_reason="interrupted")
            raise

    def _take_turn(
        self,
        state: RunState,
        speaker: TurnPlan,
        on_token: TokenCallback | None,
        chosen_by: tuple[CallRecord, ...] = (),
    ) -> Generator[Retrying, None, tuple[TurnDone, RunTotals]]:
        """One model turn (``speaker`` as ``prepare`` left it), checked by the reply guard and
        committed with every attempt; returns the event and the run's totals as the commit left
        them (``yield from`` it: retries are announced as they start)."""
        turn = state.turn + 1
        prompt = self._prompt(state, speaker)
        options = self._options(speaker.persona, turn=turn)
        if speaker.schema is not None:  # the grammar ends the JSON; a "\nCritic:" stop would cut it
            options.pop("stop", None)
        guard = self.loaded.scenario.guard
        attempts: list[tuple[CallRecord, ChatResult, TurnOutput]] = []
        checks: list[Check] = []
        messages, attempt_options = prompt.messages, options
        for attempt in range(1 + (guard.retries if guard.enabled else 0)):
            if attempt:
                last = checks[-1]
                yield Retrying(turn, speaker.persona, attempt, last.problems, last.copied)
                messages = retry_messages(prompt.messages, retry_note(last, speaker.persona))
                attempt_options = retry_options(options, attempt)
            call, result = call_model(
                self.backend,
                ChatRequest(messages, attempt_options, speaker.schema),
                CallRecord(
                    purpose="retry" if attempt else "turn", persona=speaker.persona,
                    backend=self.backend.name, model=self.backend.model,
                    options=attempt_options, prompt=messages, manifest=prompt.manifest,
                    response=None, schema=speaker.schema, turn=turn,
                ),
                on_failure=lambda failed: self.store.record_call(state.run_id, failed),
                on_token=on_token,
            )
            parsed = interpret(result.text, speaker, self.loaded.scenario.roster)
            attempts.append((call, result, parsed))
            if not guard.enabled:
                break
            schema_error = (parsed.meta or {}).get("structured_error") if speaker.schema else None
            checks.append(
                self.guard.check(
                    parsed.content, speaker.persona, state.history, messages, schema_error,
                    parsed.structured, speaker.schema,
                )
            )
            if checks[-1].ok:
                break
        kept = best_attempt(checks) if checks else 0
        _, result, parsed = attempts[kept]
        meta = dict(parsed.meta or {})
        if not result.text.strip():  # kept, and flagged
            meta["empty_reply"] = True
        content = parsed.content
        if result.done_reason == "length":
            meta["truncated"] = True
            if self.settings.trim_cut_replies and parsed.structured is None:
                content = complete_part(parsed.content)  # raw keeps every character
                if len(content) < len(parsed.content.rstrip()):
                    meta["trimmed"] = len(parsed.content.rstrip()) - len(content)
        if len(attempts) > 1 or (checks and not checks[kept].ok):
            meta["guard"] = {
                "attempts": len(attempts),
                "kept": kept,
                "checks": [c.as_meta(i) for i, c in enumerate(checks)],
            }
        record = TurnRecord(
            turn=turn,
            persona=speaker.persona,
            phase=speaker.phase,
            content=content,
            thinking=parsed.thinking,
            raw=result.text,
            cut=parsed.cut,
            structured=parsed.structured,
            meta=meta or None,
        )
        calls = [*chosen_by, *(call for call, _, _ in attempts)]
        graph = turn_graph(self.store, state.run_id, speaker, state.history, record)
        committed = self.store.commit_turn(state.run_id, record, calls, graph)
        utterance = utterance_of(record, committed.message_id)
        seconds = sum(call.wall_ns for call, _, _ in attempts) / 1e9
        done = TurnDone(
            utterance, result.usage, seconds, cut=parsed.cut,
            truncated=result.done_reason == "length", attempts=len(attempts), kept=kept,
        )
        return done, committed.totals

    def _prompt(self, state: RunState, speaker: TurnPlan) -> Prompt:
        """Rebuild: header, memory block (as of the last collapse), recent turns, instructions."""
        return build_prompt(
            scenario=self.loaded.scenario,
            personas=self.loaded.personas,
            history=state.history,
            speaker=speaker,
            layout=self.settings.layout,
            backend=self.backend,
            max_prompt_tokens=self.settings.num_ctx - self.reply_reserve,
            memory=self.collapser.block(state) if self.collapser is not None else None,
            rendered=self._rendered,
        )

    def _options(self, persona_name: str, *, turn: int | None = None) -> dict[str, Any]:
        """Scenario defaults, then the persona's own; the window always goes with them. A fresh
        dict each call (callers change it), its keys in the order they were always stored in."""
        fixed = self._fixed_options.get(persona_name)
        if fixed is None:
            fixed = self._fixed_options[persona_name] = persona_options(
                self.loaded, persona_name, self.settings.num_ctx
            )
        options, stop = dict(fixed[0]), list(fixed[1])
        if self.settings.seed is not None and turn is not None:
            options["seed"] = self.settings.seed + turn  # deterministic, yet not the same each turn
        options["stop"] = stop
        return options


def _finish_failed(store: Store, run_id: int, error: PersonaeError) -> None:
    """Mark the run failed; if the database refuses even that (a full disk), leave it: its
    process is about to end, so ``resume`` sees it as stale and continues it all the same."""
    try:
        store.finish_run(run_id, "failed", stop_reason="error", error=str(error))
    except StoreError:
        pass


def persona_options(
    loaded: LoadedScenario, persona_name: str, num_ctx: int
) -> tuple[dict[str, Any], list[str]]:
    """A persona's options except the per-turn seed, and its stop strings. They are the same on
    every turn, so the orchestrator works them out once per persona (two pydantic dumps and a
    sort cost ~50 µs, a tenth of a stored turn)."""
    persona = loaded.personas[persona_name]
    options: dict[str, Any] = {"num_predict": 200}
    options |= loaded.scenario.options.as_dict()
    options |= persona.options.as_dict()
    options["num_ctx"] = num_ctx
    others = [n for n in loaded.scenario.roster if n != persona_name]
    return options, sorted({*options.get("stop", []), *(f"\n{n}:" for n in others)})


def load_history(store: Store, run_id: int) -> list[Utterance]:
    return [
        utterance_of(
            TurnRecord(m.turn, m.persona, m.phase, m.content, m.thinking,
                       structured=m.structured, meta=m.meta),
            m.id,
        )
        for m in store.messages(run_id)
    ]
