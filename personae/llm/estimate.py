"""Token counts for servers without a tokenize endpoint (Ollama, OpenAI-compatible): estimated
from characters, calibrated on every reply, and rebuilt on resume (``llm/calibration.py``)."""

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


class EstimatedTokens:
    """The counting half of the ``Backend`` protocol for a backend that estimates: a backend
    inheriting this sets ``self._estimator`` and counts, and calibrates, through it."""

    _estimator: CharTokenEstimator

    def count_tokens(self, messages: tuple[ChatMessage, ...]) -> int:
        return self._estimator.estimate(messages)

    def count_text_tokens(self, text: str) -> int:
        return self._estimator.estimate_text(text)

    def calibrate(self, messages: tuple[ChatMessage, ...], prompt_tokens: int) -> None:
        """Learn from a stored call, as from a reply (``personae.llm.calibration``)."""
        self._estimator.calibrate(messages, prompt_tokens)
