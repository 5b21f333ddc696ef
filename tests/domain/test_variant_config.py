"""The variant config and the price override are pydantic models, checked once; every problem
is reported at once, each with where it is."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.prices import PriceOverride
from promptdeck.domain.reliability import (
    DEFAULT_MAX_ATTEMPTS,
    Fallback,
    SplitArm,
    VariantConfig,
    parse_variant_config,
)
from promptdeck.domain.schema_problems import lines


def found(raw: Any) -> list[str]:
    with pytest.raises(ValidationError) as raised:
        VariantConfig.model_validate(raw)
    return lines(raised.value.errors())


def test_every_problem_at_once_with_its_location() -> None:
    raw = {
        "timeouts": {"first_byte": -1, "total": 0, "read": 5},
        "retries": {"max_attempts": 0, "backoff_seconds": True, "max_backoff_seconds": 301},
        "fallbacks": [{"model": "no-provider"}, "gpt", {"model": "openai/x", "version": 0}],
        "split": [{"version": "two", "weight": -1}, {"version": 1, "weight": 1, "share": 3}],
        "follows_latest": "yes",
        "extra": True,
    }
    assert sorted(found(raw)) == sorted(
        [
            "timeouts.first_byte: expected a number of seconds above 0",
            "timeouts.total: expected a number of seconds above 0",
            "timeouts.read: unknown field",
            "retries.max_attempts: expected a whole number from 1 to 10",
            "retries.backoff_seconds: expected seconds above 0 and at most 300",
            "retries.max_backoff_seconds: expected seconds above 0 and at most 300",
            "fallbacks[0].model: expected 'provider/model'",
            "fallbacks[1]: expected {model, version?}",
            "fallbacks[2].version: expected a version number",
            "split[0].version: expected a version number",
            "split[0].weight: expected a number of 0 or more",
            "split[1].share: unknown field",
            "follows_latest: expected true or false",
            "extra: unknown field",
        ]
    )


def test_split_rules_that_look_at_all_arms() -> None:
    twice = [{"version": 1, "weight": 1}, {"version": 1, "weight": 2}]
    assert found({"split": twice}) == ["split: version 1 is listed twice"]
    zero = [{"version": 1, "weight": 0}, {"version": 2, "weight": 0}]
    assert found({"split": zero}) == ["split: the weights must add up to more than 0"]
    assert found({"split": {"1": 50}}) == ["split: expected a list of {version, weight}"]
    assert found({"timeouts": 5, "fallbacks": "x"}) == [
        "timeouts: expected an object",
        "fallbacks: expected a list of {model, version?}",
    ]


def test_the_engine_reads_the_same_flat_attributes() -> None:
    config = VariantConfig.model_validate(
        {
            "timeouts": {"connect": 2, "first_byte": 3, "total": 4},
            "retries": {"max_attempts": 3, "backoff_seconds": 1, "max_backoff_seconds": 4},
            "fallbacks": [{"model": "anthropic/claude", "version": 2}, {"model": "openai/gpt"}],
            "split": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}],
            "follows_latest": True,
        }
    )
    assert (config.connect_timeout, config.first_byte_timeout, config.total_timeout) == (2.0, 3.0, 4.0)
    assert (config.max_attempts, config.backoff_seconds, config.max_backoff_seconds) == (3, 1.0, 4.0)
    assert config.fallbacks == (Fallback("anthropic/claude", 2), Fallback("openai/gpt"))
    assert config.split == (SplitArm(1, 90), SplitArm(2, 10))
    assert config.follows_latest
    assert VariantConfig.model_validate(config.to_dict()) == config  # stored and read back
    with pytest.raises(ValidationError):
        config.retries = config.retries  # frozen


def test_defaults_and_null_sections() -> None:
    empty = VariantConfig()
    assert (empty.max_attempts, empty.total_timeout, empty.fallbacks, empty.split) == (
        DEFAULT_MAX_ATTEMPTS,
        None,
        (),
        (),
    )
    assert parse_variant_config(None) == empty
    assert parse_variant_config({"timeouts": None, "fallbacks": None, "split": []}) == empty
    assert empty.to_dict() == {
        "timeouts": {},
        "retries": {"max_attempts": 2, "backoff_seconds": 0.5, "max_backoff_seconds": 8.0},
        "fallbacks": [],
    }


def test_parse_variant_config_raises_validation_failed_with_every_problem() -> None:
    assert parse_variant_config(VariantConfig()) == VariantConfig()
    with pytest.raises(ValidationFailed) as raised:
        parse_variant_config({"retries": {"max_attempts": 11}, "oops": 1})
    assert raised.value.details == [
        "retries.max_attempts: expected a whole number from 1 to 10",
        "oops: unknown field",
    ]
    assert raised.value.message.startswith("invalid variant config: retries.max_attempts")
    with pytest.raises(ValidationFailed, match="is an object"):
        parse_variant_config([])


def test_a_price_override_is_finite_and_not_negative() -> None:
    price = PriceOverride.model_validate({"input_per_mtok": 2.5, "output_per_mtok": 10})
    assert (price.output_per_mtok, price.cached_input_per_mtok) == (10.0, None)
    assert price.price() is not None
    with pytest.raises(ValidationError) as raised:
        PriceOverride.model_validate(
            {"input_per_mtok": -1, "cached_input_per_mtok": float("inf"), "cache_write_per_mtok": True}
        )
    assert lines(raised.value.errors()) == [
        "input_per_mtok: expected a number of USD per million tokens, 0 or more",
        "output_per_mtok: required",
        "cached_input_per_mtok: expected a number of USD per million tokens, 0 or more",
        "cache_write_per_mtok: expected a number of USD per million tokens, 0 or more",
    ]
