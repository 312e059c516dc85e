"""Seeded demo data for Onefold: a believable multi-country e-commerce business.

The names are re-exported lazily, so ``python -m onefold.demo.generator`` does not import
the generator module twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onefold.demo.generator import DemoData, DemoSource, generate_demo, write_csv

__all__ = ["DemoData", "DemoSource", "generate_demo", "write_csv"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from onefold.demo import generator

        return getattr(generator, name)
    raise AttributeError(f"module 'onefold.demo' has no attribute {name!r}")
