"""Ingest benchmark: durable events/s, ack latency at a fixed rate, memory, no loss.

Starts ``onefold serve`` in a temporary data directory (with the storage-less
``/bench/noop/v1/batch`` route switched on), creates a source and drives it with wrk and
``bench/ingest.lua``: batches of 100 realistic messages, every messageId unique in the
run. It measures, for the durable route ``/v1/batch`` and for the noop route:

* the highest sustained rate (16 connections sending as fast as answers come back);
* the ack latency at a fixed offered rate (5,000 events/s, open loop, latency counted
  from each request's due time);

samples the server's RSS, waits for the loader to store everything and checks that the
warehouse holds exactly the messages that were acknowledged. Prints a table; writes
bench/results/ingest.json.

    .venv/bin/python bench/ingest.py [--duration 25] [--rate-duration 20]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
SCRIPT = BENCH / "ingest.lua"
RESULTS = BENCH / "results" / "ingest.json"
TOKEN = "adm_bench_" + secrets.token_hex(8)
BATCH = 100
DURABLE = "/v1/batch"
NOOP = "/bench/noop/v1/batch"
# The unify worker (identity resolution, traits) reads stored events in the same process;
# it is paused unless --with-unify, so that the figures are those of collection alone.
UNIFY_PAUSED_MS = str(24 * 3600 * 1000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def process_cpu(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds of a process so far, or of its thread ``tid``."""
    path = Path(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat")
    try:
        fields = path.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_cpu() -> tuple[float, float]:
    """Busy and total CPU seconds of the whole machine so far."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy_pct(seconds: float = 1.0) -> float:
    """How busy the whole machine is over the next ``seconds``, in percent."""
    busy0, total0 = machine_cpu()
    time.sleep(seconds)
    busy1, total1 = machine_cpu()
    return round((busy1 - busy0) / max(total1 - total0, 1e-9) * 100, 1)


class CpuMeter:
    """Cores used by the server, by child processes (wrk) and by everything else on the
    machine between its creation and :meth:`read`."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.server = process_cpu(server_pid)
        self.children = children_cpu()
        self.busy, self.total = machine_cpu()

    def read(self) -> tuple[dict, float]:
        """The cores used per kind, and the server's CPU seconds."""
        busy, total = machine_cpu()
        server_cpu = process_cpu(self.pid) - self.server
        wrk_cpu = children_cpu() - self.children
        wall = (total - self.total) / (os.cpu_count() or 1)
        cores = {
            "server": round(server_cpu / wall, 2),
            "wrk": round(wrk_cpu / wall, 2),
            "other": round(max(0.0, busy - self.busy - server_cpu - wrk_cpu) / wall, 2),
        }
        return cores, server_cpu


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))
    return values[index]


class Server:
    def __init__(self, data_dir: Path, cpus: str | None, unify: bool) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = data_dir.parent / "server.log"
        command = [sys.executable, "-m", "onefold", "serve"]
        command += ["--data-dir", str(data_dir), "--port", str(self.port)]
        if cpus:
            command = ["taskset", "-c", cpus, *command]
        env = {**os.environ, "ONEFOLD_ADMIN_TOKEN": TOKEN, "ONEFOLD_BENCH_NOOP": "true"}
        if not unify:
            env["ONEFOLD_UNIFY_INTERVAL_MS"] = UNIFY_PAUSED_MS
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        self.admin = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start within 60 s")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def create_source(self) -> str:
        response = self.admin.post("/api/v1/sources", json={"name": "bench", "type": "web"})
        response.raise_for_status()
        return response.json()["write_key"]

    def status(self) -> dict:
        response = self.admin.get("/api/v1/status")
        response.raise_for_status()
        return response.json()

    def drain(self, timeout: float = 300) -> tuple[int, float]:
        """Wait until the loader has stored everything acknowledged (the landing log is
        empty); returns the stored events and the seconds it took.

        (``POST /api/v1/flush`` would do the same, but also resolve identities for every
        event before answering, which is not collection's work.)"""
        started = time.monotonic()
        while True:
            status = self.status()
            if status["loader_error"]:
                raise SystemExit(f"the loader failed: {status['loader_error']}")
            if status["backlog_bytes"] == 0:
                return status["events"], round(time.monotonic() - started, 2)
            if time.monotonic() - started > timeout:
                raise SystemExit(f"the loader did not catch up within {timeout} s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server; its data directory is thrown away, so a server still busy
        after a few seconds (shutting down, the unify worker resolves every event it has
        not yet) is killed."""
        self.admin.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Sampler(threading.Thread):
    """The server's RSS every half second, tagged with the phase running."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.phase = "start"
        self.samples: list[dict] = []
        self.started = time.monotonic()
        self._halt = threading.Event()

    def sample(self, **extra: object) -> dict:
        row = {
            "t": round(time.monotonic() - self.started, 1),
            "phase": self.phase,
            "rss_mb": rss_mb(self.server.pid),
            **extra,
        }
        self.samples.append(row)
        return row

    def run(self) -> None:
        while not self._halt.wait(0.5):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join()


def run_wrk(
    url: str,
    path: str,
    auth: str,
    prefix: str,
    *,
    duration: float,
    rate: float,
    connections: int,
    cpus: str | None,
    grace: float,
    out: Path,
    script: Path = SCRIPT,
    env: dict[str, str] | None = None,
    stop_when: Callable[[], bool] | None = None,
) -> dict:
    """One wrk run; returns the figures bench/ingest.lua collected.

    ``script`` may be another script built on ingest.lua (bench/realtime.lua), ``env``
    adds to its configuration, and ``stop_when``, polled every 0.2 s, ends the run early
    (SIGINT: wrk stops and still reports)."""
    env = {
        **os.environ,
        **(env or {}),
        "BENCH_PATH": path,
        "BENCH_AUTH": auth,
        "BENCH_PREFIX": prefix,
        "BENCH_BATCH": str(BATCH),
        "BENCH_RATE": str(rate / BATCH / connections if rate else 0),
        "BENCH_STOP": str(duration),
        "BENCH_CONNECTIONS": str(connections),
        "BENCH_OUT": str(out),
    }
    total = int(duration + grace + 0.999)
    command = ["wrk", f"-t{connections}", f"-c{connections}", f"-d{total}s", "--timeout", "30s"]
    command += ["-s", str(script), url]
    if cpus:
        command = ["taskset", "-c", cpus, *command]
    if stop_when is None:
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
    else:
        pipe = subprocess.PIPE
        wrk = subprocess.Popen(command, env=env, stdout=pipe, stderr=pipe, text=True)
        while wrk.poll() is None and not stop_when():
            time.sleep(0.2)
        if wrk.poll() is None:
            wrk.send_signal(signal.SIGINT)
        stdout, stderr = wrk.communicate()
        returncode = wrk.returncode
    if returncode != 0 or not out.exists():
        raise SystemExit(f"wrk failed ({returncode}):\n{stdout}\n{stderr}")
    figures = json.loads(out.read_text())
    out.unlink()
    threads = figures["threads"]
    latencies = sorted(lat for t in threads for lat in t["latencies_us"])
    sent = sum(t["sent"] for t in threads)
    acked = sum(t["acked"] for t in threads)
    refused = sum(t["refused"] for t in threads)
    first = min((t["first_us"] for t in threads if t["first_us"]), default=0)
    last = max((t["last_us"] for t in threads), default=0)
    seconds = (last - first) / 1e6 if last > first else 0.0
    statuses: dict[str, int] = {}
    for t in threads:
        for code, count in t["statuses"].items():
            statuses[code] = statuses.get(code, 0) + count
    return {
        "path": path,
        "offered_events_per_s": rate or None,
        "connections": connections,
        "seconds": round(seconds, 2),
        "requests_sent": sent,
        "requests_acked": acked,
        "requests_refused": refused,
        "requests_unanswered": sent - acked - refused,
        "statuses": statuses,
        "request_bytes_avg": round(sum(t["body_bytes"] for t in threads) / sent) if sent else 0,
        "events_acked": acked * BATCH,
        "events_per_s": round(acked * BATCH / seconds) if seconds else 0,
        "latency_ms": {
            q: round(percentile(latencies, float(q[1:])) / 1000, 2)
            for q in ("p50", "p90", "p99", "p99.9", "p100")
        },
        "wrk_errors": figures["wrk"]["errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=25, help="seconds per max-rate run")
    parser.add_argument(
        "--rate-duration", type=float, default=20, help="seconds per fixed-rate run"
    )
    parser.add_argument("--rate", type=float, default=5000, help="fixed offered events/s")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--server-cpus", default="", help="taskset CPU list for the server (default: any)"
    )
    parser.add_argument("--wrk-cpus", default="0", help="taskset CPU list for wrk ('' = any)")
    parser.add_argument("--grace", type=float, default=3, help="seconds to let answers arrive")
    parser.add_argument("--skip-noop", action="store_true", help="only the durable route")
    parser.add_argument(
        "--with-unify", action="store_true", help="keep the unify worker running, as deployed"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    if shutil.which("taskset") is None:
        args.server_cpus = args.wrk_cpus = ""

    # How busy the machine is before we start: other work skews every figure.
    idle_check = machine_busy_pct()
    if idle_check > 10:
        print(f"warning: the machine is {idle_check}% busy before the run", file=sys.stderr)

    workdir = Path(tempfile.mkdtemp(prefix="onefold-bench-"))
    server = Server(workdir / "data", args.server_cpus or None, args.with_unify)
    sampler = Sampler(server)
    prefix = secrets.token_hex(4)
    results: dict = {"runs": {}}
    try:
        write_key = server.create_source()
        auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        sampler.sample(events=0)
        sampler.start()

        def run(name: str, path: str, rate: float, duration: float) -> dict:
            sampler.phase = name
            meter = CpuMeter(server.pid)
            figures = run_wrk(
                server.url,
                path,
                auth,
                f"{prefix}{name}",
                duration=duration,
                rate=rate,
                connections=args.connections,
                cpus=args.wrk_cpus or None,
                grace=args.grace,
                out=workdir / f"{name}.json",
            )
            figures["cpu_cores"], server_cpu = meter.read()
            events = figures["events_acked"]
            figures["server_cpu_us_per_event"] = (
                round(server_cpu / events * 1e6, 1) if events else None
            )
            if path == DURABLE:
                sampler.phase = f"{name}: drain"
                stored, figures["drain_s"] = server.drain()
                figures["stored_after"] = stored
                sampler.sample(events=stored)
            results["runs"][name] = figures
            print(
                f"  {name:<13} {figures['events_per_s']:>8,} events/s  "
                f"p50 {figures['latency_ms']['p50']:>7} ms  "
                f"p99 {figures['latency_ms']['p99']:>7} ms  "
                f"RSS {sampler.samples[-1]['rss_mb']:>6} MB  "
                f"cores: server {figures['cpu_cores']['server']}, wrk {figures['cpu_cores']['wrk']}"
                f", other {figures['cpu_cores']['other']}",
                flush=True,
            )
            return figures

        print(f"Onefold ingest benchmark: server {server.url}, data in {workdir}", flush=True)
        run("warmup", NOOP, 0, 3)
        del results["runs"]["warmup"]
        durable_max = run("durable_max", DURABLE, 0, args.duration)
        durable_rate = run("durable_rate", DURABLE, args.rate, args.rate_duration)
        if not args.skip_noop:
            noop_max = run("noop_max", NOOP, 0, args.duration)
            run("noop_rate", NOOP, args.rate, args.rate_duration)
        sampler.phase = "end"
        stored, _ = server.drain()
        sampler.sample(events=stored)
        sampler.stop()

        acked = durable_max["events_acked"] + durable_rate["events_acked"]
        unanswered = (
            durable_max["requests_unanswered"] + durable_rate["requests_unanswered"]
        ) * BATCH
        # A batch is acknowledged whole, so stored == acked exactly unless some batch got
        # no answer before wrk stopped (it may or may not have been stored then).
        results["check"] = {
            "events_acked": acked,
            "events_unanswered": unanswered,
            "events_stored": stored,
            "stored_equals_acked": stored == acked,
            "ok": acked <= stored <= acked + unanswered,
        }
        durable = [s for s in sampler.samples if s["phase"].startswith("durable")]
        results["rss_mb"] = {
            "start": sampler.samples[0]["rss_mb"],
            "durable_start": durable[0]["rss_mb"],
            "durable_middle": durable[len(durable) // 2]["rss_mb"],
            "durable_end": durable[-1]["rss_mb"],
            "max": max(s["rss_mb"] for s in sampler.samples),
            "end": sampler.samples[-1]["rss_mb"],
        }
        results["rss_samples"] = sampler.samples
        results["setup"] = {
            "batch_messages": BATCH,
            "request_bytes_avg": durable_max["request_bytes_avg"],
            "connections": args.connections,
            "duration_s": args.duration,
            "rate_duration_s": args.rate_duration,
            "offered_rate": args.rate,
            "server_cpus": args.server_cpus or "any",
            "wrk_cpus": args.wrk_cpus or "any",
            "cpus": os.cpu_count(),
            "machine_busy_before_pct": idle_check,
            "unify": "running" if args.with_unify else "paused",
            "python": sys.version.split()[0],
        }
        if not args.skip_noop:
            results["durable_over_noop"] = round(
                durable_max["events_per_s"] / max(1, noop_max["events_per_s"]), 2
            )
        print_table(results)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.output}")
        if not results["check"]["ok"]:
            raise SystemExit("FAILED: stored events do not match acknowledged messages")
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def print_table(results: dict) -> None:
    runs = results["runs"]
    setup = results["setup"]
    rate = f"{setup['offered_rate']:,.0f}/s"
    print()
    print(f"{'route':<22}{'max events/s':>14}{f'p50 @ {rate}':>16}{f'p99 @ {rate}':>16}")
    for label, prefix in (("/v1/batch (durable)", "durable"), ("noop (no storage)", "noop")):
        if f"{prefix}_max" not in runs:
            continue
        top, fixed = runs[f"{prefix}_max"], runs[f"{prefix}_rate"]
        print(
            f"{label:<22}{top['events_per_s']:>14,}"
            f"{fixed['latency_ms']['p50']:>13} ms{fixed['latency_ms']['p99']:>13} ms"
        )
    if "durable_over_noop" in results:
        print(f"durable / noop max rate: {results['durable_over_noop']:.2f}")
    rss = results["rss_mb"]
    print(
        f"server RSS MB: start {rss['start']}, durable runs {rss['durable_start']} -> "
        f"{rss['durable_middle']} -> {rss['durable_end']}, max {rss['max']}, end {rss['end']}"
    )
    check = results["check"]
    print(
        f"stored {check['events_stored']:,} events; acknowledged {check['events_acked']:,}"
        f" ({'OK' if check['ok'] else 'MISMATCH'})"
    )
    print(
        f"({setup['batch_messages']} messages of ~{setup['request_bytes_avg'] // 100} bytes "
        f"per request, {setup['connections']} connections, server on CPUs "
        f"{setup['server_cpus']}, wrk on {setup['wrk_cpus']}, unify {setup['unify']})"
    )


if __name__ == "__main__":
    main()
