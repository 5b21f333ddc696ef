"""Is it safe to point a variant at another version, judged by what its callers send? And the
release check's report and refusal, which add the evaluation gates' failures to that judgement.

A move is risky when the new version newly requires an input (one the current version
did not require) that some of the variant's recent runs did not send, or declares an
input with a type the old one's callers cannot be assumed to send (e.g. string →
integer). Widening is fine: integer → number, anything → json. With no recent runs
there is nothing to judge by, so nothing is reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from promptdeck.domain.errors import UnsafePromotion, ValidationFailed
from promptdeck.domain.inputs import value_fits
from promptdeck.domain.prompts import PromptSpec

RECENT_RUNS = 100  # how many of the variant's latest runs a move is checked against
WIDENINGS = {("integer", "number")}


def compatible(old: str, new: str) -> bool:
    return old == new or new == "json" or (old, new) in WIDENINGS


def promotion_risks(
    current: PromptSpec | None, target: PromptSpec, recent: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One entry per affected input: `input`, `problem` (`missing` | `type_changed`),
    `runs_affected` (recent runs that lacked it, or sent a value of another type) and
    `runs_checked`; a type change also says `from` and `to`."""
    if not recent:
        return []
    risks: list[dict[str, Any]] = []
    checked = len(recent)
    for name, decl in target.inputs.items():
        old = current.inputs.get(name) if current is not None else None
        already = old is not None and old.required and old.default is None
        if decl.required and decl.default is None and not already:
            lacking = sum(1 for inputs in recent if inputs.get(name) is None)
            if lacking:
                risks.append(
                    {"input": name, "problem": "missing", "runs_affected": lacking, "runs_checked": checked}
                )
                continue
        if old is not None and not compatible(old.type, decl.type):
            misfits = sum(
                1 for inputs in recent if inputs.get(name) is not None and not value_fits(decl, inputs[name])
            )
            risks.append(
                {
                    "input": name,
                    "problem": "type_changed",
                    "from": old.type,
                    "to": decl.type,
                    "runs_affected": misfits,
                    "runs_checked": checked,
                }
            )
    return risks


def describe(risks: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for risk in risks:
        if risk["problem"] == "missing":
            parts.append(
                f"{risk['input']} is required but {risk['runs_affected']} of the last "
                f"{risk['runs_checked']} runs did not send it"
            )
        else:
            parts.append(
                f"{risk['input']} changes type from {risk['from']} to {risk['to']} "
                f"({risk['runs_affected']} of the last {risk['runs_checked']} runs "
                "sent a value that no longer fits)"
            )
    return "; ".join(parts)


def release_report(
    deployment: str,
    variant: str,
    version: int,
    from_version: int | None,
    risks: Sequence[Mapping[str, Any]],
    gate_failures: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The release check's answer for one change of what a variant serves: the input-contract
    risks (`inputs`) and the evaluation gates that failed (`gates`); `safe` when neither."""
    return {
        "deployment": deployment,
        "variant": variant,
        "version": version,
        "from_version": from_version,
        "inputs": [dict(r) for r in risks],
        "gates": [dict(g) for g in gate_failures],
        "safe": not risks and not gate_failures,
    }


def explain(report: Mapping[str, Any]) -> str:
    """One sentence per problem of a report: what would break, and which gate failed."""
    parts = [describe(report["inputs"])] if report["inputs"] else []
    parts += [f"gate {g.get('gate')!r} failed: {g.get('problem')}" for g in report["gates"]]
    return "; ".join(parts)


def refusal(report: Mapping[str, Any], what: str = "moving") -> UnsafePromotion:
    """The 409 for an unforced change the check refuses; `details` is the report (its `version`
    and `inputs` keep the shape of the first safe-promotion check)."""
    return UnsafePromotion(
        f"{what} {report['deployment']}/{report['variant']} to version {report['version']} would break "
        f'its callers or fail its gates: {explain(report)}. Send "force": true with a "reason" to do it '
        "anyway",
        details=dict(report),
    )


def forced_note(note: str, force: bool, reason: str) -> str:
    """The history note of a forced change: the reason is kept, and a force needs one."""
    if not force:
        return note
    if not reason.strip():
        raise ValidationFailed("a forced move needs a reason (it is kept in the variant's history)")
    forced = f"forced: {reason.strip()}"
    return f"{note} ({forced})" if note else forced
