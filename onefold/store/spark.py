"""Onefold's warehouse logic on Apache Spark: a local session, tables from DuckDB, and SQL
written in DuckDB's dialect run on Spark after a SQLGlot transpile.

The same SQL builders serve both engines (identifier extraction, computed traits); this
module is the small adapter underneath. PySpark is an optional dependency (the ``dev``
extra pins it) and needs a Java runtime (17 or later); nothing is downloaded at run time.

    engine = SparkEngine.local()
    engine.load_duckdb(onefold.warehouse.cursor())   # events, identifiers, ... as views
    engine.sql("SELECT count(*) FROM events WHERE raw ->> '$.type' = 'track'")

Tables travel from DuckDB to Spark as Arrow through the driver, which suits tests and one
machine's worth of data; at a larger scale Spark reads the same tables as Parquet files
(:func:`export_parquet`, then :meth:`SparkEngine.load_parquet`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import sqlglot

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# The tables the unify logic reads and writes, in the order a full load wants them.
ONEFOLD_TABLES = (
    "sources",
    "events",
    "identity_profiles",
    "identifiers",
    "identity_merges",
    "identity_refusals",
    "event_identity",
    "identity_blocked",
    "identity_overrides",
    "identity_links",
    "trait_observations",
    "profile_traits",
    "computed_traits",
)

# Small-machine settings: two local cores, few shuffle partitions, no UI, no network beyond
# the loopback interface, UTC, Arrow for every Python <-> JVM transfer.
LOCAL_CONFIG: dict[str, str] = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.memory": "1g",
    "spark.sql.session.timeZone": "UTC",
    # DuckDB's TIMESTAMP has no time zone: so do Spark's timestamps (and SQLGlot writes
    # DuckDB's timestamp literals as TIMESTAMP_NTZ), whatever the session's time zone.
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.python.worker.reuse": "true",
    "spark.sql.catalogImplementation": "in-memory",
    "spark.dynamicAllocation.enabled": "false",
    # Small tables loaded from Arrow are local relations; this rule would evaluate every
    # query over them on the driver, interpreted, at each planning.
    "spark.sql.optimizer.excludedRules": (
        "org.apache.spark.sql.catalyst.optimizer.ConvertToLocalRelation"
    ),
}
# C1 only (no C2 JIT) and the serial collector: the JVM starts in about half the time on
# two cores, which is what tests and small batches want. Long jobs: quick_start=False.
QUICK_START_JAVA_OPTIONS = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"


class SparkUnavailable(RuntimeError):
    """PySpark or a Java runtime is missing."""


def java_available() -> bool:
    """Whether a Java runtime can be found (``JAVA_HOME`` or ``java`` on the PATH)."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return True
    return shutil.which("java") is not None


def spark_available() -> str | None:
    """None when a local Spark session can be started, else the reason it cannot."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "PySpark is not installed (pip install -e '.[dev]')"
    if not java_available():
        return "no Java runtime: Spark needs Java 17 or later (JAVA_HOME or java on the PATH)"
    return None


def local_session(
    cores: int = 2,
    config: Mapping[str, str] | None = None,
    quick_start: bool = True,
    scratch_dir: str | Path | None = None,
    app_name: str = "onefold",
) -> SparkSession:
    """A local-mode SparkSession with the small-machine settings above; shuffle and spill
    files go to ``scratch_dir`` (a new temporary directory by default). If this process
    already has a session, that one is returned and its static settings stay as they were."""
    reason = spark_available()
    if reason:
        raise SparkUnavailable(reason)
    from pyspark.sql import SparkSession

    # Python workers must run this interpreter (its venv has onefold and its dependencies).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    scratch = Path(scratch_dir or tempfile.mkdtemp(prefix="onefold-spark-"))
    builder = SparkSession.builder.master(f"local[{cores}]").appName(app_name)
    settings = {
        **LOCAL_CONFIG,
        "spark.local.dir": str(scratch),
        "spark.sql.warehouse.dir": str(scratch / "warehouse"),
    }
    if quick_start:
        settings["spark.driver.extraJavaOptions"] = QUICK_START_JAVA_OPTIONS
    settings.update(config or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def transpile(query: str, read: str = "duckdb") -> str:
    """``query`` (one statement, DuckDB's dialect by default) in Spark SQL."""
    statements = sqlglot.transpile(query, read=read, write="spark")
    if len(statements) != 1:
        raise ValueError(f"expected one SQL statement, got {len(statements)}")
    return statements[0]


def _duckdb_select(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """A SELECT of ``table`` whose Arrow types Spark reads: JSON as text, huge integers as
    text (Spark has no 128-bit integer)."""
    columns = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position",
        [table],
    ).fetchall()
    if not columns:
        raise KeyError(f"no table {table!r} in the DuckDB warehouse")
    parts = []
    for name, data_type in columns:
        quoted = '"' + name.replace('"', '""') + '"'
        if data_type in ("JSON", "HUGEINT", "UHUGEINT"):
            parts.append(f"CAST({quoted} AS VARCHAR) AS {quoted}")
        else:
            parts.append(quoted)
    return f'SELECT {", ".join(parts)} FROM "{table}"'


def export_parquet(
    con: duckdb.DuckDBPyConnection, directory: str | Path, tables: Iterable[str] = ONEFOLD_TABLES
) -> dict[str, Path]:
    """Write ``tables`` from DuckDB as ``directory/<table>.parquet``, typed as Spark reads
    them (see :meth:`SparkEngine.load_duckdb`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for table in tables:
        path = directory / f"{table}.parquet"
        target = str(path).replace("'", "''")
        con.execute(f"COPY ({_duckdb_select(con, table)}) TO '{target}' (FORMAT parquet)")
        paths[table] = path
    return paths


class SparkEngine:
    """One SparkSession and the Onefold tables registered in it as temporary views."""

    def __init__(self, session: SparkSession, scratch_dir: Path | None = None) -> None:
        self.session = session
        self._scratch = scratch_dir

    @classmethod
    def local(cls, **options: Any) -> SparkEngine:
        """A local session (see :func:`local_session`) with a scratch directory of its own,
        removed by :meth:`stop`."""
        scratch = Path(tempfile.mkdtemp(prefix="onefold-spark-"))
        return cls(local_session(scratch_dir=scratch, **options), scratch)

    def stop(self) -> None:
        self.session.stop()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    # -- tables ---------------------------------------------------------------------

    def register(self, name: str, frame: DataFrame | pa.Table) -> DataFrame:
        """Make ``frame`` (a DataFrame or an Arrow table) queryable as ``name``."""
        if isinstance(frame, pa.Table):
            frame = self.from_arrow(frame)
        frame.createOrReplaceTempView(name)
        return frame

    def from_arrow(self, table: pa.Table) -> DataFrame:
        """An Arrow table as a DataFrame; naive timestamps become TIMESTAMP_NTZ (with
        ``spark.sql.timestampType`` as :data:`LOCAL_CONFIG` sets it)."""
        return self.session.createDataFrame(table)

    def load_duckdb(
        self,
        source: duckdb.DuckDBPyConnection | str | Path,
        tables: Iterable[str] = ONEFOLD_TABLES,
    ) -> dict[str, DataFrame]:
        """Copy ``tables`` from a DuckDB warehouse (an open connection, or a database file
        opened read-only) into Spark, via Arrow, each registered under its own name."""
        own = not isinstance(source, duckdb.DuckDBPyConnection)
        con = duckdb.connect(str(source), read_only=True) if own else source
        try:
            frames = {}
            for table in tables:
                data = con.sql(_duckdb_select(con, table)).to_arrow_table()
                frames[table] = self.register(table, data)
            return frames
        finally:
            if own:
                con.close()

    def load_parquet(self, name: str, path: str | Path) -> DataFrame:
        """Register Parquet files (e.g. written by DuckDB's COPY) as ``name``."""
        return self.register(name, self.session.read.parquet(str(path)))

    # -- queries --------------------------------------------------------------------

    def sql(
        self, query: str, args: Mapping[str, Any] | None = None, read: str = "duckdb"
    ) -> DataFrame:
        """Run ``query``, written in DuckDB's dialect (``$name`` parameters become Spark's
        ``:name`` markers, bound from ``args``)."""
        return self.session.sql(transpile(query, read), args=dict(args) if args else None)

    @staticmethod
    def to_arrow(frame: DataFrame) -> pa.Table:
        return frame.toArrow()
