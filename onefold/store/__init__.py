"""The warehouse underneath every stage: an embedded DuckDB database by default."""

from onefold.store.warehouse import Warehouse

__all__ = ["Warehouse"]
