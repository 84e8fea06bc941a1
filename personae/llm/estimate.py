"""Token counts for servers without a tokenize endpoint (Ollama, OpenAI-compatible): estimated
from characters, calibrated on every reply, and rebuilt on resume (``llm/calibration.py``); and
the window such a server is asked for."""

from __future__ import annotations

from dataclasses import dataclass

from personae.llm.base import ChatMessage


@dataclass
class CharTokenEstimator:
    """Tokens from characters, because Ollama has no tokenize endpoint.

    The ratio starts at 4 characters a token (English text in BPE vocabularies) and is calibrated
    once, on the first reply whose prompt is long enough to say more than its chat template (the
    scenario's goal, context and persona prompts set the language and style of the whole run).
    Chat templates add a few tokens per message, counted separately.

    Once, not continuously: prompt budgets, collapse groups and the memory block built after each
    collapse all follow the ratio, so it must be a function of what the database holds, or a
    resumed run builds other prompts than an uninterrupted one. A ratio that moved on every reply
    would make a memory block built after a resume differ from the one built right after its
    collapse. The backends calibrate on exactly the ``prompt_tokens`` a call row stores (measured,
    or our estimate where the server did not say), and ``personae.llm.calibration`` feeds the
    stored rows of a resumed run to a fresh estimator.
    """

    chars_per_token: float = 4.0
    per_message: int = 4  # role markers and separators a chat template adds to each message
    per_prompt: int = 3  # the assistant header that opens the reply
    calibrated: bool = False  # set by the first calibration; later ones change nothing

    def estimate_text(self, text: str) -> int:
        return round(len(text) / self.chars_per_token) if text else 0

    def estimate(self, messages: tuple[ChatMessage, ...]) -> int:
        overhead = self.per_prompt + self.per_message * len(messages)
        return overhead + self.estimate_text("".join(m.content for m in messages))

    def calibrate(self, messages: tuple[ChatMessage, ...], prompt_tokens: int) -> None:
        """Adopt the ratio the first long enough prompt shows; short prompts are mostly template,
        so they are skipped."""
        if self.calibrated:
            return
        chars = sum(len(m.content) for m in messages)
        text_tokens = prompt_tokens - self.per_prompt - self.per_message * len(messages)
        if chars >= 200 and text_tokens > 0:
            self.chars_per_token = min(8.0, max(1.0, chars / text_tokens))
            self.calibrated = True


MAX_AUTO_NUM_CTX = 8192  # a model's trained window can be 128k; the KV cache for it would not fit
FALLBACK_NUM_CTX = 4096


class RemoteModel:
    """What the backends of a model server without a tokenizer share (Ollama, OpenAI-compatible):
    token counts through ``self._estimator``, and the window to ask for when none is given. A
    backend inheriting this sets ``_estimator`` and ``_num_ctx`` and has ``context_length``."""

    _estimator: CharTokenEstimator
    _num_ctx: int | None

    def context_length(self) -> int | None:
        raise NotImplementedError

    @property
    def num_ctx(self) -> int:
        """The window sent as ``num_ctx``: the model's trained one, capped, else 4,096."""
        if self._num_ctx is None:
            trained = self.context_length()
            self._num_ctx = min(trained, MAX_AUTO_NUM_CTX) if trained else FALLBACK_NUM_CTX
        return self._num_ctx

    def count_tokens(self, messages: tuple[ChatMessage, ...]) -> int:
        return self._estimator.estimate(messages)

    def count_text_tokens(self, text: str) -> int:
        return self._estimator.estimate_text(text)

    def calibrate(self, messages: tuple[ChatMessage, ...], prompt_tokens: int) -> None:
        """Learn from a stored call, as from a reply (``personae.llm.calibration``)."""
        self._estimator.calibrate(messages, prompt_tokens)
