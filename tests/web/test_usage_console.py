"""The Usage and Users screens over HTTP, on SQLite and PostgreSQL, with runs made through the
Fetch Hive API against the fake OpenAI upstream (and failed runs): figures, links to the logs,
well-formed charts, search, sort, pages, empty ranges and bad input."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import INPUTS, FakeOpenAI, deck_over
from tests.web.conftest import Console

upstream = fake_openai.upstream


def call(deck: Deck, deployment: str, user: str | None, **metadata: str) -> None:
    """One Fetch Hive invoke; `summarize` without its input fails (an error run)."""
    inputs = INPUTS if deployment == "fast" else {}
    body = {"deployment": deployment, "inputs": inputs, "user": user, "metadata": metadata or None}
    with deck.client() as client:
        answer = client.post("/v1/prompt/invoke", json=body)
    assert answer.status_code == (200 if deployment == "fast" else 422), answer.text


@pytest.fixture
def used(upstream: FakeOpenAI, database_url: str, tmp_path: Path) -> Iterator[tuple[Deck, httpx.Client]]:
    """A server with 6 runs of `fast` (alice 3, bob 2, none 1) and 2 failed runs of `summarize`
    (carol), and a signed-in viewer's client."""
    with deck_over(upstream.url, database_url, tmp_path) as deck:
        for user, team in (
            ("alice", "red"),
            ("alice", "red"),
            ("alice", "blue"),
            ("bob", "blue"),
            ("bob", ""),
        ):
            call(deck, "fast", user, **({"team": team} if team else {}))
        call(deck, "fast", None)
        call(deck, "summarize", "carol", team="red")
        call(deck, "summarize", "carol")
        deck.flush()
        console = Console(deck.live, deck.admin_key, deck.workspace_id)
        with console.session_client(console.add_member("viewer")) as (client, _):
            yield deck, client


def svgs(html: str) -> list[ET.Element]:
    """Every chart drawing in a page, parsed as XML (so it must be well-formed)."""
    return [ET.fromstring(s) for s in re.findall(r"<svg xmlns=.*?</svg>", html, re.S)]


def links(html: str) -> list[str]:
    return [unescape(h) for h in re.findall(r'href="([^"]+)"', html)]


def user_names(html: str) -> list[str]:
    return re.findall(r'<td class="user-name"><a href="/users/[^"]+">([^<]+)</a>', html)


def query_of(href: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(href).query)


def test_usage_by_deployment_user_and_metadata(used: tuple[Deck, httpx.Client]) -> None:
    _, client = used
    page = client.get("/usage")
    assert page.status_code == 200, page.text
    html = page.text
    totals = re.findall(r'<span class="total-value">([^<]*)</span>', html)
    assert totals[:2] == ["8", "2"]  # runs, errors
    drawings = svgs(html)
    assert len(drawings) == 8  # four charts, each wide and narrow
    # the group table: each deployment links to its runs in the range
    fast = next(h for h in links(html) if query_of(h).get("deployment") == ["fast"])
    assert fast.startswith("/logs?") and query_of(fast)["range"] == ["custom"]
    assert {"since", "until"} <= set(query_of(fast))
    assert re.search(r">fast</a></td>\s*<td class=\"num\"><a [^>]*>6</a>", html)
    assert re.search(r">summarize</a></td>\s*<td class=\"num\"><a [^>]*>2</a>", html)
    # the runs chart: a bar segment of `fast` links to fast's runs in that hour
    assert any(
        query_of(h).get("deployment") == ["fast"] and query_of(h)["since"] != query_of(fast)["since"]
        for h in links(html)
    )
    errors = next(h for h in links(html) if query_of(h).get("status") == ["error"])
    assert query_of(errors)["range"] == ["custom"]

    by_user = client.get("/usage", params={"group_by": "user", "range": "7d"}).text
    alice = next(h for h in links(by_user) if query_of(h).get("user") == ["alice"])
    assert alice.startswith("/logs?")
    assert {"alice", "bob", "carol"} <= {q["user"][0] for q in map(query_of, links(by_user)) if "user" in q}

    by_team = client.get("/usage", params={"group_by": "metadata", "meta_key": "team"})
    assert by_team.status_code == 200, by_team.text
    red = next(h for h in links(by_team.text) if query_of(h).get("meta") == ["team=red"])
    assert red.startswith("/logs?")
    assert 'value="metadata.team" selected' in by_team.text or 'value="team"' in by_team.text


def test_usage_empty_ranges_and_bad_input(used: tuple[Deck, httpx.Client]) -> None:
    _, client = used
    empty = client.get("/usage", params={"range": "custom", "from": "2020-01-01", "to": "2020-01-31"})
    assert empty.status_code == 200
    assert "No runs in this range" in empty.text and "Jan 1 - Jan 31, 2020" in empty.text
    assert svgs(empty.text) == []

    bad = client.get("/usage", params={"range": "fortnight", "bucket": "minute", "group_by": "mood"})
    assert bad.status_code == 422
    for problem in (
        "range: expected one of 24h, 7d, 30d, custom",
        "bucket: expected hour or day",
        "group_by",
    ):
        assert problem in unescape(bad.text)
    assert svgs(bad.text)  # the default view is still shown under the message
    backwards = client.get("/usage", params={"range": "custom", "from": "2026-03-05", "to": "2026-03-01"})
    assert backwards.status_code == 422 and "to: must not be before from" in backwards.text
    hourly_year = client.get(
        "/usage", params={"range": "custom", "from": "2025-01-01", "to": "2025-12-31", "bucket": "hour"}
    )
    assert hourly_year.status_code == 422 and "use bucket=day for a longer range" in hourly_year.text
    no_key = client.get("/usage", params={"group_by": "metadata", "meta_key": ""})
    assert no_key.status_code == 422 and "type the metadata key" in no_key.text


def test_users_list_search_sort_and_one_user(used: tuple[Deck, httpx.Client]) -> None:
    _, client = used
    page = client.get("/users")
    assert page.status_code == 200, page.text
    assert sorted(user_names(page.text)) == ["alice", "bob", "carol"]
    by_runs = client.get("/users", params={"sort": "runs", "order": "desc"}).text
    assert user_names(by_runs)[0] == "alice"
    assert 'aria-sort="descending"' in by_runs
    carol_row = by_runs.split(">carol</a>", 1)[1].split("</tr>", 1)[0]
    assert "100.0%" in carol_row  # both of carol's runs failed
    found = client.get("/users", params={"q": "bo"}).text
    assert ">bob</a>" in found and ">alice</a>" not in found
    assert "No end user starts with" in client.get("/users", params={"q": "zed"}).text
    assert client.get("/users", params={"sort": "shoe size"}).status_code == 422

    alice = client.get("/users/alice")
    assert alice.status_code == 200, alice.text
    totals = re.findall(r'<span class="total-value">([^<]*)</span>', alice.text)
    assert totals[:2] == ["3", "0"]
    assert "/logs?user=alice" in links(alice.text)
    drawings = svgs(alice.text)
    assert len(drawings) == 4  # runs and cost per day, wide and narrow
    days = drawings[0].findall(".//{http://www.w3.org/2000/svg}a[@class='hit']")
    assert len(days) == 30
    assert query_of(days[-1].get("href", "")) | {} and query_of(days[-1].get("href", ""))["user"] == ["alice"]
    assert client.get("/users/nobody-at-all").status_code == 404
