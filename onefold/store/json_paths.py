"""Reading several paths of a JSON column with one parse of each row.

DuckDB parses the document again for every ``json_extract_string(column, path)``; given a
list of paths it parses it once and returns a list. For six paths of 5,000 messages that
was 13–16 ms against 31–36 ms, and making the computed traits' facts of 717,000 events
1.5 s against 3.2 s. DuckDB only: Spark's ``get_json_object`` takes one path.
"""

from __future__ import annotations


def extract_once(column: str, paths: list[str], alias: str) -> tuple[str, list[str]]:
    """A select item reading ``paths`` (dotted, under ``$``) of ``column`` as text into the
    list ``alias``, and each path's value as an expression over it, in order. Each value is
    what ``json_extract_string(column, '$.path')`` gives."""
    listed = ", ".join(f"'$.{path}'" for path in paths)
    item = f"json_extract_string({column}, [{listed}]) AS {alias}"
    return item, [f"{alias}[{n}]" for n in range(1, len(paths) + 1)]
