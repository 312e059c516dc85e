"""Settings, read from ``onefold.toml`` (or the file named by ``ONEFOLD_CONFIG``) and from
``ONEFOLD_*`` environment variables, which win over the file."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from onefold.unify.computed import ComputedTrait
from onefold.unify.rules import IdentityRules
from onefold.unify.traits import TraitRules

KB = 1024
MB = 1024 * KB


class Limits(BaseSettings):
    """Size limits of the tracking API, in bytes (after decompression)."""

    max_message_bytes: int = 32 * KB
    max_batch_bytes: int = 500 * KB
    max_bulk_batch_bytes: int = 4 * MB
    max_batch_messages: int = 2500


class Landing(BaseSettings):
    """The append-only landing log that makes acknowledged messages durable."""

    segment_max_bytes: int = 64 * MB
    segment_max_age_ms: int = 200
    max_pending_bytes: int = 64 * MB
    max_backlog_bytes: int = 1024 * MB
    fsync: bool = True


def default_computed_traits() -> list[ComputedTrait]:
    """What an e-commerce business asks first; replace or extend in the settings."""
    order = "Order Completed"
    return [
        ComputedTrait(name="first_seen", function="first_seen"),
        ComputedTrait(name="last_seen", function="last_seen"),
        ComputedTrait(name="orders", function="count", event=order),
        ComputedTrait(name="orders_90d", function="count", event=order, window_days=90),
        ComputedTrait(name="revenue", function="sum", event=order, property="properties.revenue"),
        ComputedTrait(
            name="average_order_value",
            function="avg",
            event=order,
            property="properties.revenue",
        ),  # fmt: skip
        ComputedTrait(name="days_since_last_order", function="days_since_last", event=order),
        ComputedTrait(
            name="favourite_category",
            function="most_frequent",
            event="Product Viewed",
            property="properties.category",
        ),  # fmt: skip
        ComputedTrait(name="refunds", function="count", event="Order Refunded"),
    ]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ONEFOLD_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Path("onefold-data")
    host: str = "127.0.0.1"
    port: int = 8765
    admin_token: str | None = Field(
        default=None,
        description="Token for the management API; generated into the data directory if unset.",
    )
    duckdb_memory_limit: str = "4GB"
    loader_interval_ms: int = 100
    demo_customers: int = Field(default=2000, description="People in the demo (serve --demo).")
    bench_noop: bool = Field(
        default=False,
        description="Serve /bench/noop/v1/batch: the batch route without storage, for benchmarks.",
    )
    unify_interval_ms: int = 200
    unify_min_cycle_ms: int = Field(
        default=1000,
        description="Under a steady stream, a micro-batch starts about this often: after a "
        "batch, the worker rests twice as long as it took, up to this cycle, so that events "
        "gather into fewer, larger batches (each costs a fixed part whatever its size). A "
        "trickle of events waits a few milliseconds more; a worker that is behind never "
        "waits. 0: the next batch starts at once.",
    )
    publish_interval_ms: int = 1000
    owner_index_limit: int = Field(
        default=1_000_000,
        description="Up to this many identifiers, identity resolution keeps the graph's "
        "owners in memory (0: always read them from the warehouse).",
    )
    identity: IdentityRules = Field(default_factory=IdentityRules)
    traits: TraitRules = Field(default_factory=TraitRules)
    computed_traits: list[ComputedTrait] = Field(default_factory=default_computed_traits)
    limits: Limits = Field(default_factory=Limits)
    landing: Landing = Field(default_factory=Landing)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get("ONEFOLD_CONFIG", "onefold.toml"))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=config_file),
        )

    @property
    def database_path(self) -> Path:
        return self.data_dir / "onefold.duckdb"

    @property
    def serving_dir(self) -> Path:
        return self.data_dir / "serving"

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"
