"""Real-time path benchmark: identity + traits messages/s, and the delay from
acknowledgement to the updated profile at a fixed rate.

Drives ``onefold serve`` with wrk and ``bench/realtime.lua`` (a population of people:
anonymous ids per device, identifies with userId, e-mail and traits, orders; see there),
built on bench/ingest.py's server, wrk runner and samplers. In one run:

1. **Lag at a fixed rate.** A server with the unify worker running, as deployed, at
   ``--rate`` events/s (5,000, batches of 100) for ``--duration`` seconds. The server's own
   figure (``unify_lag`` in ``GET /api/v1/status``: now - received_at of each event once its
   micro-batch is committed and published to the serving store) is read in windows of
   100,000 events; a probe thread checks it end to end: every ``--probe-interval`` seconds
   one identify with a fresh trait value for a known user, then ``GET
   /api/v1/profiles/user_id:<id>`` until the value shows. With ``--preload N``, N
   messages of the same mix are loaded and resolved first, so that the run starts on a
   warehouse with history.
2. **Ingest only, same rate.** A second server with the unify worker paused, the same load:
   what identity adds to the acknowledgement and to the server's CPU.
3. **Throughput.** That server is then loaded up to ``--messages`` stored messages of the
   same mix (still paused); ``POST /api/v1/flush`` resolves them all (identity, traits,
   computed traits, serving store) and is timed.

With ``--profile``, py-spy samples the server during the lag run and the flush and the
time of the micro-batches is split by step. With ``--steal S``, another process keeps S of
a core busy during the lag run: how the delay fares with less CPU. Prints a table; writes
bench/results/realtime.json.

    .venv/bin/python bench/realtime.py [--duration 60] [--messages 1000000] [--preload 0]
        [--rate 5000] [--profile] [--steal 0]
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from ingest import (
    BATCH,
    DURABLE,
    TOKEN,
    CpuMeter,
    Sampler,
    Server,
    machine_busy_pct,
    percentile,
    process_cpu,
    run_wrk,
)

BENCH = Path(__file__).resolve().parent
SCRIPT = BENCH / "realtime.lua"
RESULTS = BENCH / "results" / "realtime.json"
PY_SPY = Path(sys.executable).parent / "py-spy"
LAG_WINDOW = 100_000  # events the server's unify_lag summary covers (graph.Lag keep)


def wal_bytes(data_dir: Path) -> int:
    """The size of the warehouse's write-ahead log: it shrinks when DuckDB checkpoints."""
    try:
        return (data_dir / "onefold.duckdb.wal").stat().st_size
    except OSError:
        return 0


def checkpoints_seen(samples: list[dict], phase: str) -> dict:
    """How often the WAL shrank between two samples of ``phase`` (each time, at least one
    checkpoint ran), and the largest it was."""
    sizes = [s["wal_bytes"] for s in samples if s["phase"] == phase and "wal_bytes" in s]
    return {
        "checkpoints": sum(1 for a, b in zip(sizes, sizes[1:], strict=False) if b < a),
        "wal_mb_max": round(max(sizes, default=0) / 1e6, 1),
    }


class StatusSampler(Sampler):
    """ingest.Sampler (RSS every half second) plus the server's status: stored events,
    landing backlog and the unify lag summary; and every micro-batch and publish the
    server reports (it keeps its last 50 of each), tagged with the phase first seen in."""

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        self.rounds: dict[str, dict[str, dict]] = {
            "batches": {}, "publishes": {}, "compactions": {}
        }  # fmt: skip
        self.client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )

    def sample(self, **extra: object) -> dict:
        try:
            response = self.client.get("/api/v1/status")
            status = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            status = None
        if status:
            for name, seen in self.rounds.items():
                for round_ in status.get(f"unify_{name}", []):
                    seen.setdefault(round_["ended_at"], {**round_, "phase": self.phase})
            extra = {
                "events": status["events"],
                "backlog_bytes": status["backlog_bytes"],
                "unify_lag": status["unify_lag"],
                "unify_pending_events": status.get("unify_pending_events"),
                "unify_pending_profiles": status.get("unify_pending_profiles"),
                "wal_bytes": wal_bytes(self.server.data_dir),
                "unify_error": status["unify_error"],
                **extra,
            }
        return super().sample(**extra)

    def stop(self) -> None:
        super().stop()
        self.client.close()


class Probe:
    """End to end, as a user sees it: every ``interval`` seconds one identify for a known
    user with the next value of a trait (1, 2, 3, ...), and beside it a reader that gets
    the profile every ``poll`` seconds. Probe *n* is visible when the profile shows a
    value >= n (events are resolved in order and the later identify wins, so a later
    value can only replace it); its delay runs from its 200 to that read's answer."""

    def __init__(self, url: str, write_key: str, user_id: str, interval: float) -> None:
        self.user_id = user_id
        self.interval = interval
        self.poll = 0.02
        self.tracking = httpx.Client(base_url=url, auth=(write_key, ""), timeout=30)
        self.admin = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )
        self.started = time.monotonic()
        self.acked: dict[int, tuple[float, float]] = {}  # n -> (sent, acked)
        self.visible: dict[int, float] = {}
        self.errors: list[str] = []
        self._count = 0
        self._lock = threading.Lock()
        self._sending = threading.Event()
        self._reading = threading.Event()
        self._threads = [
            threading.Thread(target=self._send_loop, daemon=True),
            threading.Thread(target=self._read_loop, daemon=True),
        ]

    def _send(self) -> int | None:
        self._count += 1
        n = self._count
        message = {
            "userId": self.user_id,
            "messageId": f"probe-{self.user_id}-{n}",
            "traits": {"probe": n},
        }
        sent = time.monotonic()
        try:
            response = self.tracking.post("/v1/identify", json=message)
        except httpx.HTTPError as error:
            self.errors.append(f"identify: {type(error).__name__}: {error}")
            return None
        acked = time.monotonic()
        if response.status_code != 200:
            self.errors.append(f"identify answered {response.status_code}")
            return None
        with self._lock:
            self.acked[n] = (sent, acked)
        return n

    def _read(self) -> None:
        try:
            response = self.admin.get(f"/api/v1/profiles/user_id:{self.user_id}")
        except httpx.HTTPError as error:
            self.errors.append(f"profile: {type(error).__name__}: {error}")
            return
        seen = time.monotonic()
        if response.status_code == 404:
            return
        if response.status_code != 200:
            self.errors.append(f"profile answered {response.status_code}")
            return
        trait = response.json()["traits"].get("probe")
        shown = int(trait["value"]) if trait else 0
        with self._lock:
            for n in self.acked:
                if n <= shown and n not in self.visible:
                    self.visible[n] = seen

    def pending(self) -> int:
        with self._lock:
            return len(self.acked) - len(self.visible)

    def warm_up(self, timeout: float = 120) -> dict:
        """Probe 1 alone, before the load: the whole path once."""
        n = self._send()
        if n is None:
            raise SystemExit(f"the probe failed: {self.errors}")
        wait_until(lambda: self._read() or n in self.visible, timeout, "probe warm-up")
        sent, acked = self.acked[n]
        return {"ack_ms": round((acked - sent) * 1000, 1),
                "visible_after_ack_ms": round((self.visible[n] - acked) * 1000, 1)}  # fmt: skip

    def start(self) -> None:
        self.started = time.monotonic()
        with self._lock:
            self.acked.clear()
            self.visible.clear()
        for thread in self._threads:
            thread.start()

    def _send_loop(self) -> None:
        due = time.monotonic()
        while not self._sending.is_set():
            self._send()
            due = max(due + self.interval, time.monotonic())
            self._sending.wait(max(0.0, due - time.monotonic()))

    def _read_loop(self) -> None:
        while not (self._reading.is_set() and self._sending.is_set() and not self.pending()):
            self._read()
            time.sleep(self.poll)

    def stop_sending(self) -> None:
        self._sending.set()
        self._threads[0].join()

    def finish(self, timeout: float = 60) -> None:
        """Stop reading once every acknowledged probe is visible (or after ``timeout``)."""
        self.stop_sending()
        self._reading.set()
        self._threads[1].join(timeout)
        if self._threads[1].is_alive():
            self.errors.append(f"{self.pending()} probes not visible {timeout} s after the end")
            with self._lock:
                self.acked = {n: t for n, t in self.acked.items() if n in self.visible}
            self._threads[1].join()
        self.tracking.close()
        self.admin.close()

    def samples(self) -> list[dict]:
        with self._lock:
            return [
                {
                    "n": n,
                    "t": round(sent - self.started, 2),
                    "ack_ms": round((acked - sent) * 1000, 1),
                    "visible_after_ack_ms": round((self.visible[n] - acked) * 1000, 1),
                }
                for n, (sent, acked) in sorted(self.acked.items())
                if n in self.visible
            ]

    def summary(self) -> dict:
        samples = self.samples()
        delays = sorted(s["visible_after_ack_ms"] for s in samples)
        acks = sorted(s["ack_ms"] for s in samples)
        return {
            "probes": len(samples),
            "poll_ms": self.poll * 1000,
            "errors": self.errors[:20],
            "error_count": len(self.errors),
            "ack_ms": {q: percentile(acks, float(q[1:])) for q in ("p50", "p99")},
            "visible_after_ack_ms": {
                q: percentile(delays, float(q[1:])) for q in ("p50", "p90", "p99", "p100")
            },
        }


class ThreadClock:
    """CPU time of each of the server's threads over a run, from ``/proc``, by the name
    py-spy gives it: a thread that is busy most of the run but uses much less CPU than
    that is waiting (for the interpreter lock, or a lock of DuckDB's)."""

    LINE = re.compile(r'^Thread (\d+) \(\w+\): "(.+)"$')

    def __init__(self, pid: int) -> None:
        self.pid = pid
        dump = subprocess.run(
            [str(PY_SPY), "dump", "--pid", str(pid)], capture_output=True, text=True, check=False
        ).stdout
        self.names = {int(m[1]): m[2] for m in map(self.LINE.match, dump.splitlines()) if m}
        self.started = time.monotonic()
        self.start = self._read()

    def _read(self) -> dict[int, tuple[float, float]]:
        return {
            int(task.name): (process_cpu(self.pid, int(task.name)), _runqueue_wait(task))
            for task in Path(f"/proc/{self.pid}/task").iterdir()
        }

    def stop(self) -> tuple[dict[str, float], dict[str, float]]:
        """Per thread name (threads py-spy does not know: "other"): the cores used, and
        the share of the run spent runnable but waiting for a core (the scheduler's
        run-queue delay; a thread waiting for the interpreter lock sleeps instead)."""
        end, wall = self._read(), time.monotonic() - self.started
        used: Counter[str] = Counter()
        waited: Counter[str] = Counter()
        for tid, (seconds, queued) in end.items():
            name = self.names.get(tid, "other")
            was_seconds, was_queued = self.start.get(tid, (0.0, 0.0))
            used[name] += (seconds - was_seconds) / wall
            waited[name] += (queued - was_queued) / wall
        return (
            {name: round(cores, 2) for name, cores in used.most_common()},
            {name: round(waited[name], 2) for name, _ in used.most_common()},
        )


def _runqueue_wait(task: Path) -> float:
    """Seconds the thread has spent runnable, waiting for a core (``schedstat``)."""
    try:
        return int((task / "schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


BUSY_LOOP = """
import sys, time
share, period = float(sys.argv[1]), 0.02
while True:
    started = time.perf_counter()
    while time.perf_counter() - started < share * period:
        pass
    time.sleep((1 - share) * period)
"""


class Stealer:
    """Another process busy ``share`` of every 20 ms on one core, for the lag run: a machine
    with that much less CPU for Onefold (or another job on it), to see how much margin the
    delay has."""

    def __init__(self, share: float) -> None:
        self.process = None
        if share > 0:
            self.process = subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(share)])

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


class Profiler:
    """py-spy sampling the server (all threads, idle ones too) until stopped."""

    def __init__(self, pid: int, out: Path, rate: int = 50, in_worker: bool = True) -> None:
        self.out = out
        self.in_worker = in_worker
        command = [str(PY_SPY), "record", "-p", str(pid), "-o", str(out), "-f", "raw"]
        command += ["-r", str(rate), "--idle", "--threads", "--nonblocking"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )

    def stop(self) -> dict:
        self.process.send_signal(2)  # SIGINT: py-spy writes what it has and exits
        try:
            _, stderr = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        if not self.out.exists():
            return {"error": stderr[-500:]}
        return unify_breakdown(self.out.read_text(), self.in_worker)


FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+):(?P<line>\d+)\)$")
STEPS = {
    # (function, file) of the frame _process calls -> step
    ("extract", "identifiers.py"): "extract identifiers",
    ("load_resolver", "graph.py"): "load owners (resolver)",
    ("Resolver.resolve", "resolver.py"): "resolve",
    ("write_changes", "graph.py"): "write graph changes",
    ("write_blocked", "graph.py"): "write graph changes",
    ("observe", "traits.py"): "trait observations",
    ("observe", "accounts.py"): "account observations",
    ("touched_profiles", "graph.py"): "touched profiles",
    ("events_of_identifiers", "membership.py"): "touched profiles",
    ("refresh", "traits.py"): "traits refresh",
    ("refresh", "computed.py"): "computed traits refresh",
    ("mark_batch", "publish.py"): "mark dirty",
    ("active", "overrides.py"): "overrides",
}


def _frames(stack: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(function, file name) per frame, and each frame as ``path:function:line``."""
    frames, full = [], []
    for frame in stack.split(";"):
        match = FRAME.match(frame)
        if match:
            frames.append((match["func"], match["file"].rsplit("/", 1)[-1]))
            full.append(f"{match['file']}:{match['func']}:{match['line']}")
    return frames, full


def unify_breakdown(raw: str, in_worker: bool = True) -> dict:
    """Where the unify work goes, from py-spy's raw (collapsed) stacks: samples of the
    frames under ``IdentityGraph._process`` (one micro-batch's transaction body), the
    publishes (in the worker's publisher thread, or after a flush), the cursor transaction
    around each batch, and (``in_worker``: the work is the unify worker's, not a flush's)
    how often the resolving and the publishing thread were waiting."""
    steps: Counter[str] = Counter()
    lines: Counter[str] = Counter()  # the deepest Onefold frame (which query) per sample
    idle = 0
    publish_idle = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames, full = _frames(stack)
        names = [func for func, _ in frames]
        in_unify_thread = ": onefold-unify;" in stack
        step = None
        for index, (func, file) in enumerate(frames):
            if func == "IdentityGraph._process" and file == "graph.py":
                if index + 1 < len(frames):
                    callee = frames[index + 1]
                    step = STEPS.get(callee, f"other: {callee[0]} ({callee[1]})")
                else:
                    step = "other: _process itself"
                break
        if step is None:
            if "IdentityGraph.publish" in names:
                step = "publish (serving store)"
            elif "Lag.record" in names:
                step = "lag bookkeeping"
            elif "IdentityGraph.process" in names:
                step = "cursor transaction (read range, commit)"
            elif in_unify_thread and "UnifyWorker._run" in names:
                idle += count
                continue
            elif "UnifyWorker._publish_loop" in names:
                publish_idle += count
                continue
            else:
                continue
        steps[step] += count
        ours = [frame for frame in full if frame.startswith("onefold/")]
        lines[f"{step}: {ours[-1]}" if ours else step] += count
    busy = sum(steps.values())
    publishing = steps["publish (serving store)"]
    resolving = busy - publishing
    return {
        "samples_busy": busy,
        "samples_unify_thread_waiting": idle,
        "busy_share_of_unify_thread": (
            round(resolving / (resolving + idle), 3) if in_worker and resolving + idle else None
        ),
        "busy_share_of_publish_thread": (
            round(publishing / (publishing + publish_idle), 3)
            if in_worker and publishing + publish_idle
            else None
        ),
        "steps": {
            step: {"samples": n, "share": round(n / busy, 3)} for step, n in steps.most_common()
        },
        "top_lines": {
            line: round(n / busy, 3) for line, n in lines.most_common(25) if n / busy >= 0.005
        },
    }


def round_thirds(rounds: dict[str, dict], phase: str) -> list[dict]:
    """The rounds (micro-batches or publishes) that ended in ``phase``, in three parts of
    equal count: how many, how large on average, and what a unit cost (wall and the
    thread's CPU) — whether the cost grows as the history does."""
    chosen = [r for _, r in sorted(rounds.items()) if r["phase"] == phase]
    thirds = []
    for part in range(3):
        rows = chosen[part * len(chosen) // 3 : (part + 1) * len(chosen) // 3]
        count = sum(r["count"] for r in rows)
        if not count:
            continue
        thirds.append({
            "rounds": len(rows),
            "mean_count": round(count / len(rows)),
            "us_per_unit": round(sum(r["ms"] for r in rows) * 1000 / count),
            "cpu_us_per_unit": round(sum(r["cpu_ms"] for r in rows) * 1000 / count),
        })  # fmt: skip
    return thirds


def lag_windows(samples: list[dict]) -> list[dict]:
    """Roughly disjoint windows of the server's lag summary: the status read each time
    another LAG_WINDOW events were processed since the first read, and the last one."""
    windows: list[dict] = []
    with_lag = [s for s in samples if s.get("unify_lag") and s["unify_lag"]["p50_ms"] is not None]
    # events resolved before the samples began (a preload) are not the run's
    mark = with_lag[0]["unify_lag"]["events"] if with_lag else 0
    for sample in with_lag:
        lag = sample["unify_lag"]
        if lag["events"] >= mark + LAG_WINDOW:
            windows.append({"t": sample["t"], "phase": sample["phase"], **lag})
            mark = lag["events"]
    if with_lag and (not windows or with_lag[-1]["unify_lag"]["events"] > mark):
        last = with_lag[-1]
        windows.append({"t": last["t"], "phase": last["phase"], **last["unify_lag"]})
    for window in windows:
        window["from_event"] = max(0, window["events"] - LAG_WINDOW)
    return windows


def graph_stats(database: Path) -> dict:
    """What the run made of the identity graph (the server stopped)."""
    import duckdb

    try:
        con = duckdb.connect(str(database), read_only=True)
    except duckdb.Error as error:
        return {"error": str(error)}
    try:

        def one(sql: str) -> object:
            return con.execute(sql).fetchone()[0]

        return {
            "events": one("SELECT count(*) FROM events"),
            "events_resolved": one("SELECT count(DISTINCT seq) FROM event_identity"),
            "profiles_live": one(
                "SELECT count(*) FROM identity_profiles WHERE merged_into IS NULL"
            ),
            "profiles_absorbed": one(
                "SELECT count(*) FROM identity_profiles WHERE merged_into IS NOT NULL"
            ),
            "merges": one("SELECT count(*) FROM identity_merges"),
            "refusals": dict(
                con.execute("SELECT rule, count(*) FROM identity_refusals GROUP BY 1").fetchall()
            ),
            "identifiers": dict(
                con.execute(
                    "SELECT namespace, count(*) FROM identifiers GROUP BY 1 ORDER BY 1"
                ).fetchall()
            ),
            "trait_observations": one("SELECT count(*) FROM trait_observations"),
            "profile_traits": one("SELECT count(*) FROM profile_traits"),
            "computed_traits": one("SELECT count(*) FROM computed_traits"),
            "profiles_with_orders": one(
                "SELECT count(*) FROM computed_traits WHERE name = 'orders' AND value <> '0'"
            ),
        }
    except duckdb.Error as error:
        return {"error": str(error)}
    finally:
        con.close()


def wait_until(check, timeout: float, what: str) -> float:
    """Poll ``check`` every 0.1 s until true; returns the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"{what}: not done within {timeout} s")
        time.sleep(0.1)
    return round(time.monotonic() - started, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=5000, help="fixed offered events/s")
    parser.add_argument("--duration", type=float, default=60, help="seconds at that rate")
    parser.add_argument(
        "--messages", type=int, default=1_000_000, help="messages resolved in the flush"
    )
    parser.add_argument(
        "--preload",
        type=int,
        default=0,
        help="messages loaded and resolved before the lag run (a warehouse with history)",
    )
    parser.add_argument("--people", type=int, default=200_000, help="population size")
    parser.add_argument("--known", type=int, default=60, help="percent of people with accounts")
    parser.add_argument("--probe-interval", type=float, default=0.5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--server-cpus", default="", help="taskset CPU list for the server (default: any)"
    )
    parser.add_argument("--wrk-cpus", default="0", help="taskset CPU list for wrk ('' = any)")
    parser.add_argument("--grace", type=float, default=3, help="seconds to let answers arrive")
    parser.add_argument("--profile", action="store_true", help="py-spy the unify work")
    parser.add_argument(
        "--steal",
        type=float,
        default=0,
        help="share of a core another process keeps busy during the lag run (0-1)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not 0 <= args.steal <= 1:
        raise SystemExit("--steal is a share of one core, from 0 to 1")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    if shutil.which("taskset") is None:
        args.server_cpus = args.wrk_cpus = ""
    if args.profile and not PY_SPY.exists():
        raise SystemExit(f"--profile needs py-spy ({PY_SPY})")

    busy_before = machine_busy_pct()
    if busy_before > 10:
        print(f"warning: the machine is {busy_before}% busy before the run", file=sys.stderr)
    load_before = os.getloadavg()

    workdir = Path(tempfile.mkdtemp(prefix="onefold-bench-realtime-"))
    for name in ("unify", "paused"):  # one server each; its log goes beside its data
        (workdir / name).mkdir()
    prefix = secrets.token_hex(4)
    lua_env = {"BENCH_PEOPLE": str(args.people), "BENCH_KNOWN": str(args.known)}
    results: dict = {"runs": {}}

    def wrk(server: Server, auth: str, name: str, **kwargs: object) -> dict:
        meter = CpuMeter(server.pid)
        figures = run_wrk(
            server.url,
            DURABLE,
            auth,
            f"{prefix}{name}",
            connections=args.connections,
            cpus=args.wrk_cpus or None,
            grace=args.grace,
            out=workdir / f"{name}.json",
            script=SCRIPT,
            **kwargs,
        )
        figures["cpu_cores"], server_cpu = meter.read()
        events = figures["events_acked"]
        figures["server_cpu_us_per_event"] = round(server_cpu / events * 1e6, 1) if events else None
        return figures

    def load_to(server: Server, auth: str, name: str, messages: int) -> dict:
        """Send the mix as fast as the server takes it until ``messages`` are stored."""
        stored, _ = server.drain()
        per_connection = max(1, math.ceil((messages - stored) / BATCH / args.connections))
        target = stored + per_connection * BATCH * args.connections
        progress = {"events": stored, "at": time.monotonic()}

        def loaded() -> bool:
            status = server.status()
            if status["events"] > progress["events"]:
                progress.update(events=status["events"], at=time.monotonic())
            if status["events"] >= target and status["backlog_bytes"] == 0:
                time.sleep(0.5)  # the last answers reach wrk
                return True
            return time.monotonic() - progress["at"] > 30  # stalled: stop, report

        figures = wrk(
            server,
            auth,
            name,
            duration=24 * 3600,
            rate=0,
            env={**lua_env, "BENCH_MAX_BATCHES": str(per_connection)},
            stop_when=loaded,
        )
        _, figures["drain_s"] = server.drain()
        return figures

    def preload(server: Server, auth: str, messages: int) -> dict:
        """History for the lag run: ``messages`` of the same mix, resolved and published
        before the measured load starts."""
        figures = load_to(server, auth, "preload", messages)

        def resolved() -> bool:
            status = server.status()
            return status["unify_lag"]["events"] >= status["events"]

        figures["resolve_s"] = wait_until(resolved, 3600, "resolving the preload")
        print(
            f"  preloaded {server.status()['events']:,} messages "
            f"({figures['events_per_s']:,} events/s), resolved {figures['resolve_s']} s later",
            flush=True,
        )
        return figures

    def cores(figures: dict) -> str:
        c = figures["cpu_cores"]
        return f"cores: server {c['server']}, wrk {c['wrk']}, other {c['other']}"

    print(f"Onefold real-time path benchmark, data in {workdir}", flush=True)
    try:
        # 1. The unify worker running, as deployed: lag at a fixed rate.
        server = Server(workdir / "unify" / "data", args.server_cpus or None, unify=True)
        sampler = StatusSampler(server)
        stealer = Stealer(0)
        try:
            write_key = server.create_source()
            auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
            if args.preload:
                results["runs"]["preload"] = preload(server, auth, args.preload)
            probe = Probe(server.url, write_key, f"probe-{prefix}", args.probe_interval)
            warm = probe.warm_up()
            sampler.phase = "before the load"  # the rounds of the preload and the warm-up
            sampler.sample()
            sampler.start()
            sampler.phase = "lag: load"
            profiler = Profiler(server.pid, workdir / "lag.pyspy") if args.profile else None
            clock = ThreadClock(server.pid) if PY_SPY.exists() else None
            stealer = Stealer(args.steal)
            probe.start()
            load_started = time.monotonic()
            resolved_before = server.status()["unify_lag"]["events"]
            figures = wrk(
                server, auth, "unify_rate", duration=args.duration, rate=args.rate, env=lua_env
            )
            probe.stop_sending()
            sampler.phase = "lag: catch-up"
            acked = figures["events_acked"]

            def caught_up() -> bool:
                status = server.status()
                if status["unify_error"]:
                    raise SystemExit(f"the unify worker failed: {status['unify_error']}")
                return (
                    status["backlog_bytes"] == 0
                    and status["unify_lag"]["events"] >= status["events"] >= acked
                )

            figures["catch_up_s"] = wait_until(caught_up, 3600, "unify catch-up")
            stealer.stop()  # the rest of the run has the machine to itself
            resolved = server.status()["unify_lag"]["events"] - resolved_before
            # what the worker resolved from the load's start until it caught up: the
            # offered rate if it kept up, its capacity (with this batch size) if not
            figures["unify_messages_per_s"] = round(resolved / (time.monotonic() - load_started))
            probe.finish()
            if clock:
                figures["thread_cores"], figures["thread_runqueue_wait"] = clock.stop()
            if profiler:
                figures["profile"] = profiler.stop()
            sampler.phase = "lag: end"
            final = sampler.sample()
            sampler.stop()
            figures["probe"] = probe.summary()
            figures["probe"]["warm_up"] = warm
            figures["probe_samples"] = probe.samples()
            figures["unify_lag_windows"] = lag_windows(sampler.samples)
            figures["unify_rounds"] = {
                name: sorted(rounds.values(), key=lambda r: r["ended_at"])
                for name, rounds in sampler.rounds.items()
            }
            figures["rounds_during_load"] = {
                name: round_thirds(rounds, "lag: load") for name, rounds in sampler.rounds.items()
            }
            figures["unify_lag_final"] = final.get("unify_lag")
            figures["rss_mb_max"] = max(s["rss_mb"] for s in sampler.samples)
            figures["checkpoints_during_load"] = checkpoints_seen(sampler.samples, "lag: load")
            figures["status_samples"] = sampler.samples
        finally:
            stealer.stop()
            server.stop()
        figures["graph"] = graph_stats(workdir / "unify" / "data" / "onefold.duckdb")
        results["runs"]["unify_rate"] = figures
        windows = figures["unify_lag_windows"]
        print(
            f"  unify running, {args.rate:,.0f}/s: ack p50 {figures['latency_ms']['p50']} ms "
            f"p99 {figures['latency_ms']['p99']} ms; lag p99 by window "
            f"{[w['p99_ms'] for w in windows]} ms; probe visible p50 "
            f"{figures['probe']['visible_after_ack_ms']['p50']} ms p99 "
            f"{figures['probe']['visible_after_ack_ms']['p99']} ms; {cores(figures)}",
            flush=True,
        )
        if "thread_cores" in figures:
            print(f"  cores by server thread: {figures['thread_cores']}", flush=True)
            print(
                "  share of the run each thread waited for a core: "
                f"{figures['thread_runqueue_wait']}",
                flush=True,
            )
        for name, unit in (("batches", "event"), ("publishes", "profile")):
            thirds = figures["rounds_during_load"][name]
            print(
                f"  {name} during the load, by thirds: "
                + "; ".join(
                    f"{t['rounds']} of {t['mean_count']:,} {unit}s, {t['us_per_unit']} µs "
                    f"({t['cpu_us_per_unit']} CPU) per {unit}"
                    for t in thirds
                ),
                flush=True,
            )
        rewrites = [r for r in figures["unify_rounds"]["compactions"] if r["phase"] == "lag: load"]
        print(
            f"  tables rewritten during the load: {len(rewrites)}, "
            f"{sum(r['count'] for r in rewrites):,} dead rows dropped in "
            f"{sum(r['ms'] for r in rewrites) / 1000:.1f} s; DuckDB checkpoints seen (the WAL "
            f"shrank): {figures['checkpoints_during_load']['checkpoints']}, WAL at most "
            f"{figures['checkpoints_during_load']['wal_mb_max']} MB",
            flush=True,
        )

        # 2. The unify worker paused: ingest only at the same rate, then the backlog.
        server = Server(workdir / "paused" / "data", args.server_cpus or None, unify=False)
        sampler = StatusSampler(server)
        try:
            write_key = server.create_source()
            auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
            sampler.start()
            sampler.phase = "ingest only"
            baseline = wrk(
                server, auth, "ingest_rate", duration=args.duration, rate=args.rate, env=lua_env
            )
            baseline["rss_mb_max"] = max(s["rss_mb"] for s in sampler.samples)
            results["runs"]["ingest_rate"] = baseline
            print(
                f"  unify paused, {args.rate:,.0f}/s: ack p50 {baseline['latency_ms']['p50']} "
                f"ms p99 {baseline['latency_ms']['p99']} ms; {cores(baseline)}",
                flush=True,
            )

            sampler.phase = "load"
            load = load_to(server, auth, "load", args.messages)
            stored = server.status()["events"]
            results["runs"]["load"] = load
            status = server.status()
            if status["unify_lag"]["events"]:
                raise SystemExit("the unify worker was not paused during the load")
            print(
                f"  loaded {stored:,} messages ({load['events_per_s']:,} events/s, {cores(load)})",
                flush=True,
            )

            sampler.phase = "flush"
            profiler = (
                Profiler(server.pid, workdir / "flush.pyspy", in_worker=False)
                if args.profile
                else None
            )
            meter = CpuMeter(server.pid)
            started = time.monotonic()
            with httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=None
            ) as admin:
                admin.post("/api/v1/flush").raise_for_status()
            seconds = time.monotonic() - started
            flush_cores, server_cpu = meter.read()
            processed = server.status()["unify_lag"]["events"]
            flush = {
                "messages": processed,
                "seconds": round(seconds, 2),
                "messages_per_s": round(processed / seconds),
                "server_cpu_s": round(server_cpu, 1),
                "server_cpu_us_per_message": round(server_cpu / processed * 1e6, 1),
                "cpu_cores": flush_cores,
                "micro_batch": 50_000,
            }
            if profiler:
                flush["profile"] = profiler.stop()
            sampler.phase = "end"
            sampler.sample()
            sampler.stop()
            flush["rss_mb_max"] = max(s["rss_mb"] for s in sampler.samples)
            results["paused_status_samples"] = sampler.samples
        finally:
            server.stop()
        flush["graph"] = graph_stats(workdir / "paused" / "data" / "onefold.duckdb")
        results["runs"]["flush"] = flush
        print(
            f"  flush: {processed:,} messages in {seconds:.1f} s = "
            f"{flush['messages_per_s']:,} messages/s ({flush['server_cpu_us_per_message']} "
            f"µs CPU each)",
            flush=True,
        )

        busy_after = machine_busy_pct()
        results["setup"] = {
            "rate": args.rate,
            "duration_s": args.duration,
            "batch_messages": BATCH,
            "connections": args.connections,
            "people": args.people,
            "known_pct": args.known,
            "messages_target": args.messages,
            "probe_interval_s": args.probe_interval,
            "steal_core_share": args.steal,
            "server_cpus": args.server_cpus or "any",
            "wrk_cpus": args.wrk_cpus or "any",
            "cpus": os.cpu_count(),
            "machine_busy_before_pct": busy_before,
            "machine_busy_after_pct": busy_after,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0],
            "profiled": args.profile,
        }
        print_table(results)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nwrote {args.output}")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def print_table(results: dict) -> None:
    runs, setup = results["runs"], results["setup"]
    unify, ingest, flush = runs["unify_rate"], runs["ingest_rate"], runs["flush"]
    rate = f"{setup['rate']:,.0f} events/s"
    windows = unify["unify_lag_windows"]
    probe = unify["probe"]["visible_after_ack_ms"]
    print()
    print(f"{'at ' + rate + ', ' + str(setup['duration_s']) + ' s':<44}{'p50':>10}{'p99':>10}")
    print(
        f"{'ack, unify paused (ingest only), ms':<44}"
        f"{ingest['latency_ms']['p50']:>10}{ingest['latency_ms']['p99']:>10}"
    )
    print(
        f"{'ack, unify running, ms':<44}"
        f"{unify['latency_ms']['p50']:>10}{unify['latency_ms']['p99']:>10}"
    )
    for window in windows:
        label = f"unify_lag, events {window['from_event']:,}-{window['events']:,}, ms"
        print(f"{label:<44}{window['p50_ms']:>10}{window['p99_ms']:>10}")
    print(f"{'probe: 200 -> profile shows it, ms':<44}{probe['p50']:>10}{probe['p99']:>10}")
    print(
        f"server cores: ingest only {ingest['cpu_cores']['server']}, unify running "
        f"{unify['cpu_cores']['server']} (other processes {ingest['cpu_cores']['other']}, "
        f"{unify['cpu_cores']['other']}); unify caught up {unify['catch_up_s']} s after the "
        f"load; {unify['probe']['probes']} probes"
    )
    print(
        f"identity + traits + computed traits + publish (flush, unify paused before): "
        f"{flush['messages']:,} messages in {flush['seconds']} s = "
        f"{flush['messages_per_s']:,} messages/s, {flush['server_cpu_us_per_message']} µs CPU "
        f"per message"
    )
    for name, figures in (("lag run", unify), ("flush", flush)):
        profile = figures.get("profile")
        if profile and "steps" in profile:
            top = ", ".join(
                f"{step} {v['share']:.0%}" for step, v in list(profile["steps"].items())[:6]
            )
            busy = profile["busy_share_of_unify_thread"]
            publishing = profile.get("busy_share_of_publish_thread")
            share = f"; unify thread busy {busy:.0%} of the time" if busy is not None else ""
            if publishing is not None:
                share += f", publish thread {publishing:.0%}"
            print(f"where unify time goes ({name}{share}): {top}")
    print(
        f"(machine {setup['machine_busy_before_pct']}% busy before, "
        f"{setup['machine_busy_after_pct']}% after; load average "
        f"{setup['load_average_before'][0]} -> {setup['load_average_after'][0]})"
    )


if __name__ == "__main__":
    main()
