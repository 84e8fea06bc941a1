"""Choosing the backend: Ollama when a server answers, else the embedded model; or one named."""

from __future__ import annotations

import os

from personae.errors import UserError
from personae.llm.base import Backend

BACKENDS = ("auto", "ollama", "embedded", "openai")
DEFAULT_OLLAMA_MODEL = "llama3.2:3b"


def ollama_host() -> str:
    host = os.environ.get("OLLAMA_HOST", "").strip() or "127.0.0.1:11434"
    if "://" not in host:
        host = f"http://{host}"
    return host.rstrip("/")


def ollama_answers(host: str, timeout: float = 0.5) -> bool:
    """True when an Ollama server answers ``/api/version`` within ``timeout`` seconds."""
    import httpx

    try:
        return httpx.get(f"{host}/api/version", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def open_backend(
    kind: str, model: str | None, *, num_ctx: int | None = None, base_url: str | None = None
) -> Backend:
    """``model`` is an Ollama model name, a .gguf path for the embedded backend, or the name an
    OpenAI-compatible server knows (``base_url``, else ``OPENAI_BASE_URL``) for ``openai``."""
    if kind not in BACKENDS:
        raise UserError(f"Unknown backend '{kind}'. Choose one of: {', '.join(BACKENDS)}.")
    if base_url and kind != "openai":
        raise UserError(f"--base-url only applies to --backend openai (not '{kind}').")
    if kind == "openai":
        from personae.llm.openai_compat import open_openai

        return open_openai(model, base_url=base_url, num_ctx=num_ctx)
    if kind == "auto":
        looks_like_gguf = bool(model and model.endswith(".gguf"))
        kind = "ollama" if not looks_like_gguf and ollama_answers(ollama_host()) else "embedded"
    if kind == "ollama":
        from personae.llm.ollama import OllamaBackend

        return OllamaBackend(model or DEFAULT_OLLAMA_MODEL, host=ollama_host(), num_ctx=num_ctx)
    from personae.llm.embedded import EmbeddedBackend

    gguf = model if model and model.endswith(".gguf") else None
    return EmbeddedBackend(gguf, num_ctx=num_ctx)
