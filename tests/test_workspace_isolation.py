"""Nothing crosses workspaces (issue 16): workspace B's admin key, on every route the app
routes, on workspace A's objects, gets a 404 in the route's own error shape, and sees none of
A's objects in any list, export or report.

The routes are read from the app (`tests.support.app_routes`), so a route added later is swept
too: a path parameter this module cannot fill (`SLOTS`), or a route without a path parameter
that no table below places, fails the sweep until someone says how to probe it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import make_settings, seed
from tests.support.app_routes import AppRoute, app_routes
from tests.support.fake_openai import FakeOpenAI, prompt_document, sqlite_url
from tests.support.invoking import INPUTS
from tests.support.live_server import LiveServer, start_server
from tests.support.postgres import PostgresServer
from tests.support.route_answers import (
    body_text,
    fill,
    forbidden_problem,
    leaked,
    not_found_problem,
    send,
    usage_counts_runs,
)

MARK = uuid.uuid4().hex[:8]
SLUG = f"alpha-{MARK}"  # A's prompt, and its deployment of the same name
DATASET = f"alpha-set-{MARK}"
PRICED_MODEL = f"openai/alpha-price-{MARK}"
CREDENTIAL_PROVIDER = "anthropic"  # A stores a credential for it; B may store its own
B_MARK = f"bravo-{MARK}"  # in what B creates: none of it may show in A's answers

# Path parameters (with the segment before them: one name means different things under
# different parents) -> which of A's values fills them. A new parameter fails the sweep.
SLOT_OF_A = {
    "deployments/{name}": "slug",
    "variants/{variant}": "variant",
    "prompts/{slug}": "slug",
    "prompt/{slug}": "slug",
    "versions/{number}": "version",
    "datasets/{name}": "dataset",
    "cases/{case_id}": "case_id",
    "evaluations/{evaluation_id}": "evaluation_id",
    "runs/{run_id}": "run_id",
    "sessions/{session_id}": "session_id",
    "webhooks/{endpoint_id}": "endpoint_id",
    "keys/{key_id}": "key_id",
    "users/{end_user:path}": "end_user",
    "requests/{request_id}": "request_id",
    "providers/{provider}": "provider",
    "prices/{model:path}": "priced_model",
    "limits/{limit_id}": "limit_id",
    "budgets/{budget_id}": "budget_id",
    "workspaces/{workspace_id}": "workspace_id",
}
# Names from a namespace every workspace shares (provider types, model names): B acting on
# one acts on its own setting of that name, never on A's. B's answer is not a 404 but must not
# show A's value, and A's setting must be intact afterwards (`test_isolation` checks).
SHARED_NAMESPACE = {"providers/{provider}", "prices/{model:path}"}
# Workspace management is for instance administrators: B's admin key is refused on A's
# workspace exactly as on one that does not exist, which says nothing of A's.
INSTANCE_SLOTS = {"workspaces/{workspace_id}"}
INSTANCE_ONLY: dict[str, dict[str, Any]] = {  # why, and the probe
    "GET /api/workspaces": {},  # lists every workspace
    "POST /api/workspaces": {"json": {"name": f"ws-{B_MARK}"}},  # makes one
}

VERSION_BODY = {
    "model": "openai/fast",
    "messages": [{"role": "user", "content": "Summarize for {{audience}}: {{text}}"}],
    "inputs": {"text": {"type": "string"}, "audience": {"type": "string"}},
}
VELLUM_INPUTS = [{"name": name, "type": "STRING", "value": value} for name, value in INPUTS.items()]

# Bodies and queries of routes that need one to get past validation to the look-up.
BODIES: dict[str, Any] = {
    "PATCH /api/prompts/{slug}": {"description": "changed by B"},
    "POST /api/prompts/{slug}/versions": VERSION_BODY,
    "PUT /api/deployments/{name}/variants/{variant}": {"version": 1},
    "POST /api/deployments/{name}/variants/{variant}/check": {"version": 1},
    "POST /api/deployments/{name}/variants/{variant}/gates/check": {"version": 1},
    "PUT /api/deployments/{name}/variants/{variant}/config": {"follows_latest": False},
    "POST /api/deployments/{name}/payload": {"inputs": INPUTS},
    "PUT /api/providers/{provider}/credential": {"api_key": f"sk-{B_MARK}"},
    "PUT /api/prices/{model:path}": {"input_per_mtok": 9, "output_per_mtok": 9},
    "POST /api/runs/{run_id}/feedback": {"score": 0.0, "correction": B_MARK},
    "POST /api/runs/{run_id}/add-to-dataset": {"dataset": DATASET},
    "PATCH /api/webhooks/{endpoint_id}": {"description": B_MARK},
    "POST /api/prompts/{slug}/evaluations": {"dataset": DATASET, "version": 1},
    "POST /api/prompts/{slug}/datasets": {"name": f"set-{B_MARK}"},
    "PATCH /api/prompts/{slug}/datasets/{name}": {"description": B_MARK},
    "POST /api/prompts/{slug}/datasets/{name}/cases": {"cases": [{"inputs": INPUTS}]},
    "PUT /api/prompts/{slug}/datasets/{name}/cases": {"cases": [{"inputs": INPUTS}]},
    "PUT /api/prompts/{slug}/datasets/{name}/cases/{case_id}": {"inputs": INPUTS},
    "POST /api/prompts/{slug}/datasets/{name}/upload": {"format": "jsonl", "content": '{"inputs": {}}'},
    "POST /prompt/{slug}/run": {"variables": INPUTS},
    "PATCH /api/workspaces/{workspace_id}": {"name": f"alpha-workspace-{MARK}"},
}
QUERIES: dict[str, dict[str, str]] = {"GET /api/prompts/{slug}/diff": {"from": "1", "to": "2"}}

# Lists, exports and reports: B's answer must hold none of A's values (or markers). True where
# A's own answer shows one of A's values, so the check is known to look at the right thing.
COLLECTIONS = {
    "GET /api/deployments": True,
    "GET /api/export": True,
    "GET /api/keys": True,
    "GET /api/prices": True,
    "GET /api/prompts": True,
    "GET /api/providers": True,
    "GET /api/pull": True,
    "GET /api/runs": True,
    "GET /api/runs/export": True,
    "GET /api/runs/metadata-keys": True,
    "GET /api/settings/retention": False,  # a number; A's own is checked intact instead
    "GET /api/usage": False,  # totals only: A's calls would show as B's counts, checked below
    "GET /api/users": True,
    "GET /api/webhooks": True,
    "GET /v1/models": True,
    "GET /api/audit": True,
    "GET /api/audit/export": True,
    "GET /api/workspace": False,  # the caller's own workspace
    "GET /api/limits": True,
    "GET /api/budgets": True,
}
# Routes without a path parameter whose body or query names A's objects: a 404 for B.
REFERENCES: dict[str, dict[str, Any]] = {
    "POST /api/deployments": {"json": {"name": f"dep-{B_MARK}", "prompt": SLUG}},
    "GET /api/evaluations/compare": {"params": {"ids": "{evaluation_id},{evaluation_id_2}"}},
    "POST /api/playground/run": {"json": {"prompt": SLUG, "version": 1, "inputs": INPUTS}},
    "POST /v1/prompt/invoke": {"json": {"deployment": SLUG, "inputs": INPUTS}},
    "POST /v1/invoke": {"json": {"deployment": SLUG, "inputs": INPUTS}},
    "POST /v1/chat/completions": {
        "json": {"model": SLUG, "messages": [{"role": "user", "content": "hi"}], "variables": INPUTS}
    },
    "POST /v1/execute-prompt": {"json": {"prompt_deployment_name": SLUG, "inputs": VELLUM_INPUTS}},
    "POST /v1/execute-prompt-stream": {"json": {"prompt_deployment_name": SLUG, "inputs": VELLUM_INPUTS}},
    "POST /v1/deployments/provider-payload": {"json": {"deployment_name": SLUG, "inputs": VELLUM_INPUTS}},
    "POST /v1/submit-completion-actuals": {"json": {"actuals": [{"id": "{execution_id}", "quality": 1}]}},
}
# The same routes, reaching A's objects another way (by id rather than by name).
MORE_REFERENCES: list[tuple[str, dict[str, Any]]] = [
    (
        "POST /v1/execute-prompt",
        {"json": {"prompt_deployment_id": "{deployment_id}", "inputs": VELLUM_INPUTS}},
    ),
    ("POST /v1/deployments/provider-payload", {"json": {"deployment_id": "{deployment_id}", "inputs": []}}),
    (
        "POST /v1/submit-completion-actuals",
        {"json": {"actuals": [{"external_id": "{external_id}", "quality": 1}]}},
    ),
    ("POST /v1/prompt/invoke", {"json": {"deployment": SLUG, "variant": "beta", "inputs": INPUTS}}),
    ("POST /api/keys", {"json": {"name": f"key-{B_MARK}", "deployments": [SLUG]}}),
    ("PUT /api/limits", {"json": {"subject_kind": "key", "subject": "{key_id}", "requests_per_minute": 1}}),
    (
        "PUT /api/budgets",
        {"json": {"subject_kind": "key", "subject": "{key_id}", "period": "day", "amount_usd": 1}},
    ),
]
# Probes refused in the body's validation rather than with a 404: B must get the very answer
# a name that exists nowhere gets (A's name in the message is B's own word, echoed).
AS_IF_ABSENT = {"POST /api/keys", "PUT /api/limits", "PUT /api/budgets"}
# Routes without a path parameter that create in the caller's own workspace: B may use A's
# very names (namespaces are per workspace). Run after every probe above, as they give B
# objects of A's names.
OWN_WRITES: dict[str, dict[str, Any]] = {
    "POST /api/prompts": {"json": {"slug": f"p-{B_MARK}", "description": B_MARK}},
    "POST /api/push": {"json": prompt_document(SLUG, "openai/fast")},
    "POST /api/push/batch": {"json": {"documents": [prompt_document(f"batch-{B_MARK}", "openai/fast")]}},
    "POST /api/import": {"content": "{b_export}", "headers": {"content-type": "application/gzip"}},
    "POST /api/keys": {"json": {"name": f"key-{B_MARK}", "scopes": ["read"]}},
    "POST /api/webhooks": {"json": {"url": f"http://127.0.0.1:9/{B_MARK}", "events": ["version.created"]}},
    "PUT /api/settings/retention": {"json": {"days": 3}},
    "PUT /api/limits": {"json": {"subject_kind": "workspace", "requests_per_minute": 7}},
    "PUT /api/budgets": {"json": {"subject_kind": "workspace", "period": "day", "amount_usd": 7}},
}
WORKSPACE_FREE = {"GET /api/health": "liveness: answers without a key and names no workspace"}


@dataclass
class World:
    """One server; workspace A with one of every object, workspace B with only its admin key."""

    live: LiveServer
    a_key: str
    b_key: str
    a: dict[str, str]  # SLOT_OF_A's value names -> A's values
    routes: list[AppRoute] = field(default_factory=list)

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.live.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    @property
    def markers(self) -> set[str]:
        """A's values that no other workspace could show by chance."""
        return {value for name, value in self.a.items() if name not in ("variant", "version", "provider")}


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: {response.text}"
    )
    return response.json() if "json" in response.headers.get("content-type", "") else response.content


def build_a(client: httpx.Client, flush: Callable[[], None], routes: set[str]) -> dict[str, str]:
    """Workspace A's objects, made through the admin API and the dialects with A's key."""
    ok(client.post("/api/push", json=prompt_document(SLUG, "openai/fast", ("default", "beta"))))
    ok(client.post(f"/api/prompts/{SLUG}/versions", json=VERSION_BODY), 201)
    cases = [{"inputs": INPUTS, "expected": "Hello"}]
    evaluators = [{"type": "contains", "name": "says it"}]
    ok(
        client.post(
            f"/api/prompts/{SLUG}/datasets", json={"name": DATASET, "cases": cases, "evaluators": evaluators}
        ),
        201,
    )
    case_id = ok(client.get(f"/api/prompts/{SLUG}/datasets/{DATASET}/cases"))["data"][0]["id"]
    session = {"session_id": f"alpha-session-{MARK}", f"alpha_team_{MARK}": "x"}
    user = f"alpha-user-{MARK}"
    request_id = ok(
        client.post(
            "/v1/prompt/invoke",
            json={"deployment": SLUG, "inputs": INPUTS, "user": user, "metadata": session},
        )
    )["request_id"]
    external_id = f"alpha-external-{MARK}"
    executed = ok(
        client.post(
            "/v1/execute-prompt",
            json={"prompt_deployment_name": SLUG, "inputs": VELLUM_INPUTS, "external_id": external_id},
        )
    )
    flush()
    run_id = ok(client.get(f"/api/runs/{request_id}"))["id"]
    ok(client.post(f"/api/runs/{run_id}/feedback", json={"score": 1.0}), 201)
    evaluations = [
        ok(client.post(f"/api/prompts/{SLUG}/evaluations", json={"dataset": DATASET, "version": 1}), 202)[
            "id"
        ]
        for _ in range(2)
    ]
    hook = {"url": f"http://127.0.0.1:9/alpha-hook-{MARK}", "events": ["version.created"]}
    endpoint_id = ok(client.post("/api/webhooks", json=hook), 201)["id"]
    credential = {"api_key": f"sk-alpha-{MARK}", "base_url": f"http://127.0.0.1:9/alpha-cred-{MARK}"}
    ok(client.put(f"/api/providers/{CREDENTIAL_PROVIDER}/credential", json=credential))
    ok(client.put(f"/api/prices/{PRICED_MODEL}", json={"input_per_mtok": 1, "output_per_mtok": 2}))
    key_id = ok(client.post("/api/keys", json={"name": f"alpha-key-{MARK}", "scopes": ["invoke"]}), 201)["id"]
    ok(client.put("/api/settings/retention", json={"days": 30}))
    deployment_id = ok(client.get(f"/api/deployments/{SLUG}"))["id"]
    quotas = {}
    if "PUT /api/limits" in routes:
        limit = {"subject_kind": "deployment", "subject": SLUG, "requests_per_minute": 1000}
        quotas["limit_id"] = ok(client.put("/api/limits", json=limit))["id"]
    if "PUT /api/budgets" in routes:
        budget = {"subject_kind": "end_user", "subject": user, "period": "month", "amount_usd": 1000}
        quotas["budget_id"] = ok(client.put("/api/budgets", json=budget))["id"]
    return quotas | {
        "slug": SLUG,
        "variant": "beta",
        "version": "1",
        "dataset": DATASET,
        "case_id": case_id,
        "evaluation_id": evaluations[0],
        "evaluation_id_2": evaluations[1],
        "run_id": run_id,
        "request_id": request_id,
        "execution_id": executed["execution_id"],
        "external_id": external_id,
        "deployment_id": deployment_id,
        "session_id": session["session_id"],
        "end_user": user,
        "endpoint_id": endpoint_id,
        "key_id": key_id,
        "provider": CREDENTIAL_PROVIDER,
        "priced_model": PRICED_MODEL,
        "credential_url": credential["base_url"],
        "hook_url": hook["url"],
        "metadata_key": f"alpha_team_{MARK}",
    }


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory: Path = tmp_path_factory.mktemp("isolation")
    if request.param == "sqlite":
        database_url = sqlite_url(directory)
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        database_url = server.new_database()
    with FakeOpenAI() as upstream:
        settings = make_settings(
            database_url,
            directory,
            openai_base_url=upstream.url,
            writer_flush_seconds=0.05,
            webhooks_allow_private=True,
        )
        workspace_id, a_key = seed(settings)
        live = start_server(settings)
        try:
            routes = app_routes(settings, live.services)
            with httpx.Client(
                base_url=live.url, headers={"Authorization": f"Bearer {a_key}"}, timeout=60
            ) as client:

                def flush() -> None:
                    live.call(live.services.writer.flush)

                a = build_a(client, flush, {str(r) for r in routes}) | {"workspace_id": workspace_id}
                # A's key is the instance administrator's (`init`'s): it opens B, with B's admin key.
                b_key = ok(client.post("/api/workspaces", json={"name": f"workspace-{B_MARK}"}), 201)[
                    "admin_key"
                ]
            yield World(live, a_key, b_key, a, routes)
        finally:
            live.stop()


# --- what one probe sends, and what it must get back --------------------------------------------


def route_probe(route: AppRoute, values: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The path and request arguments that reach A's object through `route`."""
    key = str(route)
    probe: dict[str, Any] = {}
    if key in BODIES:
        probe["json"] = fill(BODIES[key], values)
    if key in QUERIES:
        probe["params"] = QUERIES[key]
    return route.fill({slot: values[SLOT_OF_A[slot]] for slot in route.slots()}), probe


def write_order(route: AppRoute) -> tuple[int, int]:
    """Reads first, then changes, then revocations and deletions, each deepest first (a case
    before its dataset), and workspace management last (A's control archives its workspace,
    then restores it)."""
    if any(slot in INSTANCE_SLOTS for slot in route.slots()):
        return 3, 0
    if route.method == "GET":
        return 0, 0
    ends = route.method == "DELETE" or str(route) in ENDINGS
    return (2 if ends else 1), -len(route.path)  # e.g. one case changed before all are replaced


ENDINGS = {  # changes that end an object or replace its parts: after every other change
    "POST /api/keys/{key_id}/revoke",
    "PUT /api/prompts/{slug}/datasets/{name}/cases",
}


def placed(route: AppRoute) -> bool:
    """Whether this module knows how to probe `route` (`test_every_route_is_placed` says why not)."""
    if route.params:
        return all(slot in SLOT_OF_A for slot in route.slots())
    tables = (COLLECTIONS, REFERENCES, OWN_WRITES, WORKSPACE_FREE, INSTANCE_ONLY)
    return any(str(route) in table for table in tables)


# --- the sweep ---------------------------------------------------------------------------------------


def test_every_route_is_placed(world: World) -> None:
    """Each route is probed by one table here, or is workspace-free with a reason: a route this
    module does not know fails here, so the sweep cannot silently pass it by."""
    unplaced = []
    for route in world.routes:
        if placed(route):
            continue
        unknown = [slot for slot in route.slots() if slot not in SLOT_OF_A]
        where = f"no value of A's for {unknown} (add it to SLOT_OF_A)" if unknown else "add it to a table"
        unplaced.append(f"{route}: {where}")
    known = {str(r) for r in world.routes}
    tables = (COLLECTIONS, REFERENCES, OWN_WRITES, WORKSPACE_FREE, INSTANCE_ONLY, BODIES, QUERIES)
    stale = [key for table in (*tables, dict(MORE_REFERENCES)) for key in table if key not in known]
    assert not unplaced, "\n".join(unplaced)
    assert not stale, f"tables name routes the app no longer has: {stale}"


def test_workspace_b_reaches_nothing_of_a(world: World) -> None:
    """B's key on every route with A's ids and names: 404 in the route's shape; every list of
    B's without A's objects; then B's own writes leave A untouched; then A's key on the same
    requests (the control) does find each object, so each 404 above was for the right reason."""
    values = world.a
    routes = {str(r) for r in world.routes}
    problems: list[str | None] = []
    with world.client(world.b_key) as b, world.client(world.a_key) as a:
        collections = {key: shows for key, shows in COLLECTIONS.items() if key in routes}
        for key, shows in collections.items():
            answer = send(a, key)
            if answer.status_code != 200 or (shows and not leaked(answer, world.markers)):
                problems.append(
                    f"control {key}: A's own answer shows none of A's objects: {answer.text[:200]}"
                )
            b_answer = send(b, key)
            if b_answer.status_code != 200:
                problems.append(f"{key} as B: {b_answer.status_code}: {b_answer.text[:200]}")
            if found := leaked(b_answer, world.markers):
                problems.append(f"{key} as B shows A's {found}")
        if not usage_counts_runs(ok(send(a, "GET /api/usage"))):
            problems.append("control GET /api/usage: A's own report counts none of A's runs")
        usage = ok(send(b, "GET /api/usage"))
        if usage_counts_runs(usage):
            problems.append(f"GET /api/usage as B counts A's runs: {usage}")
        for key, probe in INSTANCE_ONLY.items():
            problems.append(forbidden_problem(f"{key} as B", send(b, key, probe)))

        for key, probe in [*REFERENCES.items(), *MORE_REFERENCES]:
            path = key.split(" ", 1)[1]
            answer = send(b, key, fill(probe, values))
            if key in AS_IF_ABSENT:
                problems.append(as_if_absent(b, key, probe, values, answer))
                continue
            problems.append(not_found_problem(f"{key} {probe} as B", path, answer))

        swept = sorted((r for r in world.routes if r.params and placed(r)), key=write_order)
        for route in swept:
            problems.append(b_problem(b, route, values, world.markers))

        problems.extend(a_intact(a, values, "B's calls"))
        exported = send(b, "GET /api/export").content
        for key, probe in OWN_WRITES.items():
            if key not in routes:
                continue
            answer = send(b, key, dict(probe, content=exported) if "content" in probe else probe)
            if answer.status_code >= 400:
                problems.append(f"{key} as B, in its own workspace: {answer.status_code} {answer.text[:200]}")
        for key in collections:
            if B_MARK in body_text(send(a, key)):
                problems.append(f"{key} as A shows what B created")
        problems.extend(a_intact(a, values, "B's own writes"))

        for route in swept:  # the control: A's key finds what B's did not
            path, probe = route_probe(route, values)
            answer = a.request(route.method, path, **probe)
            if answer.status_code in (404, 405, 422) or answer.status_code >= 500:
                problems.append(f"control {route} as A: {answer.status_code} {answer.text[:200]}")
    found = [p for p in problems if p]
    assert not found, f"{len(found)} problems:\n" + "\n".join(found)


def as_if_absent(
    b: httpx.Client, key: str, probe: dict[str, Any], values: dict[str, str], answer: httpx.Response
) -> str | None:
    """Whether B's `answer` on A's names is what the same probe on names that exist nowhere gets."""
    nowhere = fill(probe, dict.fromkeys(values, "nowhere"))
    nowhere = orjson.loads(orjson.dumps(nowhere).replace(SLUG.encode(), b"nowhere"))
    absent = send(b, key, nowhere)
    if answer.status_code == absent.status_code >= 400:
        return None
    return f"{key} {probe} as B: {answer.status_code}, {absent.status_code} for names that exist nowhere"


def b_problem(b: httpx.Client, route: AppRoute, values: dict[str, str], markers: set[str]) -> str | None:
    """What is wrong with B's answer on `route` filled with A's values (None: nothing)."""
    path, probe = route_probe(route, values)
    answer = b.request(route.method, path, **probe)
    slots = route.slots()
    if any(slot in SHARED_NAMESPACE for slot in slots):
        if answer.status_code >= 500 or answer.status_code in (403, 422):
            return f"{route} as B (its own {route.params}): {answer.status_code} {answer.text[:200]}"
        found = leaked(answer, markers - {values[SLOT_OF_A[slot]] for slot in slots})  # B's own word
        return f"{route} as B shows A's {found}" if found else None
    if any(slot in INSTANCE_SLOTS for slot in slots):
        elsewhere = b.request(route.method, route.fill(dict.fromkeys(slots, "no-such-workspace")), **probe)
        if answer.status_code < 400 or (answer.status_code, answer.json()) != (
            elsewhere.status_code,
            elsewhere.json(),
        ):
            statuses = f"{answer.status_code} on A's, {elsewhere.status_code} on none"
            return f"{route} as B: {statuses}: {answer.text[:200]}"
        return None
    return not_found_problem(f"{route} as B", route.path, answer)


def a_intact(a: httpx.Client, values: dict[str, str], after: str) -> list[str]:
    """A's settings of shared names (a credential, a price) and its retention, as A made them."""
    problems = []
    if values["credential_url"] not in ok(a.get("/api/providers"), 200).__str__():
        problems.append(f"A's {CREDENTIAL_PROVIDER} credential was changed by {after}")
    if values["priced_model"] not in str(ok(a.get("/api/prices"))):
        problems.append(f"A's price override was removed by {after}")
    if ok(a.get("/api/settings/retention")).get("days") != 30:
        problems.append(f"A's retention was changed by {after}")
    return problems
