"""The five HTTP providers' recorded-format cases, and the fixtures that play one: a test that
takes `case` runs once per provider against a local fake upstream speaking that provider's
documented wire format (no request leaves the machine)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from promptdeck.providers.http_upstream import HttpUpstream
from tests.providers.transcripts import ProviderCase
from tests.providers.transcripts.anthropic import CASE as ANTHROPIC
from tests.providers.transcripts.azure import CASE as AZURE
from tests.providers.transcripts.gemini import CASE as GEMINI
from tests.providers.transcripts.openai_compatible import CASE as OPENAI
from tests.providers.transcripts.openai_responses import CASE as OPENAI_RESPONSES
from tests.support.fake_upstream import FakeUpstream, provider_maker

CASES = [OPENAI, OPENAI_RESPONSES, AZURE, ANTHROPIC, GEMINI]


@pytest.fixture(params=CASES, ids=[case.name for case in CASES])
def case(request: pytest.FixtureRequest) -> ProviderCase:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def upstream(case: ProviderCase) -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(prefix=case.prefix) as server:
        yield server


@pytest.fixture
async def make_provider(
    case: ProviderCase, upstream: FakeUpstream
) -> AsyncIterator[Callable[..., HttpUpstream]]:
    async with provider_maker(case.cls, upstream.base_url, case.key, case.url_option) as make:
        yield make
