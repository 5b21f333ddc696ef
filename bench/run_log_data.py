"""Synthetic runs shaped like a busy workspace's run log, for bench/run_log_scale.py.

The shape matters more than the values: how many deployments, variants, versions and models
there are, how skewed the end users and customers are, how often a run fails, how tokens, cost
and latency are spread, and which metadata keys a run carries. Generation is seeded, so two
runs of the benchmark write the same log (apart from ids and the moving "now").

    deployments  10, traffic Zipf-skewed; 2-3 variants each (default 80 %, canary, experiment)
    versions     the default variant moves to a new version every 6-20 days; canary runs one ahead
    models       6 across 4 providers (one local, priced at 0); ~2 % of runs have no known price
    end users    5,000, Zipf (s = 1.1); 8 % of runs have none
    errors       5 % (timeouts, rate limits, upstream errors, validation errors)
    tokens       input log-normal (median 600), output log-normal (median 150)
    latency      time to first token + output tokens x the model's per-token time, with noise
    metadata     env (prod 85 % / staging), customer_id (20,000, Zipf), session_id (unique);
                 plan (80 %: free/pro/enterprise, fixed per customer), feature (70 %, 8 values),
                 score (50 %, a number in [0, 1)) — 3 to 6 keys, 5 on average
    text         inputs 80-1,200 characters, output 40-1,500, the rendered messages around them
"""

from __future__ import annotations

import itertools
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from promptdeck.domain.runs import ERROR, SUCCESS, RunRecord, new_id

SEED = 20261122
DAYS = 60
END_USERS = 5_000
CUSTOMERS = 20_000

# (provider/model, input $/Mtok, output $/Mtok, time to first token ms, ms per output token)
MODELS: tuple[tuple[str, float, float, float, float], ...] = (
    ("openai/gpt-4o-mini", 0.15, 0.60, 350.0, 9.0),
    ("openai/gpt-4o", 2.50, 10.0, 450.0, 14.0),
    ("anthropic/claude-3-5-haiku", 0.80, 4.0, 500.0, 11.0),
    ("anthropic/claude-sonnet-4", 3.0, 15.0, 900.0, 18.0),
    ("gemini/gemini-2.0-flash", 0.10, 0.40, 300.0, 6.0),
    ("local/smollm2-135m-instruct", 0.0, 0.0, 60.0, 25.0),
)

# deployment name, traffic weight, the default variant's model, the other variants' model
DEPLOYMENTS: tuple[tuple[str, float, int, int], ...] = (
    ("support-answer", 30.0, 0, 2),
    ("summarize", 18.0, 4, 0),
    ("classify-ticket", 12.0, 0, 4),
    ("extract-invoice", 9.0, 1, 3),
    ("sql-writer", 7.0, 3, 1),
    ("translate", 6.0, 4, 0),
    ("product-qa", 6.0, 2, 3),
    ("email-draft", 5.0, 0, 1),
    ("moderation", 4.0, 5, 4),
    ("search-rerank", 3.0, 4, 5),
)
VARIANTS = (("default", 80.0), ("canary", 15.0), ("experiment", 5.0))
FEATURES = ("chat", "search", "inbox", "reports", "onboarding", "billing", "export", "mobile")
PLANS = ("free", "pro", "enterprise")
ERRORS = (
    ("upstream_timeout", "the upstream did not answer within 60 s"),
    ("rate_limited", "upstream rate limit: 429 Too Many Requests"),
    ("upstream_error", "upstream answered HTTP 500"),
    ("validation_error", "missing required input: text"),
)
DIALECTS = (("fetchhive", 45.0), ("openai", 30.0), ("vellum", 15.0), ("traceport", 10.0))
API_KEYS = tuple(uuid.UUID(int=i + 1).hex for i in range(4))
LANGUAGES = ("en", "de", "fr", "es", "ja", "pt")

CORPUS = (
    "Our order #4821 arrived with a cracked screen and the replacement has not shipped yet. "
    "I have been a customer for six years and would like a refund or an exchange before the "
    "holidays. The tracking page says delivered but the parcel locker was empty when I checked "
    "it on Tuesday evening. Please summarize the attached thread, classify the request and draft "
    "a polite answer that mentions our return policy, the expected delivery window and a voucher. "
    "Quarterly revenue grew 12 percent while operating costs were flat; the board asked for a "
    "breakdown by region and a forecast that accounts for the new pricing tiers announced in May. "
) * 8


def zipf_cumulative(n: int, s: float) -> list[float]:
    """Cumulative weights of a Zipf distribution over n ranks, for random.choices."""
    return list(itertools.accumulate(1.0 / (rank**s) for rank in range(1, n + 1)))


def plan_of(customer: int) -> str:
    """A customer's plan never changes: one in ten is enterprise, three in ten pro."""
    bucket = customer % 10
    return "enterprise" if bucket == 0 else "pro" if bucket <= 3 else "free"


@dataclass(frozen=True)
class Shape:
    """Where the synthetic log sits in time: DAYS days ending at `now` (or another span: runs
    arriving live at N runs/s span total / N seconds)."""

    workspace_id: str
    now: datetime
    span: timedelta = timedelta(days=DAYS)

    @property
    def start(self) -> datetime:
        return self.now - self.span


class RunFactory:
    """Makes runs in time order, a segment at a time, so memory stays bounded at any total."""

    def __init__(self, shape: Shape, total: int, seed: int = SEED) -> None:
        self.shape = shape
        self.total = total
        self.made = 0
        self.random = random.Random(seed)
        self._users = [f"user-{i:05d}" for i in range(END_USERS)]
        self._users_cw = zipf_cumulative(END_USERS, 1.1)
        self._customers_cw = zipf_cumulative(CUSTOMERS, 1.05)
        self._deployments_cw = list(itertools.accumulate(d[1] for d in DEPLOYMENTS))
        self._variants_cw = list(itertools.accumulate(v[1] for v in VARIANTS))
        self._dialects_cw = list(itertools.accumulate(d[1] for d in DIALECTS))
        # every deployment's default variant moves to a new version every 6-20 days
        self._version_days = [self.random.uniform(6.0, 20.0) for _ in DEPLOYMENTS]
        self._deployment_ids = [uuid.uuid5(uuid.NAMESPACE_DNS, d[0]).hex for d in DEPLOYMENTS]

    def segments(self, size: int) -> Iterator[list[RunRecord]]:
        while self.made < self.total:
            count = min(size, self.total - self.made)
            yield self.segment(count)

    def segment(self, count: int) -> list[RunRecord]:
        """The next `count` runs, in time order."""
        span = (self.shape.now - self.shape.start).total_seconds()
        first = self.made / self.total * span
        last = (self.made + count) / self.total * span
        offsets = sorted(self.random.uniform(first, last) for _ in range(count))
        self.made += count
        pick = self.random
        users = pick.choices(range(END_USERS), cum_weights=self._users_cw, k=count)
        customers = pick.choices(range(CUSTOMERS), cum_weights=self._customers_cw, k=count)
        deployments = pick.choices(range(len(DEPLOYMENTS)), cum_weights=self._deployments_cw, k=count)
        variants = pick.choices(range(len(VARIANTS)), cum_weights=self._variants_cw, k=count)
        dialects = pick.choices(range(len(DIALECTS)), cum_weights=self._dialects_cw, k=count)
        return [
            self._run(offset, user, customer, deployment, variant, dialect)
            for offset, user, customer, deployment, variant, dialect in zip(
                offsets, users, customers, deployments, variants, dialects, strict=True
            )
        ]

    def _run(
        self, offset: float, user: int, customer: int, deployment: int, variant: int, dialect: int
    ) -> RunRecord:
        pick = self.random
        name, _, default_model, other_model = DEPLOYMENTS[deployment]
        variant_name = VARIANTS[variant][0]
        if variant_name == "experiment" and deployment % 3 == 2:  # a third have no experiment variant
            variant_name = "canary"
        model_name, input_price, output_price, ttft, per_token = MODELS[
            default_model if variant_name == "default" else other_model
        ]
        provider = model_name.split("/", 1)[0]
        day = offset / 86400.0
        version = 1 + int(day / self._version_days[deployment]) + (variant_name != "default")
        failed = pick.random() < 0.05
        input_tokens = max(12, int(pick.lognormvariate(math.log(600), 0.8)))
        cached = int(input_tokens * pick.choice((0.0, 0.0, 0.5, 0.8)))
        output_tokens = 0 if failed else max(1, int(pick.lognormvariate(math.log(150), 0.9)))
        first_token_ms = ttft * pick.lognormvariate(0.0, 0.35)
        duration = first_token_ms + output_tokens * per_token * pick.lognormvariate(0.0, 0.25)
        error_code = error_message = None
        if failed:
            error_code, error_message = pick.choice(ERRORS)
            duration = 60_000.0 if error_code == "upstream_timeout" else first_token_ms * pick.random()
        cost: float | None = (input_tokens * input_price + output_tokens * output_price) / 1e6
        if pick.random() < 0.02:
            cost = None
        text = CORPUS[: pick.randint(80, 1200)]
        output = "" if failed else CORPUS[pick.randint(0, 400) :][: pick.randint(40, 1500)]
        streamed = pick.random() < 0.4
        metadata: dict[str, object] = {
            "env": "prod" if pick.random() < 0.85 else "staging",
            "customer_id": f"cus_{customer:05d}",
            "session_id": uuid.UUID(int=pick.getrandbits(128)).hex,
        }
        if pick.random() < 0.8:
            metadata["plan"] = plan_of(customer)
        if pick.random() < 0.7:
            metadata["feature"] = FEATURES[pick.randrange(len(FEATURES))]
        if pick.random() < 0.5:
            metadata["score"] = round(pick.random(), 3)
        dialect_name = DIALECTS[dialect][0]
        created_at = self.shape.start + timedelta(seconds=offset)
        return RunRecord(
            workspace_id=self.shape.workspace_id,
            dialect=dialect_name,
            deployment=name,
            streamed=streamed,
            request_id="req_" + new_id(created_at),
            id=new_id(created_at),  # as promptdeck makes them: time first
            created_at=created_at,
            deployment_id=self._deployment_ids[deployment],
            variant=variant_name,
            version_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{version}").hex,
            version_number=version,
            model=model_name,
            provider=provider,
            inputs={"text": text, "language": LANGUAGES[user % len(LANGUAGES)]},
            messages=[
                {"role": "system", "content": f"You are the {name} assistant. Answer briefly and politely."},
                {"role": "user", "content": text},
            ],
            output=output,
            input_tokens=input_tokens,
            cached_input_tokens=cached,
            output_tokens=output_tokens,
            cost=cost,
            price_known=cost is not None,
            usage_estimated=provider == "local",
            attempts=[{"provider": provider, "model": model_name, "ms": round(duration, 1)}],
            duration_ms=round(duration, 2),
            ttft_ms=None if failed or not streamed else round(first_token_ms, 2),
            status=ERROR if failed else SUCCESS,
            stop_reason=None if failed else ("length" if output_tokens > 1000 else "stop"),
            error_code=error_code,
            error_message=error_message,
            metadata=metadata,
            end_user=None if pick.random() < 0.08 else self._users[user],
            external_id=("ext-" + uuid.UUID(int=pick.getrandbits(128)).hex[:20])
            if dialect_name == "vellum" and pick.random() < 0.3
            else None,
            api_key_id=API_KEYS[dialect % len(API_KEYS)],
        )
