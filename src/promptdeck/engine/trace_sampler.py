"""Which runs are traced: the standard `OTEL_TRACES_SAMPLER` samplers, by the specification's
rules and with the OpenTelemetry SDK's arithmetic, without the SDK.

A sampler is a function of the new trace id and the caller's trace flags (None: no caller
trace, a root span). `traceidratio` keeps a trace when its id's low 64 bits are below
ratio * 2^64, so every service sampling by the same ratio keeps the same traces; the
`parentbased_*` samplers follow the caller's sampled flag and apply their root sampler only to
runs that start a trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

log = logging.getLogger("promptdeck.traces")

Sampler = Callable[[int, int | None], bool]  # (trace id, caller's trace flags or None) → sampled

DEFAULT = "parentbased_always_on"
_LOW_64 = (1 << 64) - 1


def always_on(trace_id: int, parent_flags: int | None) -> bool:
    return True


def always_off(trace_id: int, parent_flags: int | None) -> bool:
    return False


def trace_id_ratio(ratio: float) -> Sampler:
    bound = round(ratio * (_LOW_64 + 1))

    def sample(trace_id: int, parent_flags: int | None) -> bool:
        return trace_id & _LOW_64 < bound

    return sample


def parent_based(root: Sampler) -> Sampler:
    def sample(trace_id: int, parent_flags: int | None) -> bool:
        if parent_flags is None:
            return root(trace_id, None)
        return bool(parent_flags & 0x01)  # the caller's decision, sampled or not

    return sample


def sampler_from_environment(environ: Mapping[str, str]) -> Sampler:
    """The sampler `OTEL_TRACES_SAMPLER` names (default parentbased_always_on), its ratio from
    `OTEL_TRACES_SAMPLER_ARG` (default 1.0); an unknown name or a bad ratio is logged and the
    default used, as the SDK does."""
    name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or DEFAULT
    root: Sampler
    if name in ("always_on", "parentbased_always_on"):
        root = always_on
    elif name in ("always_off", "parentbased_always_off"):
        root = always_off
    elif name in ("traceidratio", "parentbased_traceidratio"):
        root = trace_id_ratio(_ratio(environ.get("OTEL_TRACES_SAMPLER_ARG")))
    else:
        log.warning("OTEL_TRACES_SAMPLER=%s is not a sampler promptdeck knows: using %s", name, DEFAULT)
        return parent_based(always_on)
    return parent_based(root) if name.startswith("parentbased_") else root


def _ratio(argument: str | None) -> float:
    if argument is None or not argument.strip():
        return 1.0
    try:
        ratio = float(argument)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        log.warning("OTEL_TRACES_SAMPLER_ARG=%s is not a ratio from 0 to 1: using 1.0", argument)
        return 1.0
    return ratio
