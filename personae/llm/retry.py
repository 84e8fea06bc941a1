"""Retrying a model server's passing faults, so a long run survives an Ollama restart.

``RetryingBackend`` wraps any ``Backend``. A ``BackendError`` marked ``transient`` (connection
refused, a timeout, HTTP 5xx, 408/429, a stream cut off before its last chunk) is tried again after
an exponential backoff with jitter; anything else (a model that is not pulled, a prompt larger than
the window, another 4xx) is permanent and goes straight up, where the run loop marks the run
``failed`` — every turn committed before stays, and ``personae resume`` continues once the cause
is fixed.

An empty reply (nothing but whitespace) is asked for once more, because small models now and then
emit the end token first; if the second reply is empty too, it is returned, and the run loop
commits it as an empty turn flagged ``{"empty_reply": true}`` in ``messages.meta``. Retrying
forever would stall the run on a persona the model cannot play.

The waiting is tenacity's (``tenacity.Retrying``: stop after the attempts, wait, sleep, tell);
what is Personae's own is the policy: which faults are transient, the wait's formula, the empty
reply's one extra try, the settings. A server that says how long to wait (``Retry-After`` on a
429 or 503, read by the backends into ``BackendError.retry_after``) is believed up to
``RETRY_AFTER_CAP`` seconds: the wait is then the longer of its word and our backoff.

Settings come from the command line (``--retries``, ``--retry-delay``), else from the environment
(``PERSONAE_RETRIES``, ``PERSONAE_RETRY_DELAY``, ``PERSONAE_RETRY_MAX_DELAY``), else the defaults
below. They are not scenario fields: how flaky a server is belongs to the machine, not to the
deliberation.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception

from personae.errors import BackendError, UserError
from personae.llm.base import (
    Backend,
    ChatMessage,
    ChatRequest,
    ChatResult,
    Slotted,
    TokenCallback,
)

DEFAULT_ATTEMPTS = 5
DEFAULT_BASE_DELAY = 1.0
DEFAULT_MAX_DELAY = 30.0
ENV_ATTEMPTS = "PERSONAE_RETRIES"
ENV_BASE_DELAY = "PERSONAE_RETRY_DELAY"
ENV_MAX_DELAY = "PERSONAE_RETRY_MAX_DELAY"
RETRY_AFTER_CAP = 120.0  # seconds: a server asking for longer is waited on this long, then asked
RETRY_AFTER_STATUS = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` counts every try, the first included (1 = never retry).

    The wait before try ``n + 1`` is ``min(max_delay, base_delay * 2 ** (n - 1))``, of which a
    random half is dropped ("equal jitter"), so runs sharing one server do not retry in lockstep
    yet never retry at once.
    """

    attempts: int = DEFAULT_ATTEMPTS
    base_delay: float = DEFAULT_BASE_DELAY
    max_delay: float = DEFAULT_MAX_DELAY

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise UserError(f"Retry attempts must be at least 1 (got {self.attempts}).")
        for name, value in (("retry delay", self.base_delay), ("maximum retry delay", self.max_delay)):
            if not math.isfinite(value) or value < 0:  # NaN compares false to everything
                raise UserError(
                    f"The {name} must be a number of seconds, 0 or more (got {value!r})."
                )

    def delay(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``failed_attempts``-th failure."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failed_attempts - 1))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        attempts: int | None = None,
        base_delay: float | None = None,
        max_delay: float | None = None,
    ) -> RetryPolicy:
        """Explicit values (the command line) win over the environment, which wins over defaults."""
        env = os.environ if env is None else env
        return cls(
            attempts=attempts if attempts is not None else _env_number(env, ENV_ATTEMPTS, int, DEFAULT_ATTEMPTS),
            base_delay=base_delay if base_delay is not None else _env_number(env, ENV_BASE_DELAY, float, DEFAULT_BASE_DELAY),
            max_delay=max_delay if max_delay is not None else _env_number(env, ENV_MAX_DELAY, float, DEFAULT_MAX_DELAY),
        )


RetryCallback = Callable[[int, float, BackendError | None], None]
"""Called before each wait: (attempt that failed, seconds to wait, the error or None if empty)."""


class RetryingBackend:
    """A Backend that retries the transient faults of the one it wraps (see the module docstring).

    Everything else (``name``, ``model``, ``num_ctx``, token counting, ``has_model``…) is the
    wrapped backend's, so the run records which server really answered.
    """

    def __init__(
        self,
        inner: Backend,
        policy: RetryPolicy | None = None,
        *,
        on_retry: RetryCallback | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.inner = inner
        self.policy = policy or RetryPolicy()
        self.on_retry = on_retry
        self._sleep = sleep
        self._rng = rng

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def slots(self) -> int:
        return self.inner.slots if isinstance(self.inner, Slotted) else 1

    def on_slot(self, slot: int) -> RetryingBackend:
        """The wrapped backend on one slot (see ``backends.pinned``), retried alike."""
        inner = self.inner.on_slot(slot) if isinstance(self.inner, Slotted) else self.inner
        return RetryingBackend(inner, self.policy, on_retry=self.on_retry, sleep=self._sleep, rng=self._rng)

    def __getattr__(self, attribute: str) -> Any:
        # Only reached for attributes this class lacks: num_ctx, has_model, list_models, ...
        return getattr(self.inner, attribute)

    def chat(self, request: ChatRequest, on_token: TokenCallback | None = None) -> ChatResult:
        started = time.monotonic()
        empties = 0  # an empty reply is asked for once more; that try uses up no attempt

        def attempt() -> ChatResult:
            nonlocal empties
            result = self.inner.chat(request, on_token=on_token)
            if not result.text.strip() and empties == 0:
                empties += 1
                raise _EmptyReply(result)
            return result

        def stop(state: RetryCallState) -> bool:
            return state.attempt_number - empties >= self.policy.attempts

        def gave_up(state: RetryCallState) -> ChatResult:
            exc = state.outcome.exception() if state.outcome is not None else None
            assert isinstance(exc, BackendError)  # only transient faults are retried
            raise _gave_up(exc, state.attempt_number - empties, time.monotonic() - started) from exc

        retrying = Retrying(
            retry=retry_if_exception(_retried),
            stop=stop,
            wait=lambda state: self._delay(state, empties),
            sleep=self._sleep,
            before_sleep=lambda state: self._tell(state, empties),
            retry_error_callback=gave_up,
            reraise=True,
        )
        return retrying(attempt)

    def _delay(self, state: RetryCallState, empties: int) -> float:
        error = _error_of(state)
        if error is None:  # an empty reply: at once
            return 0.0
        seconds = self.policy.delay(state.attempt_number - empties, self._rng)
        if error.retry_after is not None and error.status in RETRY_AFTER_STATUS:
            seconds = max(seconds, min(error.retry_after, RETRY_AFTER_CAP))
        return seconds

    def _tell(self, state: RetryCallState, empties: int) -> None:
        if self.on_retry is None:
            return
        error = _error_of(state)
        seconds = state.upcoming_sleep
        if error is None:
            self.on_retry(1, 0.0, None)
        else:
            self.on_retry(state.attempt_number - empties, seconds, error)

    def count_tokens(self, messages: tuple[ChatMessage, ...]) -> int:
        return self.inner.count_tokens(messages)

    def count_text_tokens(self, text: str) -> int:
        return self.inner.count_text_tokens(text)

    def context_length(self) -> int | None:
        return self.inner.context_length()

    def close(self) -> None:
        self.inner.close()


class _EmptyReply(Exception):
    """An empty reply, raised inside the retry loop so that tenacity asks once more."""

    def __init__(self, result: ChatResult) -> None:
        super().__init__("empty reply")
        self.result = result


def _retried(exc: BaseException) -> bool:
    """Personae's policy of what is worth another try."""
    return isinstance(exc, _EmptyReply) or (isinstance(exc, BackendError) and exc.transient)


def _error_of(state: RetryCallState) -> BackendError | None:
    exc = state.outcome.exception() if state.outcome is not None else None
    return exc if isinstance(exc, BackendError) else None


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header as seconds from now: a number of seconds or an HTTP date. None
    for anything else (a server's header is untrusted: no NaN, no negative, no garbage)."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _gave_up(exc: BackendError, attempts: int, seconds: float) -> BackendError:
    message = str(exc).rstrip()
    if attempts > 1:
        message += f" (Gave up after {attempts} attempts over {seconds:.0f} s.)"
    return type(exc)(message, transient=True, status=exc.status)


def _env_number(env: Mapping[str, str], key: str, kind: type, default: Any) -> Any:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        word = "a whole number" if kind is int else "a number of seconds"
        raise UserError(f"The environment variable {key}={raw!r} must be {word}.") from None
