"""Per-workspace price overrides (USD per million tokens) for custom or self-hosted models."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.change_events import ChangeFeed, ProviderSettingsChanged
from promptdeck.domain.errors import NotFound
from promptdeck.domain.prices import Price, PriceOverride
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.store.tables import price_overrides

RATES = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok")


class PriceOverrides:
    """Each committed change publishes `ProviderSettingsChanged`: the engine caches overrides."""

    def __init__(self, engine: AsyncEngine, changes: ChangeFeed | None = None) -> None:
        self.engine = engine
        self.changes = changes or ChangeFeed()

    async def put(self, workspace_id: str, model: str, rates: PriceOverride) -> dict[str, Any]:
        """Store a price the admin API has checked (`PriceOverride`, `ModelName`)."""
        values = {name: getattr(rates, name) for name in RATES} | {"updated_at": utcnow()}
        async with self.engine.begin() as conn:
            where = (price_overrides.c.workspace_id == workspace_id) & (price_overrides.c.model == model)
            if (await conn.execute(price_overrides.update().where(where).values(**values))).rowcount == 0:
                await conn.execute(
                    price_overrides.insert().values(
                        id=new_id(), workspace_id=workspace_id, model=model, **values
                    )
                )
        self.changes.publish(ProviderSettingsChanged(workspace_id))
        return {"model": model, **values}

    async def all(self, workspace_id: str) -> dict[str, Price]:
        """Every override of a workspace, ready for the engine's price look-ups."""
        return {row["model"]: _price(row) for row in await self.list(workspace_id)}

    async def list(self, workspace_id: str) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(price_overrides)
                .where(price_overrides.c.workspace_id == workspace_id)
                .order_by("model")
            )
            return [
                {"model": r.model, **{n: getattr(r, n) for n in RATES}, "updated_at": r.updated_at}
                for r in rows
            ]

    async def delete(self, workspace_id: str, model: str) -> None:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                price_overrides.delete().where(
                    price_overrides.c.workspace_id == workspace_id, price_overrides.c.model == model
                )
            )
        if result.rowcount == 0:
            raise NotFound(f"no price override for {model!r}")
        self.changes.publish(ProviderSettingsChanged(workspace_id))


def _price(row: dict[str, Any]) -> Price:
    return Price.flat(
        row["input_per_mtok"],
        row["output_per_mtok"],
        row["cached_input_per_mtok"],
        row["cache_write_per_mtok"],
    )
