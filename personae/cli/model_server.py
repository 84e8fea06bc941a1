"""The model server as the run commands open it: retrying transient faults (saying so on stderr)
and, in a terminal without --quiet, with a progress line while the model loads and while each
call waits for its first token."""

from __future__ import annotations

from typing import Any

from personae.cli.output import err, out, shown


def open_model_server(
    kind: str, model: str | None, *, num_ctx: int | None, base_url: str | None,
    retries: int | None, retry_delay: float | None, quiet: bool, slots: int | None = None,
) -> Any:
    """The backend ``kind`` serving ``model``, wrapped for the terminal as the module says."""
    from personae.cli.progress import Progress, ProgressBackend
    from personae.llm.backends import check_model, open_backend

    progress = Progress(out) if out.is_terminal and not quiet else None
    if progress is None:
        llm = open_backend(kind, model, num_ctx=num_ctx, base_url=base_url, slots=slots)
        checked(llm, check_model)
        return with_retries(llm, retries, retry_delay)
    opening = {"ollama": "connecting to Ollama", "openai": "connecting to the server"}
    with progress.during(opening.get(kind, "loading the model")):
        llm = open_backend(kind, model, num_ctx=num_ctx, base_url=base_url, slots=slots)
        checked(llm, check_model)
    return ProgressBackend(with_retries(llm, retries, retry_delay), progress)


def checked(llm: Any, check: Any) -> None:
    """The model check before any run row exists; the server is closed when it fails."""
    try:
        check(llm)
    except BaseException:
        llm.close()
        raise


def with_retries(llm: Any, retries: int | None, retry_delay: float | None) -> Any:
    """Wrap a backend so transient server faults are retried, saying so on stderr."""
    from personae.llm.retry import RetryingBackend, RetryPolicy

    policy = RetryPolicy.from_env(attempts=retries, base_delay=retry_delay)

    def tell(attempt: int, seconds: float, error: Any) -> None:
        if error is None:
            err.print("[yellow]The model's reply was empty; asking once more.[/]")
        else:
            err.print(
                f"[yellow]{shown(str(error))} Retrying in {seconds:.1f} s "
                f"(attempt {attempt + 1} of {policy.attempts}).[/]"
            )

    return RetryingBackend(llm, policy, on_retry=tell)

