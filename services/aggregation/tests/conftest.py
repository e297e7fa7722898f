"""Fixtures of the aggregation tests: the linear-algebra attacker, PostgreSQL, tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from vigie_aggregation.storage.store import StatisticsStore
from vigie_embedded.testing import PostgresSchema, postgres_schema

# A cell as the attacker sees it: the set of leaves it sums.
LeafSet = frozenset[Hashable]
Attack = Callable[[Iterable[LeafSet], Mapping[Hashable, LeafSet]], set[Hashable]]


def recoverable_cells(published: Iterable[LeafSet], targets: Mapping[Hashable, LeafSet]) -> set[Hashable]:
    """The targets whose value is a linear combination of the published figures.

    Each published figure is the sum of its leaves: a row of 0/1 coefficients over all leaves. A target is
    recoverable exactly when its own row lies in the row space of the published rows (then some linear
    combination of published figures equals it, whatever the leaves are).
    """
    rows = [row for row in published if row]
    columns = sorted(
        {leaf for row in rows for leaf in row} | {leaf for t in targets.values() for leaf in t}, key=repr
    )
    index = {leaf: i for i, leaf in enumerate(columns)}
    if not rows:
        return set()
    matrix = np.zeros((len(rows), len(columns)))
    for r, row in enumerate(rows):
        for leaf in row:
            matrix[r, index[leaf]] = 1.0
    _, singular, vt = np.linalg.svd(matrix, full_matrices=False)
    rank = int((singular > 1e-9 * max(matrix.shape) * singular[0]).sum())
    basis = vt[:rank]
    found = set()
    for name, target in targets.items():
        vector = np.zeros(len(columns))
        for leaf in target:
            vector[index[leaf]] = 1.0
        residual = vector - basis.T @ (basis @ vector)
        if np.linalg.norm(residual) < 1e-6:
            found.add(name)
    return found


@pytest.fixture(scope="session")
def attack() -> Attack:
    return recoverable_cells


# -- PostgreSQL --------------------------------------------------------------------------------------


@pytest.fixture
async def postgres() -> AsyncIterator[PostgresSchema]:
    async with postgres_schema("aggtest") as found:
        yield found


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[StatisticsStore]:
    store = await StatisticsStore.open(f"sqlite+aiosqlite:///{tmp_path}/statistics.sqlite3")
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def postgres_store(postgres: PostgresSchema) -> AsyncIterator[StatisticsStore]:
    store = await StatisticsStore.open(postgres.url, schema_name=postgres.schema)
    try:
        yield store
    finally:
        await store.close()


@dataclass(frozen=True, slots=True)
class Database:
    """Where a service under test keeps its statistics."""

    url: str
    schema: str | None = None


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database for a service: an SQLite file, then a PostgreSQL schema (skipped without one)."""
    if request.param == "sqlite":
        yield Database(f"sqlite+aiosqlite:///{tmp_path}/statistics.sqlite3")
        return
    async with postgres_schema("aggtest") as found:
        yield Database(found.url, found.schema)


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StatisticsStore]:
    """The store on SQLite, then on PostgreSQL (skipped without one, failed on CI)."""
    if request.param == "sqlite":
        store = await StatisticsStore.open(f"sqlite+aiosqlite:///{tmp_path}/statistics.sqlite3")
        try:
            yield store
        finally:
            await store.close()
        return
    async with postgres_schema("aggtest") as found:
        store = await StatisticsStore.open(found.url, schema_name=found.schema)
        try:
            yield store
        finally:
            await store.close()
