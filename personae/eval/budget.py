"""The token budget of a comparison, per item.

The currency is **evaluated tokens**: the prompt tokens the server actually evaluated (a prefix
it reused from its cache is free) plus the tokens it generated, summed over every call an item's
runs made. That is the work the model did, so it is what "the same budget" must hold equal.

``--budget matched`` sets the budget from the deliberation: the median evaluated tokens per item
of the first ``crew``/``vote`` method given. ``--budget N`` sets it to N. Under a budget:

- ``sc`` draws K samples per item, K = max(1, ⌊budget / c⌋), where c is the median cost of one
  sample measured on this eval's own first samples (every item's sample 0 is drawn first and
  kept: nothing is spent on a pilot);
- ``single`` and ``cot`` are one call by definition and cannot spend more: the report shows their
  real cost beside the budget, which is the point of comparing them with a crew.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from personae.errors import UserError
from personae.eval.methods import MAX_SAMPLES, Method
from personae.eval.stats import median_tokens


def parse_budget(value: str | None) -> str | None:
    """``None``, ``matched`` or a positive token count as text; a UserError otherwise."""
    if value is None:
        return None
    value = value.strip().lower()
    if value == "matched":
        return value
    if value.isdigit() and int(value) > 0:
        return str(int(value))
    raise UserError(f"--budget {value}: give `matched` (the crew's median tokens per item) or a "
                    "number of evaluated tokens per item, e.g. --budget 800.")


def check_budget(budget: str | None, methods: Sequence[Method]) -> None:
    if budget == "matched" and not any(m.deliberates for m in methods):
        raise UserError("--budget matched takes the budget from a crew, and no crew is among the "
                        "methods. Add -m crew (or -m vote:SCENARIO), or give a number: --budget 800.")


def samples_for(budget_tokens: int, sample_costs: Sequence[int]) -> int:
    """K for self-consistency: as many samples as the budget holds at their median cost, at least
    one and at most MAX_SAMPLES."""
    cost = median_tokens([c for c in sample_costs if c > 0])
    if cost <= 0:
        return 1
    return max(1, min(MAX_SAMPLES, math.floor(budget_tokens / cost)))


def budget_from(tokens_per_item: Sequence[int]) -> int:
    """The matched budget: the deliberation's median evaluated tokens per item, rounded."""
    return int(round(median_tokens(tokens_per_item)))
