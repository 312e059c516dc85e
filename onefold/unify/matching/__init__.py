"""Probabilistic matching of profile records (Fellegi–Sunter with Splink on DuckDB).

`match_records(con, records, MatchConfig())` returns scored candidate pairs with their
decision (merge / review) and per-field reasons, and a cluster id per record.
"""

from onefold.unify.matching.config import Field, MatchConfig
from onefold.unify.matching.pipeline import MatchResult, match_records

__all__ = ["Field", "MatchConfig", "MatchResult", "match_records"]
