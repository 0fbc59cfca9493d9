"""An :class:`ArticleFilter` as an SQL condition, in each store's dialect of SQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from records import ArticleFilter


@dataclass(frozen=True)
class Dialect:
    """What the stores' SQL spells differently."""

    mark: str
    """A parameter's placeholder."""
    collate: str = ""
    """Appended to a text column compared by order, so that it compares byte-wise."""
    arrays: bool = False
    """A list is one array parameter (``= ANY(...)``), not one parameter per item."""

    def member(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        """``column`` is one of ``values`` (none when empty), and the parameters."""
        if self.arrays:
            return f"{column} = ANY({self.mark}::text[])", [list(values)]
        return f"{column} IN ({','.join([self.mark] * len(values))})", list(values)


SQLITE = Dialect("?")
POSTGRES = Dialect("%s", collate=' COLLATE "C"', arrays=True)


def filter_condition(where: ArticleFilter, dialect: Dialect) -> tuple[str, list[Any]]:
    """The SQL keeping the articles ``a`` that pass the filter, ``" WHERE <condition>"``
    (``""`` when it restricts nothing), and its parameters. Published dates compare as
    text, byte by byte, in every dialect; the upper bound compares their first ten
    characters, the date of an ISO timestamp, so that ``2024-10-10T08:00:00+02:00`` is
    on or before ``2024-10-10``."""
    clauses: list[str] = []
    params: list[Any] = []
    mark, collate = dialect.mark, dialect.collate
    for condition, value in (
        (f"a.source = {mark}", where.source),
        (f"a.published{collate} >= {mark}", where.published_after),
        (f"substr(a.published, 1, 10){collate} <= {mark}", where.published_before),
    ):
        if value is not None:
            clauses.append(condition)
            params.append(value)
    for ids, negated in ((where.article_ids, False), (where.excluded_article_ids, True)):
        if ids is not None:
            condition, values = dialect.member("a.id", ids)
            clauses.append(f"NOT ({condition})" if negated else condition)
            params += values
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
