"""How a page of the run log is read, at any size of log: which filter drives it, and the statement.

Filters differ by orders of magnitude in how many runs they match (`env:prod` most of them,
`customer_id:cus_12345` a handful), and the two need opposite plans: a rare filter should find
its runs through its own index, then sort them; common filters should be checked run by run while
an index is walked in sort order, which fills a page after a few hundred runs. Neither database
can tell them apart here: SQLite keeps no statistics unless ANALYZEd (and then none per value),
and PostgreSQL's misjudge metadata (a `run_metadata` row's key and value go together). So each
page first counts, in one round trip, how many runs each indexed filter matches, up to
DRIVER_CAP, and then tells the database which plan to use (docs/performance.md has the figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.util import ClauseAdapter

from promptdeck.domain.run_filters import MetaCondition, Order, RunFilters, Sort
from promptdeck.store.database import set_locally
from promptdeck.store.run_metadata import KEY_MAX, TEXT_MAX
from promptdeck.store.tables import Timestamp, run_metadata, runs

# What each sort orders by. Runs without a known cost sort as if it were -1 (below free ones). The
# expressions are written exactly as the sort indexes in store/tables.py are, so both databases
# match them to those indexes (a bound parameter in place of -1.0 would not match).
SORT_KEYS: dict[str, Any] = {
    "time": runs.c.created_at,
    "latency": runs.c.duration_ms,
    "cost": sa.func.coalesce(runs.c.cost, sa.literal_column("-1.0")),
    "tokens": runs.c.input_tokens + runs.c.output_tokens,
}
# The index that walks runs in each sort's order (store/tables.py), named to SQLite's planner.
SORT_INDEXES = {
    "time": "ix_runs_workspace_created",
    "latency": "ix_runs_workspace_latency",
    "cost": "ix_runs_workspace_cost",
    "tokens": "ix_runs_workspace_tokens",
}
RUNS_PRIMARY_KEY = "sqlite_autoindex_runs_1"  # SQLite's name for the index of runs.id

# A filter that matches fewer runs than this drives a page: its index finds its runs, which are
# checked against the other filters and sorted (reading at most this many runs). When every filter
# matches more, the page walks an index in sort order instead, checking the filters run by run,
# and stops after `limit` matches. Counting up to it reads at most this many index entries.
DRIVER_CAP = 2000


class IndexedSelect(sa.Select[Any]):
    """A run-log page's statement. SQLAlchemy's SQLite compiler drops FROM hints; this statement's
    own are rendered as written, so `with_hint(runs, "INDEXED BY ix", "sqlite")` reaches SQLite.
    (Without statistics, SQLite's planner always prefers the index that spares it a sort, however
    many rows that index then makes it read.) Every other statement compiles as SQLAlchemy's do."""

    inherit_cache = True


def _hint_as_written(table: Any, text: str | None) -> str | None:
    return text


@compiles(IndexedSelect, "sqlite")
def _select_with_index_hints(select: IndexedSelect, compiler: Any, **kw: Any) -> str:
    """Render the FROM hints of this statement (and of statements within it) while it compiles,
    then put the compiler back as it was."""
    outer = compiler.__dict__.get("get_from_hint_text")  # a page nested in another sets it too
    compiler.get_from_hint_text = _hint_as_written
    try:
        text: str = compiler.visit_select(select, **kw)
    finally:
        if outer is None:
            del compiler.get_from_hint_text
        else:
            compiler.get_from_hint_text = outer
    return text


def run_conditions(workspace_id: str, filters: RunFilters) -> list[sa.ColumnElement[bool]]:
    """The filters on the runs table's own columns."""
    found = [runs.c.workspace_id == workspace_id]
    equal = {
        runs.c.deployment: filters.deployment,
        runs.c.variant: filters.variant,
        runs.c.version_number: filters.version,
        runs.c.model: filters.model,
        runs.c.provider: filters.provider,
        runs.c.status: filters.status,
        runs.c.end_user: filters.user,
        runs.c.session_id: filters.session,
    }
    found += [column == wanted for column, wanted in equal.items() if wanted is not None]
    found += time_range(runs.c.created_at, filters)
    if filters.q is not None:
        found.append(
            sa.or_(
                sa.cast(runs.c.inputs, sa.Text).icontains(filters.q, autoescape=True),
                runs.c.output.icontains(filters.q, autoescape=True),
            )
        )
    return found


def time_range(column: Any, filters: RunFilters) -> list[sa.ColumnElement[bool]]:
    found = []
    if filters.since is not None:
        found.append(column >= filters.since)
    if filters.until is not None:
        found.append(column < filters.until)
    return found


def meta_match(condition: MetaCondition) -> list[sa.ColumnElement[bool]]:
    """What a `run_metadata` row must hold to meet a condition."""
    found = [run_metadata.c.key == condition.key[:KEY_MAX]]
    if condition.op == "eq":
        found.append(run_metadata.c.value_text == (condition.text or "")[:TEXT_MAX])
    elif condition.op == "gt":
        found.append(run_metadata.c.value_num > condition.number)
    elif condition.op == "lt":
        found.append(run_metadata.c.value_num < condition.number)
    return found


def meta_probe(condition: MetaCondition) -> sa.ColumnElement[bool]:
    """A condition checked for one run: one look-up of its (run_id, key) row."""
    return sa.select(sa.literal(1)).where(run_metadata.c.run_id == runs.c.id, *meta_match(condition)).exists()


@dataclass(frozen=True)
class Driver:
    """A filter whose own index finds its runs: a candidate to drive a page."""

    name: str
    where: tuple[sa.ColumnElement[bool], ...]  # its index's rows, within the page's time range
    time: Any  # its index's time column when the index is in time order within the filter, or None
    index: str  # the runs index a page it drives reads by (named to SQLite)
    meta: MetaCondition | None = None  # when it is a metadata condition: runs are then read by id

    def ids(self) -> sa.Select[Any]:
        column = run_metadata.c.run_id if self.meta is not None else runs.c.id
        return sa.select(column).where(*self.where)

    def counted(self, number: int) -> sa.Select[Any]:
        """How many runs it matches (up to DRIVER_CAP) and, when its index is in time order, the
        oldest of the newest DRIVER_CAP: the longer they span, the rarer the filter."""
        if self.time is None:
            newest = self.ids().limit(DRIVER_CAP).subquery()
            oldest: Any = sa.cast(sa.null(), Timestamp)
        else:
            times = sa.select(self.time.label("at")).where(*self.where).order_by(self.time.desc())
            newest = times.limit(DRIVER_CAP).subquery()
            oldest = sa.func.min(newest.c.at)
        return sa.select(
            sa.literal(number).label("number"), sa.func.count().label("runs"), oldest.label("oldest")
        ).select_from(newest)


@dataclass(frozen=True)
class PagePlan:
    """How a page is read: driven by its rarest filter's runs (`walks` false), or walking an index
    in sort order (`walks`): the sort's own, or for the time sort a filter's time-ordered index
    (`driver`)."""

    driver: Driver | None
    walks: bool
    counts: dict[str, int]  # each candidate's matches, counted up to DRIVER_CAP


def drivers(workspace_id: str, filters: RunFilters, sort: Sort) -> list[Driver]:
    """Every filter that has an index of its own."""
    found = []
    for condition in filters.meta:
        where = (run_metadata.c.workspace_id == workspace_id, *meta_match(condition))
        if condition.op == "eq":  # its index: (workspace, key, text, time)
            timed = (*where, *time_range(run_metadata.c.created_at, filters))
            found.append(
                Driver(f"meta {condition.key}", timed, run_metadata.c.created_at, RUNS_PRIMARY_KEY, condition)
            )
        elif condition.op != "exists":  # (workspace, key, number): counted over all time
            found.append(Driver(f"meta {condition.key}", where, None, RUNS_PRIMARY_KEY, condition))
        # `key` alone: its index range holds every value at every time, too long to count
    timed = (runs.c.workspace_id == workspace_id, *time_range(runs.c.created_at, filters))
    indexed = (
        ("session", runs.c.session_id, filters.session, "ix_runs_workspace_session_created"),
        ("user", runs.c.end_user, filters.user, "ix_runs_workspace_end_user_created"),
        ("deployment", runs.c.deployment, filters.deployment, "ix_runs_workspace_deployment_created"),
        ("status", runs.c.status, filters.status, "ix_runs_workspace_status_created"),
    )
    for name, column, wanted, index in indexed:
        if wanted is not None:
            found.append(Driver(name, (*timed, column == wanted), runs.c.created_at, index))
    if sort != "time" and (filters.since is not None or filters.until is not None):
        found.append(Driver("time range", timed, None, SORT_INDEXES["time"]))
    return found


async def plan_page(conn: AsyncConnection, workspace_id: str, filters: RunFilters, sort: Sort) -> PagePlan:
    """Count every candidate's matches in one round trip; the one under DRIVER_CAP with the
    fewest drives. Otherwise a time-sorted page walks the time-ordered index of the filter whose
    newest DRIVER_CAP matches span the longest time (the rarest), other sorts their own index."""
    candidates = drivers(workspace_id, filters, sort)
    if not candidates:
        return PagePlan(None, sort in SORT_INDEXES, {})
    rows = (await conn.execute(sa.union_all(*(d.counted(i) for i, d in enumerate(candidates))))).all()
    found = {int(row.number): (int(row.runs), row.oldest) for row in rows}
    counts = {d.name: found[i][0] for i, d in enumerate(candidates)}
    fewest = min(range(len(candidates)), key=lambda i: found[i][0])
    if found[fewest][0] < DRIVER_CAP:
        return PagePlan(candidates[fewest], False, counts)
    if sort == "time":
        timed = [i for i, d in enumerate(candidates) if d.time is not None and found[i][1] is not None]
        if timed:
            oldest: datetime = min(found[i][1] for i in timed)
            rarest = next(i for i in timed if found[i][1] == oldest)
            return PagePlan(candidates[rarest], True, counts)
    return PagePlan(None, sort in SORT_INDEXES, counts)  # without its index, a sort cannot walk


async def page_statement(
    conn: AsyncConnection,
    workspace_id: str,
    filters: RunFilters,
    sort: Sort = "time",
    order: Order = "desc",
    after: tuple[Any, str] | None = None,
    limit: int = 50,
) -> tuple[sa.Select[Any], PagePlan]:
    """Plan a page; its statement, to run on the same connection, in the same transaction.

    On PostgreSQL the plan is passed on through settings of this transaction only: a walk must
    walk (no sort, hash or merge join: its planner, misled about how many runs `score>0.6`
    matches, once read 200,000 runs to sort them for a page), alone (starting parallel workers
    takes longer than the walk); every statement is planned for its
    values (after five runs of a prepared statement it may switch to a generic plan, blind to the
    values); and JIT compilation is off (it took 70 ms to compile a 30 ms page)."""
    postgresql = conn.dialect.name == "postgresql"
    if postgresql:
        await set_locally(conn, plan_cache_mode="force_custom_plan", jit="off")
    plan = await plan_page(conn, workspace_id, filters, sort)
    if plan.walks and postgresql:
        walk = {"enable_sort": "off", "enable_hashjoin": "off", "enable_mergejoin": "off"}
        await set_locally(conn, **walk, max_parallel_workers_per_gather="0")
    return page_query(workspace_id, filters, plan, sort, order, after, limit), plan


def page_query(
    workspace_id: str,
    filters: RunFilters,
    plan: PagePlan,
    sort: Sort = "time",
    order: Order = "desc",
    after: tuple[Any, str] | None = None,
    limit: int = 50,
) -> sa.Select[Any]:
    """The statement of one page as its plan reads it, sorted by (sort value, id) from after a
    cursor's position. Metadata conditions other than the driver are checked per run."""
    driver = plan.driver
    query: sa.Select[Any] = IndexedSelect(runs).where(*run_conditions(workspace_id, filters))
    key, run_id = SORT_KEYS[sort], runs.c.id
    if driver is not None and driver.meta is not None:
        if plan.walks:  # along the condition's (key, text, time) index; it holds each run's time and id
            walked = run_metadata.alias("walked")  # probes below use run_metadata itself
            adapter = ClauseAdapter(walked)
            query = query.join(walked, walked.c.run_id == runs.c.id)
            query = query.where(*(adapter.traverse(w) for w in driver.where))
            key, run_id = walked.c.created_at, walked.c.run_id
        else:
            query = query.where(runs.c.id.in_(driver.ids()))
    probed = [c for c in filters.meta if driver is None or c is not driver.meta]
    query = query.where(*(meta_probe(c) for c in probed))
    index = driver.index if driver is not None else SORT_INDEXES.get(sort)
    if index is not None:
        query = query.with_hint(runs, f"INDEXED BY {index}", "sqlite")
    if after is not None:
        value, last_id = after
        if order == "desc":
            query = query.where(key <= value, sa.or_(key < value, run_id < last_id))
        else:
            query = query.where(key >= value, sa.or_(key > value, run_id > last_id))
    if order == "desc":
        query = query.order_by(key.desc(), run_id.desc())
    else:
        query = query.order_by(key.asc(), run_id.asc())
    return query.limit(limit)
