"""The errors Personae raises on purpose.

Only the CLI turns these into one-paragraph messages and exit codes; everywhere else they travel as
exceptions. A bug is any other exception, and it keeps its traceback (``PERSONAE_DEBUG=1`` shows it
at the CLI edge too).
"""

from __future__ import annotations


class PersonaeError(Exception):
    """Base of the errors a user can act on; ``exit_code`` is what the CLI returns for it."""

    exit_code = 1


class UserError(PersonaeError):
    """The user's own input is wrong (a file, a flag, a name): exit 2, and say how to fix it."""

    exit_code = 2


class ConfigError(UserError):
    """A persona or scenario file is invalid; the message names the file, line, field and fix."""


class ConfigProblems(ConfigError):
    """Every problem found in one file (and the files it names), each its own one-paragraph
    ``ConfigError`` in file order, so a user fixes them all in one pass; ``problems`` keeps them
    apart for callers that show them one by one (the CLI prints each, then the count)."""

    def __init__(self, problems: list[ConfigError], label: str) -> None:
        self.problems = tuple(problems)
        self.summary = f"{len(problems)} problems in {label}."
        super().__init__("\n\n".join(str(p) for p in problems) + "\n\n" + self.summary)
        # Where the first one is, for callers that point an editor at a spot (as on one error).
        for name in ("file", "line", "column", "field"):
            setattr(self, name, getattr(problems[0], name, None))


class BackendError(PersonaeError):
    """The model server failed. ``transient`` faults are worth retrying; the rest end the run."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.retry_after = retry_after  # seconds the server asked us to wait (Retry-After)


class ModelNotFound(BackendError):
    """The server answers but does not have the model (Ollama: not pulled)."""


class StoreError(PersonaeError):
    """The database cannot be opened or written (bad path, newer schema, locked for too long)."""


class StoreConflict(StoreError):
    """Another process wrote to the same run at the same moment: the run is that process's, so
    this one must not mark it failed on its way out."""


class DatabaseMoved(StoreError):
    """The database file was deleted or replaced while a run wrote to it: nothing more may be
    written through this store, not even the run's end (it would land in another file)."""
