"""Rules about usage and rendering that sit between the providers and the run log, through a
live server and the fake OpenAI-compatible upstream (OpenAI's documented chat format)."""

from __future__ import annotations

from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, Script, StartDeck, run_of
from tests.support.invoking import invoke

upstream = fake_openai.upstream
start_deck = fake_openai.start_deck


def test_all_zero_usage_for_a_real_answer_is_estimated(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    """Some hosts send a usage object of zeros: that says nothing, so the run is estimated."""
    upstream.scripts["zeros"] = Script(usage=(0, 0))
    deck = start_deck()
    fake_openai.push_prompt(deck.url, deck.admin_key, "zeros", "openai/zeros")
    answer = invoke(deck, "zeros")
    assert answer.status_code == 200, answer.text
    usage = answer.json()["usage"]
    assert usage["prompt_tokens"]["total_tokens"] > 0 and usage["completion_tokens"]["total_tokens"] > 0
    run = run_of(deck, answer.json()["request_id"])
    assert run["usage_estimated"] is True and run["input_tokens"] > 0


def test_a_read_key_may_render_a_provider_payload(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    """Rendering the upstream request changes nothing, so the `read` scope suffices."""
    deck = start_deck()
    with deck.client() as admin:
        secret = admin.post("/api/keys", json={"name": "viewer", "scopes": ["read"]}).json()["api_key"]
    with deck.client(secret) as reader:
        response = reader.post("/api/deployments/fast/payload", json={"inputs": fake_openai.INPUTS})
    assert response.status_code == 200, response.text
    assert response.json()["payload"]["model"] == "fast"
    assert upstream.requests == []
