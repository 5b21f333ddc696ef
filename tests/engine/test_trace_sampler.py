"""promptdeck's samplers decide as the OpenTelemetry SDK's do, for every standard
`OTEL_TRACES_SAMPLER`, with and without a caller's sampled or unsampled trace."""

from __future__ import annotations

import logging
import random

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import _get_from_env_or_default
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from promptdeck.engine.trace_sampler import sampler_from_environment

SAMPLERS = [
    ("always_on", None),
    ("always_off", None),
    ("traceidratio", "0.25"),
    ("traceidratio", "0"),
    ("traceidratio", "1"),
    ("parentbased_always_on", None),
    ("parentbased_always_off", None),
    ("parentbased_traceidratio", "0.5"),
    ("parentbased_traceidratio", None),
]


@pytest.mark.parametrize(("name", "argument"), SAMPLERS)
def test_each_sampler_decides_as_the_sdks(
    name: str, argument: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = {"OTEL_TRACES_SAMPLER": name} | ({"OTEL_TRACES_SAMPLER_ARG": argument} if argument else {})
    for variable, value in environ.items():
        monkeypatch.setenv(variable, value)
    sdk = _get_from_env_or_default()
    ours = sampler_from_environment(environ)
    chance = random.Random(19)
    for _ in range(400):
        trace_id = chance.getrandbits(128) or 1
        for parent_flags in (None, 0x00, 0x01):
            context = None
            if parent_flags is not None:
                parent = SpanContext(trace_id, 0xABC, True, TraceFlags(parent_flags))
                context = trace.set_span_in_context(NonRecordingSpan(parent))
            decision = sdk.should_sample(context, trace_id, "chat x").decision.is_sampled()  # type: ignore[no-untyped-call]
            assert ours(trace_id, parent_flags) is decision, (hex(trace_id), parent_flags)


def test_a_ratio_keeps_the_traces_whose_low_bits_are_below_it() -> None:
    sample = sampler_from_environment(
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}
    )
    assert sample((0xFFFF << 64) | (2**63 - 1), None) and not sample(2**63, None)
    kept = sum(sample(random.Random(n).getrandbits(128), None) for n in range(4000))
    assert 1800 < kept < 2200


def test_the_default_and_bad_values(caplog: pytest.LogCaptureFixture) -> None:
    default = sampler_from_environment({})
    assert default(5, None) and default(5, 0x01) and not default(5, 0x00)  # parentbased_always_on
    with caplog.at_level(logging.WARNING, logger="promptdeck.traces"):
        unknown = sampler_from_environment({"OTEL_TRACES_SAMPLER": "jaeger_remote"})
        ratio = sampler_from_environment(
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}
        )
    assert unknown(5, None) and not unknown(5, 0x00)
    assert ratio(2**64 - 1, None)  # 1.0 instead
    assert len(caplog.records) == 2
