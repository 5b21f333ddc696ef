"""Circuit breakers on a fake clock: open after `threshold` failures, refuse until the cooldown
has passed, then let exactly one trial call through, whose verdict closes or reopens the circuit."""

from __future__ import annotations

from promptdeck.engine.circuit import CircuitBreakers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def opened(clock: Clock, threshold: int = 3, cooldown: float = 30.0) -> CircuitBreakers:
    breakers = CircuitBreakers(threshold, cooldown, clock=clock)
    for n in range(threshold):
        breakers.failed("openai", f"failure {n}")
    return breakers


def test_closed_until_threshold_consecutive_failures() -> None:
    breakers = CircuitBreakers(3, 30.0, clock=Clock())
    assert breakers.allows("openai")
    breakers.failed("openai", "boom")
    breakers.failed("openai", "boom")
    assert breakers.allows("openai")
    breakers.failed("openai", "rate limited")
    assert not breakers.allows("openai")
    assert breakers.why_open("openai") == "rate limited"
    assert breakers.allows("anthropic")  # one circuit per upstream
    assert breakers.why_open("anthropic") == ""


def test_success_resets_the_failure_count() -> None:
    breakers = CircuitBreakers(3, 30.0, clock=Clock())
    breakers.failed("openai", "boom")
    breakers.failed("openai", "boom")
    breakers.succeeded("openai")
    breakers.failed("openai", "boom")
    breakers.failed("openai", "boom")
    assert breakers.allows("openai")


def test_open_until_the_cooldown_has_passed() -> None:
    clock = Clock()
    breakers = opened(clock)
    clock.now += 29.9
    assert not breakers.allows("openai")
    clock.now += 0.2
    assert breakers.allows("openai")


def test_half_open_lets_one_trial_through() -> None:
    clock = Clock()
    breakers = opened(clock)
    clock.now += 31
    assert breakers.allows("openai")  # the trial
    assert not breakers.allows("openai")  # everyone else waits for its verdict
    assert not breakers.allows("openai")


def test_failed_trial_opens_the_circuit_for_another_cooldown() -> None:
    clock = Clock()
    breakers = opened(clock)
    clock.now += 31
    assert breakers.allows("openai")
    breakers.failed("openai", "still down")
    assert not breakers.allows("openai")
    assert breakers.why_open("openai") == "still down"
    clock.now += 29
    assert not breakers.allows("openai")
    clock.now += 2
    assert breakers.allows("openai")


def test_succeeded_trial_closes_the_circuit() -> None:
    clock = Clock()
    breakers = opened(clock)
    clock.now += 31
    assert breakers.allows("openai")
    breakers.succeeded("openai")
    assert breakers.allows("openai")
    assert breakers.allows("openai")
    assert breakers.why_open("openai") == ""
    breakers.failed("openai", "boom")  # counting starts again from zero
    assert breakers.allows("openai")


def test_released_trial_lets_another_call_be_the_trial() -> None:
    clock = Clock()
    breakers = opened(clock)
    clock.now += 31
    assert breakers.allows("openai")
    assert not breakers.allows("openai")
    breakers.released("openai")  # e.g. the caller went away: no verdict on the upstream
    assert breakers.allows("openai")  # the next call is the trial
    assert not breakers.allows("openai")


def test_released_without_a_trial_changes_nothing() -> None:
    clock = Clock()
    breakers = CircuitBreakers(3, 30.0, clock=clock)
    breakers.released("openai")  # no state at all
    assert breakers.allows("openai")
    breakers = opened(clock)
    breakers.released("openai")  # open, in its cooldown: still open
    assert not breakers.allows("openai")
