"""SQLite's INDEXED BY is rendered in run-log pages only (store/run_log_plan.py): every other
statement compiles as SQLAlchemy compiles it, whatever pages were compiled or run before."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from promptdeck.domain.run_filters import RunFilters
from promptdeck.store.run_log_plan import SORT_INDEXES, PagePlan, page_query
from promptdeck.store.tables import metadata, run_metadata, runs, usage_rollups


def page() -> sa.Select[Any]:
    return page_query("ws", RunFilters(deployment="support"), PagePlan(None, True, {}), "latency")


def ordinary() -> list[sa.Select[Any]]:
    return [
        sa.select(usage_rollups).where(usage_rollups.c.workspace_id == "ws"),
        sa.select(run_metadata.c.key).where(run_metadata.c.run_id == "r1"),
        sa.select(runs.c.id).where(runs.c.workspace_id == "ws"),
        # A hint given for SQLite on any other statement stays dropped, as SQLAlchemy drops it.
        sa.select(usage_rollups).with_hint(usage_rollups, "INDEXED BY nothing", "sqlite"),
        sa.select(runs.c.id).with_hint(runs, f"INDEXED BY {SORT_INDEXES['time']}", "sqlite"),
    ]


def test_a_page_reads_by_its_index_on_sqlite_only() -> None:
    assert f"FROM runs INDEXED BY {SORT_INDEXES['latency']}" in str(page().compile(dialect=sqlite.dialect()))
    assert "INDEXED BY" not in str(page().compile(dialect=postgresql.dialect()))


def test_other_statements_compile_without_indexed_by_after_pages() -> None:
    before = [str(q.compile(dialect=sqlite.dialect())) for q in ordinary()]
    assert "INDEXED BY" in str(page().compile(dialect=sqlite.dialect()))
    after = [str(q.compile(dialect=sqlite.dialect())) for q in ordinary()]
    assert after == before
    assert not any("INDEXED BY" in text for text in after)


def test_a_page_within_another_statement_leaves_the_rest_of_it_alone() -> None:
    inner = page().subquery("page")
    outer = (
        sa.select(inner.c.id, usage_rollups.c.runs)
        .join_from(inner, usage_rollups, usage_rollups.c.workspace_id == inner.c.workspace_id)
        .with_hint(usage_rollups, "INDEXED BY nothing", "sqlite")
    )
    text = str(outer.compile(dialect=sqlite.dialect()))
    assert text.count("INDEXED BY") == 1
    assert f"runs INDEXED BY {SORT_INDEXES['latency']}" in text


def test_executed_statements_carry_no_indexed_by_after_pages_ran() -> None:
    engine = sa.create_engine("sqlite://")
    sent: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
    metadata.create_all(engine)
    with engine.connect() as conn:
        for statement in ordinary():  # each text compiled and cached by the engine first
            conn.execute(statement).all()
        sent.clear()
        assert conn.execute(page()).all() == []
        assert "INDEXED BY" in sent[-1]
        sent.clear()
        for statement in ordinary():
            conn.execute(statement).all()
    engine.dispose()
    assert len(sent) == len(ordinary())
    assert not any("INDEXED BY" in text for text in sent)
