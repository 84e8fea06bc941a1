"""Choosing the backend: Ollama when a server answers, else the embedded model; or one named."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from personae.errors import BackendError, ModelNotFound, UserError
from personae.llm.base import Backend, Slotted

BACKENDS = ("auto", "ollama", "embedded", "openai")
DEFAULT_OLLAMA_MODEL = "llama3.2:3b"


def ollama_host() -> str:
    """``OLLAMA_HOST`` as a base URL (default 127.0.0.1:11434), or a UserError saying why the
    value cannot be one: the ollama client and httpx would fail on it with a bare ValueError."""
    given = os.environ.get("OLLAMA_HOST", "").strip()
    host = given or "127.0.0.1:11434"
    if "://" not in host:
        host = f"http://{host}"
    host = host.rstrip("/")
    problem = None
    try:
        parts = urlsplit(host)
        parts.port  # noqa: B018 - parsing the port is the check
        (parts.hostname or "").encode("idna")  # a label too long, or not a host name at all
    except ValueError as exc:  # UnicodeError is one
        problem = str(exc)
    else:
        if parts.scheme not in ("http", "https"):
            problem = f"the scheme must be http or https, not {parts.scheme!r}"
        elif not parts.hostname:
            problem = "it names no host"
        elif any(c.isspace() or not c.isprintable() for c in host):
            problem = "it contains a space or a control character"
        elif parts.path not in ("", "/") or parts.query or parts.fragment:
            # Ollama answers at the server's root: with a path every request would miss, and a
            # 404 would read as "model not pulled".
            problem = f"Ollama listens at the server's root, not at a path ({parts.path or '?' + parts.query})"
    if problem:
        raise UserError(
            f"OLLAMA_HOST={given!r} is not a server address ({problem}). Set it to host:port or "
            "a URL, e.g. 127.0.0.1:11434 or http://gpu-box:11434, or unset it."
        )
    return host


def check_model_flag(kind: str, model: str | None) -> None:
    """``--model`` given with ``--backend embedded`` must be a .gguf file: a name (an Ollama
    tag) would otherwise be ignored in favour of the bundled model without a word."""
    if kind == "embedded" and model and not model.endswith(".gguf"):
        raise UserError(
            f"--model {model!r} is not a .gguf file, and the embedded backend runs only GGUF "
            "models. Pass the path of a .gguf file, leave --model out to use the bundled "
            "SmolLM2-135M-Instruct, or choose --backend ollama for an Ollama model name."
        )


def ollama_answers(host: str, timeout: float = 0.5) -> bool:
    """True when an Ollama server answers ``/api/version`` within ``timeout`` seconds."""
    import httpx

    try:
        return httpx.get(f"{host}/api/version", timeout=timeout).status_code == 200
    except (httpx.HTTPError, httpx.InvalidURL, ValueError):
        return False


def slot_count(backend: Backend) -> int:
    """How many requests ``backend`` serves at once, each with its own cache: the embedded
    engine's slots; 1 for every server without slots (Ollama, OpenAI-compatible, replay...)."""
    return max(1, backend.slots) if isinstance(backend, Slotted) else 1


def pinned(backend: Backend, slot: int) -> Backend:
    """``backend`` with every call on slot ``slot`` (0 ≤ slot < slot_count), so one run keeps its
    cached prefix while other runs use the other slots; a backend without slots comes back
    unchanged, whatever ``slot`` is. The result shares the loaded model: close the original."""
    if slot_count(backend) == 1 or not isinstance(backend, Slotted):
        return backend
    if not 0 <= slot < backend.slots:
        raise ValueError(f"slot {slot} is not one of the backend's {backend.slots} slots (0 to {backend.slots - 1})")
    return backend.on_slot(slot)


def open_backend(
    kind: str,
    model: str | None,
    *,
    num_ctx: int | None = None,
    base_url: str | None = None,
    slots: int | None = None,
) -> Backend:
    """``model`` is an Ollama model name, a .gguf path for the embedded backend, or the name an
    OpenAI-compatible server knows (``base_url``, else ``OPENAI_BASE_URL``) for ``openai``.
    ``slots`` (the embedded engine's parallel slots; else PERSONAE_SLOTS, else 1) is ignored by
    the servers, which schedule their own."""
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
        host = ollama_host()  # before the ollama package is imported: it parses OLLAMA_HOST too
        from personae.llm.ollama import OllamaBackend

        return OllamaBackend(model or DEFAULT_OLLAMA_MODEL, host=host, num_ctx=num_ctx)
    from personae.llm.embedded import EmbeddedBackend

    gguf = model if model and model.endswith(".gguf") else None
    return EmbeddedBackend(gguf, num_ctx=num_ctx, slots=slots)


def check_model(backend: Backend) -> None:
    """Before a run exists: a server that does not answer, or does not have the model, is an
    error now — not a run row that fails at its first turn (and not after ``--interactive`` has
    asked for a line). Ollama is asked for the model (``/api/show``: 404 when it was never
    pulled, and the answer gives the window, so it is asked once); an OpenAI-compatible server
    that serves several models for its list. A server that answers the question with some other error is let through:
    the first call will say what is wrong, with retries."""
    try:
        if backend.name == "ollama":
            backend.context_length()
        elif backend.name == "openai":
            served = list(backend.list_models())  # type: ignore[attr-defined]
            # A server of one model (llama.cpp's, llama-cpp-python's) answers to any name: only a
            # server that chooses among several can lack the one asked for.
            if len(served) > 1 and backend.model not in served:
                where = getattr(backend, "base_url", "the server")
                raise ModelNotFound(
                    f"The server at {where} does not serve the model '{backend.model}'; it serves "
                    f"{', '.join(served)}. Pass one of them with --model.",
                    status=404,
                )
    except ModelNotFound:
        raise
    except BackendError as exc:
        if exc.status is None:  # no answer at all (refused, timed out): nothing can run
            raise
