"""A prompt's datasets: the test cases a version is evaluated on before it ships
(docs/evaluations.md). Plain data; the store keeps them, the evaluation runner reads them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class DatasetCase:
    """One test case: the inputs a caller would send, optionally the output expected, a chat
    history appended after the prompt's own messages, and tags to filter by."""

    inputs: Mapping[str, Any]
    expected: str | None = None
    chat_history: tuple[Mapping[str, Any], ...] = ()
    tags: tuple[str, ...] = ()
    id: str = ""  # the store's id; "" until stored
    source_run_id: str | None = None  # the run it was made from ("Add to dataset")


@dataclass(frozen=True, slots=True)
class Dataset:
    """A named set of cases that belongs to one prompt, with the evaluators that judge them."""

    id: str
    prompt: str  # the prompt's slug
    name: str
    description: str = ""
    evaluators: tuple[Mapping[str, Any], ...] = field(default=())  # EvaluatorSpec data
    case_count: int = 0
