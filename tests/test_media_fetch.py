"""The media fetch (engine/media_fetch.py), end to end: a PDF given by URL to a model on OpenAI's
Chat Completions (which takes a PDF's bytes only) is fetched by promptdeck from a real https
server on loopback and sent upstream as a data: URL, the run keeping the URL; every refusal of
the outbound policy is the caller's 422 naming the part and the reason, logged as a failed run,
with the upstream never called: a redirect to 127.0.0.1, a name that resolves to a private
address (a resolver override), the metadata address, too large (stated and streamed), too slow,
not a PDF, too many redirects. Parts a provider takes by URL are never fetched."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from promptdeck.domain.media_capability import needs_bytes
from tests.conftest import Deck
from tests.support.fake_openai import FakeOpenAI, deck_over, expect_hive_error, run_of, sqlite_url
from tests.support.media_origin import PDF, OriginOnly, Servers, media_servers
from tests.test_webhooks import NamesResolver

LIMIT = 50_000
TIMEOUT = 1.0
WHERE = "document part messages[1].content[1] (input 'report')"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with media_servers(tmp_path_factory.mktemp("media")) as started:
        yield started


@pytest.fixture(scope="module")
def fake_upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def deck(
    servers: Servers, fake_upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deck]:
    """One server, its media fetches under production's policy but for the test origin."""
    directory = tmp_path_factory.mktemp("deck")
    overrides: dict[str, Any] = {"media_max_bytes": LIMIT, "media_fetch_timeout": TIMEOUT}
    with deck_over(fake_upstream.url, sqlite_url(directory), directory, **overrides) as started:
        names = {"media.test": "127.0.0.2", "intranet.test": "10.20.30.40", "sneaky.test": "127.0.0.1"}
        started.services.engine.fetcher.policy = OriginOnly(NamesResolver(names), servers.trust)
        with started.client() as client:
            assert client.post("/api/prompts", json={"slug": "read-report"}).status_code == 201
            saved = client.post("/api/prompts/read-report/versions", json=version())
            assert saved.status_code == 201, saved.text
            made = client.post("/api/deployments", json={"name": "read-report", "prompt": "read-report"})
            assert made.status_code == 201, made.text
        yield started


@pytest.fixture
def upstream(fake_upstream: FakeOpenAI, servers: Servers) -> FakeOpenAI:
    fake_upstream.seen.clear()
    servers.origin_hits.clear()
    return fake_upstream


def version() -> dict[str, Any]:
    return {
        "model": "openai/gpt-4o",
        "messages": [
            {"role": "system", "content": "You read reports."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Summarize this report."},
                    {"type": "document", "source": "{{ report }}"},
                    {"type": "image", "source": "{{ chart }}"},
                ],
            },
        ],
        "inputs": {"report": {"type": "document"}, "chart": {"type": "image", "required": False}},
    }


def invoke(deck: Deck, inputs: dict[str, Any]) -> httpx.Response:
    with deck.client() as client:
        return client.post("/v1/prompt/invoke", json={"deployment": "read-report", "inputs": inputs})


def test_a_pdf_by_url_is_fetched_and_sent_as_bytes_and_the_run_keeps_the_url(
    deck: Deck, upstream: FakeOpenAI, servers: Servers
) -> None:
    url = servers.origin("/report.pdf")

    response = invoke(deck, {"report": url})

    assert response.status_code == 200, response.text
    data_url = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
    sent = upstream.requests[-1]["messages"][1]["content"]
    assert sent[1] == {"type": "file", "file": {"filename": "report.pdf", "file_data": data_url}}
    run = run_of(deck, response.json()["request_id"])
    assert run["inputs"] == {"report": url}
    assert run["messages"][1]["content"][1] == {"type": "document", "source": url}
    with deck.client() as client:
        assert base64.b64encode(PDF).decode()[:40] not in client.get(f"/api/runs/{run['id']}").text


def test_a_part_the_provider_takes_by_url_is_not_fetched(
    deck: Deck, upstream: FakeOpenAI, servers: Servers
) -> None:
    inline = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
    chart = servers.origin("/chart.png")

    response = invoke(deck, {"report": inline, "chart": chart})

    assert response.status_code == 200, response.text
    sent = upstream.requests[-1]["messages"][1]["content"]
    assert sent[2] == {"type": "image_url", "image_url": {"url": chart}}
    assert servers.origin_hits == []  # an image goes by URL; a data: URL needs no fetch


REFUSALS = [
    ("redirect-to-loopback", "/redirect?to={secret}", "127.0.0.1 is a loopback address"),
    ("name-to-private", "https://intranet.test/r.pdf", "intranet.test resolves to 10.20.30.40 is a private"),
    (
        "redirect-to-name-to-loopback",
        "/redirect?to=https://sneaky.test:{secret_port}/x.pdf",
        "sneaky.test resolves to 127.0.0.1 is a loopback address",
    ),
    ("metadata", "https://169.254.169.254/latest/meta-data/creds.pdf", "169.254.169.254 is a cloud metadata"),
    ("redirect-to-metadata", "/redirect?to=https://169.254.169.254/x.pdf", "is a cloud metadata address"),
    ("stated-too-large", "/big.pdf", f"is {len(PDF) + 100_000} bytes, over this server's limit of {LIMIT}"),
    ("streamed-too-large", "/endless.pdf", f"it is over this server's limit of {LIMIT} bytes"),
    ("too-slow", "/slow.pdf", f"it took longer than {TIMEOUT:g}s"),
    ("not-a-pdf", "/page.pdf", "it is text/html, not one of application/pdf"),
    ("too-many-redirects", "/hop/0", "more than 3 redirects"),
]


@pytest.mark.parametrize(("case", "path", "says"), REFUSALS, ids=[case for case, _, _ in REFUSALS])
def test_a_refused_fetch_is_the_callers_422_naming_the_part_and_the_run_is_logged(
    deck: Deck, upstream: FakeOpenAI, servers: Servers, case: str, path: str, says: str
) -> None:
    path = path.format(secret=servers.secret(), secret_port=servers.secret_port)
    url = path if path.startswith("https://") else servers.origin(path)

    response = invoke(deck, {"report": url})

    message = expect_hive_error(response, 422, "validation_error")
    assert message.startswith(f"{WHERE}: promptdeck could not fetch https://"), message
    assert says in message, message
    assert upstream.requests == []
    assert servers.secret_hits == []  # nothing behind the policy was ever reached
    if case == "streamed-too-large":  # stopped while streaming: far less than it would have sent
        assert servers.sent["/endless.pdf"] < 40 * LIMIT
    (run,) = [r for r in deck.runs() if message == r["error_message"]]  # refused, still logged
    assert (run["status"], run["error_code"]) == ("error", "validation_error")
    assert run["inputs"] == {"report": url}


@pytest.mark.parametrize(
    ("family", "part", "fetched"),
    [
        ("openai-chat", {"type": "document", "source": "https://a.example/r.pdf"}, True),
        ("openai-chat", {"type": "document", "source": "data:application/pdf;base64,JVBERg=="}, False),
        ("openai-chat", {"type": "image", "source": "https://a.example/c.png"}, False),
        ("openai-responses", {"type": "document", "source": "https://a.example/r.pdf"}, False),
        ("anthropic", {"type": "document", "source": "https://a.example/r.pdf"}, False),
        ("gemini", {"type": "document", "source": "https://a.example/r.pdf"}, False),
    ],
)
def test_only_parts_an_api_takes_as_bytes_alone_are_fetched(
    family: str, part: dict[str, Any], fetched: bool
) -> None:
    assert needs_bytes(family, part) is fetched
