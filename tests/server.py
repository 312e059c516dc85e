"""A real Onefold server in a subprocess on loopback, for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ADMIN_TOKEN = "adm_test_token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = env or {}
        self.args: list[str] = []
        self.process: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"server-{self.port}.log"

    def start(self) -> Server:
        env = {
            **os.environ,
            "ONEFOLD_ADMIN_TOKEN": ADMIN_TOKEN,
            "ONEFOLD_DATA_DIR": str(self.data_dir),
            "ONEFOLD_PORT": str(self.port),
            **self.extra_env,
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "onefold", "serve", *self.args], env=env, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("server did not start in 30 s")

    @property
    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
        )

    def create_source(self, name: str, type: str = "web") -> dict:
        with self.admin as client:
            response = client.post("/api/v1/sources", json={"name": name, "type": type})
            response.raise_for_status()
            return response.json()

    def flush(self) -> int:
        with self.admin as client:
            response = client.post("/api/v1/flush")
            response.raise_for_status()
            return response.json()["events"]

    def events(self, **filters: object) -> list[dict]:
        """Every stored event matching the filters, following the pages."""
        self.flush()
        found: list[dict] = []
        before = None
        with self.admin as client:
            while True:
                params = {**filters, "limit": 1000}
                if before is not None:
                    params["before"] = before
                response = client.get("/api/v1/events", params=params)
                response.raise_for_status()
                page = response.json()
                found += page["events"]
                before = page["next_before"]
                if before is None:
                    return found

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> Server:
        self.stop()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        return self.start()
