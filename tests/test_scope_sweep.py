"""What each key scope allows on the admin API (issue 16, "Keys"), checked on every `/api/` route
the app routes (`tests.support.app_routes`), so a route added later is held to the same rule:

* an `invoke` key: 403 on every route, in the admin error shape;
* a `read` key: 403 on every change, and never 403 on a read, except the reads listed below;
* an `admin` key: never 403.

The scope is checked before the path's objects are looked up, so the path parameters need no
real objects: a 404 for a read key is as good as a 200.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from promptdeck.surfaces.callers import OPEN_PATHS
from tests.conftest import Deck
from tests.support.app_routes import AppRoute, app_routes
from tests.support.route_answers import forbidden_problem

# Reads a `read` key may not make, and why.
ADMIN_ONLY_READS = {
    "GET /api/keys": "key names and prefixes are for admins (console: owners only)",
    "GET /api/audit": "who did what is for admins (console: owners only)",
    "GET /api/audit/export": "the audit log, as a file",
    "GET /api/workspaces": "the instance's workspaces are for instance administrators",
}
# Changes a `read` key may make, and why.
READ_CHANGES = {
    "POST /api/deployments/{name}/payload": "renders the provider request a call would send; changes nothing",
}


def api_routes(deck: Deck) -> list[AppRoute]:
    routes = [r for r in app_routes(deck.live.settings, deck.services) if r.path.startswith("/api/")]
    return [r for r in routes if r.path not in OPEN_PATHS]


def probe_path(route: AppRoute) -> str:
    return route.fill(dict.fromkeys(route.slots(), "no-such-thing"))


@pytest.fixture
def keys(sqlite_deck: Deck) -> Iterator[dict[str, httpx.Client]]:
    """A client per scope on the same workspace."""
    clients = {"admin": sqlite_deck.client()}
    with sqlite_deck.client() as admin:
        for scope in ("invoke", "read"):
            made = admin.post("/api/keys", json={"name": f"{scope}-only", "scopes": [scope]})
            assert made.status_code == 201, made.text
            clients[scope] = sqlite_deck.client(made.json()["api_key"])
    yield clients
    for client in clients.values():
        client.close()


def test_scopes_on_every_admin_route(sqlite_deck: Deck, keys: dict[str, httpx.Client]) -> None:
    routes = api_routes(sqlite_deck)
    assert len(routes) > 50, routes  # the enumeration found the admin API
    known = {str(r) for r in routes}
    stale = [key for key in (*ADMIN_ONLY_READS, *READ_CHANGES) if key not in known]
    assert not stale, f"listed routes the app no longer has: {stale}"
    problems: list[str | None] = []
    # Changes last, deletions after the rest: the admin key really performs them.
    for route in sorted(routes, key=lambda r: (r.method != "GET", r.method == "DELETE")):
        path, key = probe_path(route), str(route)
        problems.append(
            forbidden_problem(f"{key} with an invoke key", keys["invoke"].request(route.method, path))
        )
        as_reader = keys["read"].request(route.method, path)
        if (route.method == "GET" and key not in ADMIN_ONLY_READS) or key in READ_CHANGES:
            if as_reader.status_code in (401, 403):
                problems.append(f"{key} with a read key: {as_reader.status_code} {as_reader.text[:200]}")
        else:
            problems.append(forbidden_problem(f"{key} with a read key", as_reader))
        if route.path != "/api/keys/{key_id}/revoke":  # every answer but a 403 will do
            as_admin = keys["admin"].request(route.method, path)
            if as_admin.status_code in (401, 403):
                problems.append(f"{key} with an admin key: {as_admin.status_code} {as_admin.text[:200]}")
    found = [p for p in problems if p]
    assert not found, f"{len(found)} problems:\n" + "\n".join(found)
