"""`GET /metrics` of a live server after real runs: the series of docs/operations.md, parsed with
prometheus-client's own parser; who may scrape; the bound on label sets; several worker
processes sharing one PROMETHEUS_MULTIPROC_DIR; and the Grafana dashboard's queries."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from promptdeck.engine.metric_series import PlainCounter, PlainHistogram
from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, Script, invoke_streamed, push_prompt
from tests.support.invoking import INPUTS, invoke
from tests.support.postgres import free_port
from tests.test_cli import PROMPTDECK, cli_env, init_key

upstream = fake_openai.upstream
start_deck = fake_openai.start_deck
StartDeck = fake_openai.StartDeck
DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json"


def scrape(url: str, **headers: str) -> dict[str, list[Sample]]:
    """Every sample of a scrape, by sample name (`promptdeck_runs_total`, `..._bucket`)."""
    response = httpx.get(url + "/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def declared(text: str) -> set[str]:
    """Every name a scrape declares, samples or not: a counter no run has touched yet (cost,
    refusals) is still described, and a dashboard may query it."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def total(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    """The sum of a series' samples whose labels include `labels`."""
    return sum(s.value for s in samples.get(name, []) if labels.items() <= s.labels.items())


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Runs are counted as they end, a moment after a streamed answer's last byte."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the metrics did not show the runs"
        time.sleep(0.05)


def test_series_after_runs(start_deck: StartDeck, upstream: FakeOpenAI) -> None:
    deck = start_deck()
    invoke(deck, "fast", expect=200)
    invoke_streamed(deck, "fast")
    upstream.queue("fast", Script(status=503), Script(status=503))  # both attempts fail
    invoke(deck, "fast", expect=502)
    invoke(deck, "no-such-deployment", expect=404)
    with deck.client() as client:
        chat = {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "variables": INPUTS}
        assert client.post("/v1/chat/completions", json=chat).status_code == 200
    deck.flush()

    def runs() -> float:
        return total(scrape(deck.url), "promptdeck_runs_total")

    eventually(lambda: runs() == 5)
    found = scrape(deck.url)
    fast = {"deployment": "fast", "variant": "default", "provider": "openai"}
    assert total(found, "promptdeck_runs_total", **fast, dialect="fetchhive", status="success") == 2
    assert total(found, "promptdeck_runs_total", **fast, dialect="openai", status="success") == 1
    failed = total(found, "promptdeck_runs_total", **fast, status="error", error_code="upstream_error")
    assert failed == 1, [s for s in found["promptdeck_runs_total"] if s.labels["status"] == "error"]
    unknown = {"deployment": "(unknown)", "variant": "", "status": "error", "error_code": "not_found"}
    assert total(found, "promptdeck_runs_total", **unknown) == 1
    assert "no-such-deployment" not in httpx.get(deck.url + "/metrics").text  # a typed name is no label

    assert total(found, "promptdeck_run_duration_seconds_count", deployment="fast") == 4
    assert total(found, "promptdeck_run_time_to_first_token_seconds_count", deployment="fast") >= 1
    assert total(found, "promptdeck_tokens_total", deployment="fast", kind="input") == 3 * 11
    assert total(found, "promptdeck_tokens_total", deployment="fast", kind="output") == 3 * 4
    attempts = "promptdeck_upstream_attempt_duration_seconds_count"
    assert total(found, attempts, deployment="fast", outcome="success") == 3
    assert total(found, attempts, deployment="fast", outcome="error", model="openai/fast") == 2
    assert total(found, "promptdeck_retries_total", deployment="fast") == 1
    assert total(found, "promptdeck_circuit_breakers", provider="openai", state="open") == 0

    invoke_route = {"method": "POST", "route": "/v1/prompt/invoke"}
    assert total(found, "promptdeck_http_requests_total", **invoke_route, status="200") == 2
    assert total(found, "promptdeck_http_requests_total", **invoke_route, status="404") == 1
    assert total(found, "promptdeck_http_request_duration_seconds_count", **invoke_route) == 4
    assert total(found, "promptdeck_run_writer_batch_duration_seconds_count") >= 1
    assert total(found, "promptdeck_run_writer_runs_total") == 5
    assert "promptdeck_run_writer_queue_depth" in found


def test_one_process_counts_in_plain_numbers(start_deck: StartDeck) -> None:
    """In one process the series are plain numbers (no lock an update) that a scrape shows as
    prometheus-client's would, `_created` included; its own objects serve several workers only."""
    deck = start_deck()
    invoke(deck, "fast", expect=200)
    metrics = deck.services.metrics
    assert metrics is not None and not metrics.shared
    assert isinstance(metrics.runs.duration, PlainHistogram) and isinstance(
        metrics.http_requests, PlainCounter
    )
    eventually(lambda: total(scrape(deck.url), "promptdeck_runs_total", status="success") == 1)
    found = scrape(deck.url)
    fast = {"deployment": "fast", "dialect": "fetchhive", "status": "success", "error_code": ""}
    created = total(found, "promptdeck_runs_created", **fast)
    assert time.time() - 600 < created <= time.time()
    assert total(found, "promptdeck_run_duration_seconds_bucket", deployment="fast", le="+Inf") == 1


def test_requests_counted_without_the_access_log(start_deck: StartDeck) -> None:
    """Above `info` there is no access log to call the metrics' hook: the request metrics are
    their own middleware then, and count the same (a stream timed to its end)."""
    deck = start_deck(log_level="warning")
    invoke(deck, "fast", expect=200)
    invoke_streamed(deck, "fast")
    invoke(deck, "no-such-deployment", expect=404)
    found = scrape(deck.url)
    invoke_route = {"method": "POST", "route": "/v1/prompt/invoke"}
    assert total(found, "promptdeck_http_requests_total", **invoke_route, status="200") == 2
    assert total(found, "promptdeck_http_requests_total", **invoke_route, status="404") == 1
    assert total(found, "promptdeck_http_request_duration_seconds_count", **invoke_route) == 3
    assert total(found, "promptdeck_http_request_duration_seconds_sum", **invoke_route) > 0


def test_routes_are_templates_not_paths(start_deck: StartDeck) -> None:
    deck = start_deck()
    with deck.client() as client:
        for n in range(3):
            client.get(f"/api/runs/run-{n}")
            client.get(f"/no/such/path/{n}")
    found = scrape(deck.url)
    routes = {s.labels["route"] for s in found["promptdeck_http_requests_total"]}
    assert "/api/runs/{run_id}" in routes and "(unmatched)" in routes
    assert not any("run-1" in route or "/no/such" in route for route in routes), routes


def test_label_sets_are_capped(start_deck: StartDeck) -> None:
    """Two label sets at most: the unknown names share one, `default` takes the other, and the
    `beta` variant's runs fold into (other)."""
    deck = start_deck(metrics_label_sets=2)
    for n in range(5):
        invoke(deck, f"typo-{n}", expect=404)
    invoke(deck, "fast", expect=200)
    invoke(deck, "fast", variant="beta", expect=200)
    eventually(lambda: total(scrape(deck.url), "promptdeck_runs_total") == 7)
    found = scrape(deck.url)
    label_sets = {
        tuple(s.labels[k] for k in ("deployment", "variant", "provider", "model", "dialect"))
        for s in found["promptdeck_runs_total"]
    }
    assert label_sets == {
        ("(unknown)", "", "", "", "fetchhive"),
        ("fast", "default", "openai", "openai/fast", "fetchhive"),
        ("(other)", "(other)", "(other)", "(other)", "fetchhive"),
    }, label_sets
    assert total(found, "promptdeck_runs_total", deployment="(other)", status="success") == 1
    assert "typo-" not in httpx.get(deck.url + "/metrics").text


def test_token_protects_metrics(start_deck: StartDeck) -> None:
    deck = start_deck(metrics_token="s3cret-scrape")
    assert httpx.get(deck.url + "/metrics").status_code == 401
    wrong = httpx.get(deck.url + "/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    assert scrape(deck.url, Authorization="Bearer s3cret-scrape")


def test_loopback_only_without_a_token(start_deck: StartDeck) -> None:
    """A proxy on the same host that forwards a remote caller (X-Forwarded-For, trusted from
    loopback by uvicorn) is refused; a local scraper is answered."""
    deck = start_deck()
    assert scrape(deck.url)
    forwarded = httpx.get(deck.url + "/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert forwarded.status_code == 403, forwarded.text
    assert "PROMPTDECK_METRICS_TOKEN" in forwarded.text


def test_metrics_off(start_deck: StartDeck) -> None:
    deck = start_deck(metrics=False)
    invoke(deck, "fast", expect=200)
    assert httpx.get(deck.url + "/metrics").status_code == 404
    assert deck.services.metrics is None and not deck.services.engine.observers


def test_dashboard_queries_name_real_series(start_deck: StartDeck) -> None:
    """Every series the Grafana dashboard queries is one /metrics serves (after some runs)."""
    deck = start_deck()
    invoke(deck, "fast", expect=200)
    invoke_streamed(deck, "fast")
    deck.flush()
    eventually(lambda: total(scrape(deck.url), "promptdeck_runs_total") == 2)
    served = declared(httpx.get(deck.url + "/metrics").text)
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert len(expressions) >= 7
    used = {name for expr in expressions for name in re.findall(r"\bpromptdeck_[a-z_]+", expr)}
    assert used and used <= served, used - served
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("request rate", "error rate", "latency", "first token", "tokens", "cost", "writer queue"):
        assert topic in titles, topic


# ── several worker processes: one PROMETHEUS_MULTIPROC_DIR ────────────────────


@pytest.fixture
def two_workers(upstream: FakeOpenAI, tmp_path: Path) -> Iterator[tuple[list[str], str]]:
    """Two `promptdeck serve` processes on one database and one multiprocess directory, as
    uvicorn's `--workers 2` would run them; yields their URLs and the admin key."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = cli_env(tmp_path / "data", PROMPTDECK_OPENAI_BASE_URL=upstream.url)
    key = init_key(env)
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for _ in range(2):
            port = free_port()
            worker_env = env | {"PROMPTDECK_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(shared)}
            processes.append(
                subprocess.Popen(
                    [str(PROMPTDECK), "serve"],
                    env=worker_env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(urls, processes, strict=True):
            wait_until_up(url, process)
        push_prompt(urls[0], key, "fast", "openai/fast")
        yield urls, key
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, "promptdeck serve exited"
        assert time.monotonic() < deadline, "promptdeck serve did not start"
        time.sleep(0.05)


def test_workers_share_one_multiprocess_directory(two_workers: tuple[list[str], str]) -> None:
    """A run in each worker: a scrape of either counts both, and the writer's queue gauge is
    summed over the live workers."""
    urls, key = two_workers
    for url in urls:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            invoke(client, "fast", expect=200)

    def both_counted(url: str) -> bool:
        return total(scrape(url), "promptdeck_runs_total", deployment="fast", status="success") == 2

    eventually(lambda: both_counted(urls[0]) and both_counted(urls[1]))
    found = scrape(urls[1])
    assert total(found, "promptdeck_http_requests_total", route="/v1/prompt/invoke", status="200") == 2
    assert total(found, "promptdeck_tokens_total", deployment="fast", kind="input") == 2 * 11
    assert "promptdeck_run_writer_queue_depth" in found
    assert total(found, "promptdeck_circuit_breakers", provider="openai", state="open") == 0


def test_an_open_circuit_is_shown(start_deck: StartDeck, upstream: FakeOpenAI) -> None:
    """Five failed calls in a row open the upstream's circuit: the gauge counts it, and the
    attempt the breaker refused is no upstream call (not timed)."""
    deck = start_deck()
    upstream.scripts["fast"] = Script(status=503)
    for _ in range(3):  # two attempts each
        assert invoke(deck, "fast").status_code >= 500
    attempts = "promptdeck_upstream_attempt_duration_seconds_count"
    eventually(lambda: total(scrape(deck.url), "promptdeck_runs_total") == 3)
    found = scrape(deck.url)
    assert total(found, "promptdeck_circuit_breakers", provider="openai", state="open") == 1
    assert total(found, attempts, outcome="error") == upstream.count("fast") == 5
