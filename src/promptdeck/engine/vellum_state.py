"""What the Vellum dialect keeps per server, held by `Services` so two servers in one process never
share it: each workspace's deployment ids and names (Vellum callers may name a deployment by id),
and the external ids claimed by runs that have not reached the run writer yet."""

from __future__ import annotations

import time
from collections.abc import Callable

from promptdeck.domain.errors import ValidationFailed
from promptdeck.engine.ttl_cache import TtlCache
from promptdeck.store.deployments import DeploymentStore
from promptdeck.store.feedback import FeedbackStore
from promptdeck.store.run_writer import RunWriter

RELOAD_SECONDS = 1.0  # an unknown deployment id reloads a workspace's ids at most this often


class VellumState:
    def __init__(
        self,
        catalog: DeploymentStore,
        writer: RunWriter,
        feedback: FeedbackStore,
        ttl_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._writer = writer
        self._feedback = feedback
        self._clock = clock

        async def names_of(workspace_id: str) -> tuple[float, dict[str, str]]:
            found = {d.id: d.name for d in await catalog.list_deployments(workspace_id)}
            return clock(), found

        self.names: TtlCache[str, tuple[float, dict[str, str]]] = TtlCache(names_of, ttl_seconds, clock=clock)
        self.external_ids: set[tuple[str, str]] = set()

    async def deployment_name(self, workspace_id: str, deployment_id: str) -> str | None:
        """The name of the deployment with this id. An unknown id reloads the workspace's ids
        (a deployment may be new), but at most once a second, so a flood of made-up ids is
        answered from memory."""
        loaded, names = await self.names.get(workspace_id)
        if deployment_id not in names and self._clock() - loaded > RELOAD_SECONDS:
            self.names.invalidate(workspace_id)
            loaded, names = await self.names.get(workspace_id)
        return names.get(deployment_id)

    async def reserve_external_id(self, workspace_id: str, external_id: str | None) -> Callable[[], None]:
        """Claim an external id for a new run, or refuse a duplicate; returns the release, to call
        once the run is with the writer (whose pending runs are checked too)."""
        if external_id is None:
            return lambda: None
        claimed = self.external_ids
        key = (workspace_id, external_id)
        duplicate = ValidationFailed(f"external_id {external_id!r} is already used by another execution")
        if key in claimed:
            raise duplicate
        claimed.add(key)
        try:
            pending = self._writer.pending_run_by_external_id(*key) is not None
            if pending or await self._feedback.run_with_external_id(*key) is not None:
                raise duplicate
        except BaseException:
            claimed.discard(key)
            raise
        return lambda: claimed.discard(key)
