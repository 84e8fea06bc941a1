"""Collapse→rebuild: keeping a long deliberation inside the served window without forgetting.

Before each turn the run loop asks ``Collapser.before_turn``. When the next prompt would pass
``collapse.at_fraction`` of the window (or ``every_turns`` have passed, or a phase ended), the
turns since the last collapse — all but the last ``keep_recent`` — are handed to the summarizer
persona, which answers under a JSON schema (constrained decoding) with a summary, facts,
decisions and open questions, each citing its turns (``summarizer.py``; an answer that fails twice
gives way to a deterministic extractive collapse, so a collapse never stops a run). A span too
long for one call is collapsed in chunks, each its own summary; when a level holds more than
``fan_in`` summaries they are merged into one a level up, so memory grows like a tree
(``collapser.py``).

Everything a collapse makes — nodes, edges, closed items (``edit.py``) and its ``llm_calls`` rows
(purpose ``collapse``) — is committed in one transaction, and all collapse state is read back from
the database (``memory/view.py``), so a resumed run continues exactly here. The budgets all come
from the served window (``budget.py``).
"""

from personae.orchestrator.collapse.budget import Budget
from personae.orchestrator.collapse.collapser import Collapser, make_collapser

__all__ = ["Budget", "Collapser", "make_collapser"]
