"""Reading an upstream body line by line when the connection drops mid-stream."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol

from promptdeck.providers.http_upstream import _lines


async def test_bytes_received_before_a_cut_are_not_lost() -> None:
    """aiohttp raises a dropped connection's error before handing over what it already
    buffered; those complete lines must still come through, then the error."""
    loop = asyncio.get_running_loop()
    reader = aiohttp.StreamReader(BaseProtocol(loop), limit=2**16, loop=loop)
    reader.feed_data(b'data: {"a": 1}\n\ndata: {"b": 2}\n\ndata: {"partial')
    reader.set_exception(aiohttp.ClientPayloadError("connection lost"))
    response: Any = SimpleNamespace(content=reader)
    seen: list[str] = []
    with pytest.raises(aiohttp.ClientPayloadError):
        async for line in _lines(response):
            seen.append(line)
    assert seen == ['data: {"a": 1}', "", 'data: {"b": 2}', ""]
