"""`promptdeck eval` of the real console script against a live server: exit 0 when every gate
passes, 3 when one fails (its own `--min-pass-rate` or the variant's gates), and `eval compare`."""

from __future__ import annotations

from pathlib import Path

from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, Script, StartDeck
from tests.test_cli import cli_env, fails, promptdeck, succeeds
from tests.test_evaluations import make_dataset, new_version

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck
GATE_FAILED = 3


def test_eval_exits_non_zero_when_a_gate_fails(
    start_deck: StartDeck, upstream: FakeOpenAI, tmp_path: Path
) -> None:
    upstream.scripts["bad"] = Script(chunks=("nope",))
    deck = start_deck()
    with deck.client() as client:
        make_dataset(client, ["Hello", "world", "Hello"])
        bad = new_version(client, "openai/bad")
        gates = [{"name": "quality", "dataset": "golden", "no_regressions": True}]
        client.put("/api/deployments/fast/variants/default/config", json={"gates": gates}).raise_for_status()
    env = cli_env(
        tmp_path / "unused", PROMPTDECK_URL=deck.url, PROMPTDECK_API_KEY=deck.admin_key, COLUMNS="200"
    )

    passed = succeeds(env, "eval", "fast", "--dataset", "golden", "--version", "1", "--min-pass-rate", "0.9")
    assert (
        "version 1 on dataset golden: done" in passed and "100.0%" in passed and "every gate passed" in passed
    )
    first = passed.split()[1].rstrip(":")

    served = succeeds(env, "eval", "fast", "-d", "golden", "--deployment", "fast", "--variant", "default")
    assert "(fast/default)" in served and "says it" in served and "100.0%" in served

    own_gate = promptdeck(
        env, "eval", "fast", "-d", "golden", "--version", str(bad), "--min-pass-rate", "0.5"
    )
    assert own_gate.returncode == GATE_FAILED, own_gate
    assert "0.0%" in own_gate.stdout and "--min-pass-rate needs 50.0%" in own_gate.stderr
    second = own_gate.stdout.split()[1].rstrip(":")

    variant_gate = promptdeck(
        env, "eval", "fast", "-d", "golden", "--version", str(bad), "--gate-of", "fast/default"
    )
    assert variant_gate.returncode == GATE_FAILED, variant_gate
    assert "gate failed" in variant_gate.stderr and "'quality'" in variant_gate.stderr

    compared = succeeds(env, "eval", "compare", first, second)
    assert "3 case(s) went from pass to fail" in compared and compared.index("#1") < compared.index("#3")

    assert "no dataset" in fails(env, "eval", "fast", "-d", "missing", "--version", "1")
    assert "--version N, or --deployment and --variant" in fails(env, "eval", "fast", "-d", "golden")
    assert "two or more" in fails(env, "eval", "compare", first)
