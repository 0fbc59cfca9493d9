"""The PostgreSQL + pgvector store (``RAG_STORE=postgres``): the same ``Store`` protocol
as the embedded store, with every process sharing one database. Needs the ``postgres``
extra (``psycopg``, ``psycopg-pool``)."""

from index.postgres.store import PostgresStore, PostgresView, PostgresWriter

__all__ = ["PostgresStore", "PostgresView", "PostgresWriter"]
