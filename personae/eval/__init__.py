"""``personae eval``: does a crew beat one model call at the same token budget, on checkable tasks?

A package above the orchestrator: it builds scenarios, runs them through the library like any
other run (so every call is stored, replayable and shown by ``personae show``), reads an answer
out of each, checks it, and compares methods with proper intervals. Nothing below imports it.

``tasks`` (JSONL files and reasoning-gym) → ``methods`` (what each method runs) → ``runner``
(the runs, the answers) → ``budget`` (matched per-item budgets) → ``stats`` (Wilson, McNemar,
flips) → ``storage`` (the eval tables) → ``report`` (rows for table/json/csv).
"""
