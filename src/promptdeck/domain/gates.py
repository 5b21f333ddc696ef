"""A variant's release gates: named conditions an evaluation must meet before anything moves the
variant (docs/evaluations.md, "Gates"). Stored in the variant's config; judged by the release
check against the newest matching evaluation."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

GATE_NAME_MAX = 100


class Gate(BaseModel):
    """Run `dataset` (a dataset of the variant's prompt) on the version about to be served; it must
    pass at least `min_pass_rate` of the cases and, with `no_regressions`, fail no case that the
    version served now passes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=GATE_NAME_MAX, strict=True)]
    dataset: Annotated[str, Field(min_length=1, max_length=GATE_NAME_MAX, strict=True)]
    min_pass_rate: Annotated[float | None, Field(ge=0, le=1, allow_inf_nan=False)] = None
    no_regressions: Annotated[bool, Field(strict=True)] = False

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def distinct_names(gates: tuple[Gate, ...]) -> tuple[Gate, ...]:
    """Gate names identify a failure in the release check's report: each name once."""
    names = [gate.name for gate in gates]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"gate names must differ: {', '.join(duplicates)} given twice")
    return gates


def gate_problems(
    gate: Gate, pass_rate: float | None, regressed: list[int] | None, served: int | None
) -> list[str]:
    """What the gate finds wrong with an evaluation's figures, as sentences (none: it passes).
    `regressed` holds the positions of cases that passed on version `served` and do not now."""
    problems: list[str] = []
    if gate.min_pass_rate is not None and (pass_rate is None or pass_rate < gate.min_pass_rate):
        shown = "no case" if pass_rate is None else f"{pass_rate:.0%} of the cases"
        problems.append(
            f"{shown} passed on dataset {gate.dataset!r}; the gate needs {gate.min_pass_rate:.0%}"
        )
    if gate.no_regressions and regressed:
        cases = ", ".join(f"#{p}" for p in regressed[:10]) + (" ..." if len(regressed) > 10 else "")
        problems.append(
            f"{len(regressed)} case(s) of dataset {gate.dataset!r} that pass on version {served} "
            f"fail now: {cases}"
        )
    return problems
