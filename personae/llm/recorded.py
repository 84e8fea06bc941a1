"""A backend that answers from a run's recorded model calls, so a run can be re-executed without
a model: to check that the code still builds the same prompts (``personae replay``), and to copy
the first turns of a run into a fork.

Every call the orchestrator makes is matched against the recorded ``llm_calls`` of its purpose
(``turn``, ``select``, ``collapse`` …) in recorded order: the prompt it built must hash exactly as
the recorded ``prompt_hash`` (``llm/fingerprint.py``: messages and JSON schema). A match is
answered with the recorded reply and usage. The first mismatch is a ``Divergence``: in ``strict``
mode it stops the replay (``ReplayDiverged``); otherwise it is noted, and the call is answered with
the reply recorded for the call that was expected next, so the replay goes on with the original
transcript and can list every call that differs.

Failed calls (no reply recorded) are skipped; a reply that was recorded but rejected (a collapse
answer that failed validation, ``error`` set) is answered again, since the code asks again. So are calls left by an attempt that a crash
interrupted, when the same purpose and turn was then asked again with the same prompt (a resumed
run re-asks what the crash lost).

Token counts decide what fits in the window, what the memory block holds and when to collapse,
so they must be the original backend's: a prompt that was sent counts as recorded; anything else
is counted the way the original backend counts — for ``embedded`` runs with the GGUF's own
tokenizer and chat template, read without the model's weights (``vocab_only``); for Ollama and
OpenAI-compatible runs with the character estimator, calibrated on the recorded prompts; for
``scripted`` runs by whitespace.
"""

from __future__ import annotations

import importlib.util

import difflib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from personae.errors import BackendError, PersonaeError
from personae.llm.base import (
    Backend,
    ChatMessage,
    ChatRequest,
    ChatResult,
    TokenCallback,
    Usage,
)
from personae.llm.fingerprint import prompt_hash


class RecordedCall(Protocol):
    """What a replay reads of one stored model call: the fields of an ``llm_calls`` row.

    A protocol rather than the store's ORM class, so that ``llm`` imports nothing above it; the
    store's ``RecordedCall`` rows fit it as they are.
    """

    @property
    def id(self) -> int: ...
    @property
    def purpose(self) -> str: ...
    @property
    def turn(self) -> int | None: ...
    @property
    def persona(self) -> str | None: ...
    @property
    def backend(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def options(self) -> dict[str, Any]: ...
    @property
    def prompt(self) -> list[dict[str, str]]: ...
    @property
    def prompt_hash(self) -> str: ...
    @property
    def schema(self) -> dict[str, Any] | None: ...
    @property
    def response(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def done_reason(self) -> str | None: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def evaluated_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def load_ns(self) -> int: ...
    @property
    def prompt_eval_ns(self) -> int: ...
    @property
    def eval_ns(self) -> int: ...
    @property
    def total_ns(self) -> int: ...


class ReplayDiverged(PersonaeError):
    """A prompt differs from the recorded one (strict mode)."""

    def __init__(self, divergence: Divergence) -> None:
        super().__init__(divergence.describe())
        self.divergence = divergence


class ReplayExhausted(PersonaeError):
    """The orchestrator asked for a call the recording does not have."""

    def __init__(self, request: ChatRequest, answered: int) -> None:
        super().__init__(
            f"The recording has no more model calls (all {answered} were used), yet the run "
            "asked for another."
        )
        self.request = request
        self.answered = answered


@dataclass(frozen=True)
class Divergence:
    """One call whose prompt differs from the recording."""

    purpose: str
    turn: int | None
    persona: str | None
    expected_hash: str
    actual_hash: str
    expected: tuple[ChatMessage, ...]
    actual: tuple[ChatMessage, ...]
    options_changed: tuple[str, ...] = ()  # names of options sent differently
    expected_schema: dict[str, Any] | None = None
    actual_schema: dict[str, Any] | None = None

    def describe(self) -> str:
        who = f" ({self.persona})" if self.persona else ""
        where = f"turn {self.turn}" if self.turn is not None else "a call"
        what = "prompt" if self.expected_hash != self.actual_hash else "options"
        return f"{where}{who}, {self.purpose} call: the {what} differs from the recorded one"

    def diff(self, limit: int = 24) -> list[str]:
        """A short unified diff of the recorded prompt (-) against the one built now (+)."""
        if self.expected_hash == self.actual_hash:
            return [f"options changed: {', '.join(self.options_changed)}"]
        lines = list(
            difflib.unified_diff(
                _lines(self.expected), _lines(self.actual), "recorded", "replayed", n=1, lineterm=""
            )
        )
        if self.expected_schema != self.actual_schema:
            lines += list(
                difflib.unified_diff(
                    _schema_lines(self.expected_schema), _schema_lines(self.actual_schema),
                    "recorded schema", "replayed schema", n=0, lineterm="",
                )
            )
        if len(lines) > limit:
            lines = lines[:limit] + [f"… {len(lines) - limit} more diff lines"]
        return lines


@dataclass(frozen=True)
class Answered:
    """One call the replay answered: what was recorded, and whether the new prompt matched it."""

    call_id: int
    purpose: str
    turn: int | None
    persona: str | None
    prompt_hash: str
    matched: bool


@dataclass
class ReplayBackend:
    """Answers from ``calls`` (rows of ``llm_calls``, any order).

    A failed turn or selection call ended its run, and the resumed run asked again: those are
    ignored. A failed collapse call was handled — the collapse went on to its fallback, and the
    run with it — so it is replayed as the same failure (``handled_failure``).

    ``backend_name`` and ``model`` say which backend produced the recording, to imitate its
    token counting for prompts the recording does not contain.
    """

    calls: Sequence[RecordedCall]
    backend_name: str = "scripted"
    model: str = "replay"
    strict: bool = True
    gguf: str | None = None  # the original model file, for its tokenizer
    name: str = "replay"
    answered: list[Answered] = field(default_factory=list)
    divergences: list[Divergence] = field(default_factory=list)

    def __post_init__(self) -> None:
        usable = sorted(
            (c for c in self.calls if c.response is not None or handled_failure(c)),
            key=lambda c: c.id,
        )
        self._queues: dict[str, deque[RecordedCall]] = {}
        for call in usable:
            self._queues.setdefault(call.purpose, deque()).append(call)
        self._tokens_by_hash: dict[str, int] = {
            c.prompt_hash: c.prompt_tokens for c in usable if c.response is not None
        }
        self._counter: _Counter | None = None
        self.num_ctx = max((int(c.options.get("num_ctx") or 0) for c in usable), default=0) or None

    # -- protocol ---------------------------------------------------------------------------
    def chat(self, request: ChatRequest, on_token: TokenCallback | None = None) -> ChatResult:
        actual = prompt_hash(request.messages, request.schema)
        call = self._take_matching(actual)
        matched = call is not None
        if call is None:
            expected = self._next_expected()
            if expected is None:
                raise ReplayExhausted(request, len(self.answered))
            divergence = _divergence(expected, request, actual)
            self.divergences.append(divergence)
            if self.strict:
                raise ReplayDiverged(divergence)
            call = self._queues[expected.purpose].popleft()
        else:
            changed = _options_changed(call.options, request.options)
            if changed:
                matched = False
                divergence = _divergence(call, request, actual, changed)
                self.divergences.append(divergence)
                if self.strict:
                    raise ReplayDiverged(divergence)
        self.answered.append(
            Answered(call.id, call.purpose, call.turn, call.persona, call.prompt_hash, matched)
        )
        if call.response is None:  # a handled failure: fail the same way (no usage to learn)
            raise BackendError(call.error or "the recorded call failed")
        self._observe(request.messages, call.prompt_tokens)
        text = call.response or ""
        if on_token and text:
            on_token(text)
        usage = Usage(
            prompt_tokens=call.prompt_tokens,
            evaluated_tokens=call.evaluated_tokens,
            completion_tokens=call.completion_tokens,
            total_ns=call.total_ns,
            load_ns=call.load_ns,
            prompt_eval_ns=call.prompt_eval_ns,
            eval_ns=call.eval_ns,
        )
        return ChatResult(text=text, usage=usage, model=call.model, done_reason=call.done_reason or "stop")

    def count_tokens(self, messages: tuple[ChatMessage, ...]) -> int:
        known = self._tokens_by_hash.get(prompt_hash(messages, None))
        if known is not None:
            return known
        return self._count(messages)

    def count_text_tokens(self, text: str) -> int:
        # Budgets use it (the memory block, collapse groups), so it must count as the original.
        return self._counter_now().text(text)

    def context_length(self) -> int | None:
        return self.num_ctx

    def close(self) -> None:
        pass

    # -- state ------------------------------------------------------------------------------
    @property
    def remaining(self) -> list[RecordedCall]:
        """Recorded calls not used yet, in recorded order."""
        return sorted((c for q in self._queues.values() for c in q), key=lambda c: c.id)

    @property
    def exhausted(self) -> bool:
        return not any(self._queues.values())

    # -- internals --------------------------------------------------------------------------
    def _take_matching(self, actual: str) -> RecordedCall | None:
        """The next recorded call of some purpose whose prompt hashes as ``actual``.

        A head that does not match is skipped only when a later call of the same purpose and turn
        matches: the remains of an attempt a crash cut short.
        """
        for queue in sorted(self._queues.values(), key=lambda q: q[0].id if q else 1 << 62):
            if not queue:
                continue
            if queue[0].prompt_hash == actual:
                return queue.popleft()
            turn = queue[0].turn
            for index, later in enumerate(queue):
                if later.turn != turn:
                    break
                if later.prompt_hash == actual:
                    for _ in range(index):
                        queue.popleft()
                    return queue.popleft()
        return None

    def _next_expected(self) -> RecordedCall | None:
        heads = [q[0] for q in self._queues.values() if q]
        return min(heads, key=lambda c: c.id) if heads else None

    def _counter_now(self) -> _Counter:
        if self._counter is None:
            self._counter = _counter_for(self.backend_name, self.gguf)
        return self._counter

    def _count(self, messages: tuple[ChatMessage, ...]) -> int:
        return self._counter_now().prompt(messages)

    def _observe(self, messages: tuple[ChatMessage, ...], prompt_tokens: int) -> None:
        """Let an estimating counter learn from a measured prompt, as the live backend did."""
        counter = self._counter_now()
        if counter.calibrate is not None and prompt_tokens:
            counter.calibrate(messages, prompt_tokens)


def handled_failure(call: RecordedCall) -> bool:
    """A failed call the run went on from: a collapse that fell back (``collapse._ask``)."""
    return call.response is None and call.purpose == "collapse" and bool(call.error)


def replay_backend_for(calls: Iterable[RecordedCall], *, strict: bool = True, upto_id: int | None = None) -> ReplayBackend:
    """A replay of ``calls`` (optionally only those up to ``upto_id``), imitating their backend."""
    rows = [c for c in calls if upto_id is None or c.id <= upto_id]
    answered = [c for c in rows if c.response is not None]
    first = answered[0] if answered else None
    backend_name = first.backend if first else "scripted"
    model = first.model if first else "replay"
    gguf = model if model.endswith(".gguf") else None
    return ReplayBackend(rows, backend_name=backend_name, model=model, strict=strict, gguf=gguf)


class ThenLive:
    """Answers from a replay until the recorded call ``last_id`` has been answered, then from a
    live backend.

    This is how a fork copies the parent's first turns through the ordinary run loop (so every
    table the loop writes — messages, calls, memory — is filled the same way) and goes on live.
    """

    def __init__(self, replay: ReplayBackend, live: Backend, last_id: int | None) -> None:
        self.replay = replay
        self.live = live
        self.last_id = last_id
        self.switched = False
        # What the run loop records on each call row: "replay" for copied calls, then the live one.
        self.name = replay.name
        self.model = replay.model
        if last_id is None:
            self._switch()

    @property
    def _current(self) -> Backend:
        return self.live if self.switched else self.replay

    def _switch(self) -> None:
        self.switched = True
        self.name, self.model = self.live.name, self.live.model

    def chat(self, request: ChatRequest, on_token: TokenCallback | None = None) -> ChatResult:
        if self.switched:
            return self.live.chat(request, on_token=on_token)
        try:
            return self.replay.chat(request, on_token=on_token)
        finally:
            answered = self.replay.answered
            if self.replay.exhausted or (answered and answered[-1].call_id >= (self.last_id or 0)):
                self._switch()

    def count_tokens(self, messages: tuple[ChatMessage, ...]) -> int:
        return self._current.count_tokens(messages)

    def count_text_tokens(self, text: str) -> int:
        return self._current.count_text_tokens(text)

    def context_length(self) -> int | None:
        return self.live.context_length()

    def close(self) -> None:
        self.live.close()

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.live, attribute)


# ------------------------------------------------------------------------------------ helpers


def _lines(messages: Sequence[ChatMessage]) -> list[str]:
    out: list[str] = []
    for m in messages:
        out.append(f"[{m.role}]")
        out.extend(m.content.splitlines() or [""])
    return out


def _schema_lines(schema: dict[str, Any] | None) -> list[str]:
    import json

    return json.dumps(schema, indent=1, sort_keys=True).splitlines()


def _messages(prompt: Sequence[dict[str, str]]) -> tuple[ChatMessage, ...]:
    return tuple(ChatMessage(m.get("role", "user"), m.get("content", "")) for m in prompt)  # type: ignore[arg-type]


def _divergence(
    call: RecordedCall, request: ChatRequest, actual: str, options_changed: Sequence[str] = ()
) -> Divergence:
    return Divergence(
        purpose=call.purpose,
        turn=call.turn,
        persona=call.persona,
        expected_hash=call.prompt_hash,
        actual_hash=actual,
        expected=_messages(call.prompt),
        actual=request.messages,
        options_changed=tuple(options_changed),
        expected_schema=call.schema,
        actual_schema=request.schema,
    )


def _options_changed(recorded: dict[str, Any], sent: dict[str, Any]) -> list[str]:
    """Options whose value differs; compared as JSON would store them (lists, not tuples)."""
    import json

    def plain(value: Any) -> Any:
        return json.loads(json.dumps(value, default=str))

    sent_plain = plain(sent)
    keys = set(recorded) | set(sent_plain)
    return sorted(k for k in keys if recorded.get(k) != sent_plain.get(k))


class _Counter:
    """Token counting that imitates a backend: whole prompts and pieces of text."""

    def __init__(
        self,
        prompt: Callable[[tuple[ChatMessage, ...]], int],
        text: Callable[[str], int],
        calibrate: Callable[[tuple[ChatMessage, ...], int], None] | None = None,
    ) -> None:
        self.prompt = prompt
        self.text = text
        self.calibrate = calibrate


def _counter_for(backend_name: str, gguf: str | None) -> _Counter:
    if backend_name == "embedded":
        counter = _gguf_counter(gguf)
        if counter is not None:
            return counter
    if backend_name == "scripted":
        from personae.llm.scripted import ScriptedBackend

        scripted = ScriptedBackend()
        return _Counter(scripted.count_tokens, scripted.count_text_tokens)
    # Ollama and OpenAI-compatible servers: the character estimator, calibrated on the recorded
    # prompt sizes as the run goes, as the Ollama backend does with its replies.
    from personae.llm.estimate import CharTokenEstimator

    estimator = CharTokenEstimator()
    return _Counter(estimator.estimate, estimator.estimate_text, estimator.calibrate)


def _gguf_counter(gguf: str | None) -> _Counter | None:
    """The model's own tokenizer and chat template, as the embedded backend counts (the engine
    loaded with a small window: only its tokenizer is asked)."""
    if importlib.util.find_spec("xllamacpp") is None:
        return None
    from personae.llm.chat_template import prompt_token_ids
    from personae.llm.embedded import Engine, resolve_model_path

    try:
        engine = Engine(resolve_model_path(gguf), num_ctx=512)
    except Exception:  # noqa: BLE001 - no tokenizer: fall back to the estimate
        return None

    def tokens(text: str) -> int:  # as EmbeddedBackend counts: text is plain text
        return len(engine.tokenize(text, False))

    def prompt(messages: tuple[ChatMessage, ...]) -> int:
        return len(prompt_token_ids(engine.tokenize, engine.render, messages))

    return _Counter(prompt, tokens)
