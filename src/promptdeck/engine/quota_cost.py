"""A call's worst-case cost, reserved on its budgets before the call (docs/governance.md).

Input tokens are estimated from the rendered messages (`CHARS_PER_TOKEN`), output is the call's
`max_tokens` (the version's parameter, or the caller's override; else a default setting), at
the price the run will be charged at (`PriceList.charged`). Of a variant's model and its
fallbacks, the dearest counts: any of them may answer.
"""

from __future__ import annotations

import math

from promptdeck.domain.prices import Price
from promptdeck.engine.invocation import CHARS_PER_TOKEN, Candidate
from promptdeck.engine.pricing import PriceList

DEFAULT_MAX_TOKENS = 4096  # PROMPTDECK_BUDGET_DEFAULT_MAX_TOKENS


def worst_case_cost(
    candidates: list[Candidate], prices: PriceList, overrides: dict[str, Price], default_max_tokens: int
) -> float | None:
    """USD, or None when a candidate's price is unknown (a budget cannot hold it)."""
    worst = 0.0
    for candidate in candidates:
        max_tokens = candidate.call.params.get("max_tokens")
        output = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else default_max_tokens
        price = prices.charged(candidate.model_id, overrides.get(candidate.model_id))
        if price is None:
            return None
        worst = max(worst, price.estimate(math.ceil(candidate.prompt_chars / CHARS_PER_TOKEN), output))
    return worst
