"""Two or more evaluations of one dataset side by side (docs/evaluations.md, "Compare"): what the
admin API's compare route and the console's compare view both answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.evaluation_summary import compare
from promptdeck.store.evaluations import EvaluationStore

COMPARE_MAX = 10  # evaluations side by side


async def side_by_side(store: EvaluationStore, workspace_id: str, ids: Sequence[str]) -> dict[str, Any]:
    """The evaluations' summaries and every case in each, pass→fail cases first. Refused (422)
    for fewer than 2 or more than COMPARE_MAX ids, or evaluations of different datasets."""
    wanted = [i.strip() for i in ids if i.strip()]
    if not 2 <= len(wanted) <= COMPARE_MAX:
        raise ValidationFailed(f"ids: give 2 to {COMPARE_MAX} evaluation ids, comma-separated")
    found = [await store.get(workspace_id, evaluation_id) for evaluation_id in wanted]
    if len({evaluation["dataset_id"] for evaluation in found}) > 1:
        raise ValidationFailed("only evaluations of the same dataset can be compared")
    pairs = [(evaluation, await store.results(workspace_id, evaluation["id"])) for evaluation in found]
    return {"dataset": found[0]["dataset"], "prompt": found[0]["prompt"], **compare(pairs)}
