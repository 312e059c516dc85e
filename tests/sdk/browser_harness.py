"""Drive the OFFICIAL browser SDKs (@segment/analytics-next, @rudderstack/analytics-js),
unchanged, in headless Chromium against a tracking server.

    from tests.sdk.browser_harness import run_browser_sdk
    run_browser_sdk("segment", "http://127.0.0.1:8123", "wk", "run-123")

The page (tests/sdk/browser/) is served from a small static HTTP server of our own on
127.0.0.1 at another port than server_url, so every call to the tracking server is
cross-origin and CORS (including the preflight that the SDKs' Authorization header
triggers) is exercised for real: no Playwright request routing is installed, since
routing makes Playwright answer CORS preflights itself.

Delivery is confirmed from the page's own point of view (fetch/XHR as seen by the SDK's
JavaScript, so a response that CORS blocks counts as a failure) for identify, track, page,
group and alias messages carrying run_id. Prerequisite: `bash tests/sdk/setup.sh`.
Can also be run by hand: python tests/sdk/browser_harness.py segment http://127.0.0.1:8123 wk run1
"""

from __future__ import annotations

import json
import mimetypes
import os
import posixpath
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode, urlsplit

SDK_DIR = os.path.dirname(os.path.abspath(__file__))
PAGE_DIR = os.path.join(SDK_DIR, "browser")
NODE_MODULES = os.path.join(SDK_DIR, "node_modules")
CHROMIUM = os.environ.get("ONEFOLD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXPECTED_TYPES = ("identify", "track", "page", "group", "alias")

# URL prefix on the static server -> directory holding the SDK's prebuilt browser bundle.
VENDOR_DIRS = {
    # analytics-next UMD (global AnalyticsNext) and its lazily loaded chunks; with cdnURL set
    # to the page origin the chunks would be fetched from /analytics-next/bundles/.
    "/vendor/segment/": os.path.join(NODE_MODULES, "@segment", "analytics-next", "dist", "umd"),
    "/analytics-next/bundles/": os.path.join(
        NODE_MODULES, "@segment", "analytics-next", "dist", "umd"
    ),
    # RudderStack v3 "bundled" UMD (plugins included, global rudderanalytics.RudderAnalytics);
    # the plain build would fetch its plugins from RudderStack's CDN.
    "/vendor/rudder/": os.path.join(
        NODE_MODULES, "@rudderstack", "analytics-js", "dist", "npm", "modern", "bundled", "umd"
    ),
}


class BrowserSDKError(AssertionError):
    """The browser SDK did not deliver every expected message with a 2xx in time."""


@dataclass
class BrowserRunReport:
    sdk: str
    page_url: str
    elapsed_s: float
    delivered: dict[str, str | None]  # message type -> messageId
    js_requests: list[dict[str, Any]]  # fetch/XHR/beacon calls as the page's JS saw them
    network: list[dict[str, Any]]  # requests/responses as the browser's network stack saw them
    console: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    harness: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- static server
class _StaticHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _resolve(self) -> str | None:
        path = posixpath.normpath(urlsplit(self.path).path)
        if path in ("/", "/index.html"):
            return os.path.join(PAGE_DIR, "index.html")
        for prefix, root in VENDOR_DIRS.items():
            if path.startswith(prefix):
                name = path[len(prefix) :]
                if name and "/" not in name and not name.startswith("."):
                    return os.path.join(root, name)
                return None
        name = path.lstrip("/")
        if name and "/" not in name and not name.startswith("."):
            return os.path.join(PAGE_DIR, name)
        return None

    def do_GET(self) -> None:
        fn = self._resolve()
        if not fn or not os.path.isfile(fn):
            body = b"not found"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
        else:
            with open(fn, "rb") as f:
                body = f.read()
            self.send_response(200)
            ctype = mimetypes.guess_type(fn)[0] or "application/octet-stream"
            if fn.endswith((".js", ".mjs")):
                ctype = "text/javascript"
            self.send_header(
                "Content-Type", ctype + ("; charset=utf-8" if ctype.startswith("text/") else "")
            )
            self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _StaticServer:
    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _StaticHandler)
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="sdk-static", daemon=True
        )

    def __enter__(self) -> _StaticServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --------------------------------------------------------------------------- helpers
def _origin(url: str) -> str:
    u = urlsplit(url)
    return f"{u.scheme}://{u.netloc}".lower()


def _messages(body: str | None) -> list[dict[str, Any]]:
    """Messages in a request body: a single message, or a batch ({batch: [...]})."""
    if not body:
        return []
    try:
        data = json.loads(body)
    except ValueError:
        return []
    if isinstance(data, dict) and isinstance(data.get("batch"), list):
        return [m for m in data["batch"] if isinstance(m, dict)]
    return [data] if isinstance(data, dict) and "type" in data else []


def _check_prerequisites(sdk: str) -> None:
    if sdk not in ("segment", "rudder"):
        raise ValueError(f"sdk must be 'segment' or 'rudder', not {sdk!r}")
    bundle = os.path.join(VENDOR_DIRS[f"/vendor/{sdk}/"], "index.js")
    if not os.path.isfile(bundle):
        raise BrowserSDKError(f"{bundle} is missing: run `bash tests/sdk/setup.sh` first")
    if not os.path.isfile(CHROMIUM):
        raise BrowserSDKError(f"{CHROMIUM} is missing: run `bash tests/sdk/setup.sh` first")


# --------------------------------------------------------------------------- main entry
def run_browser_sdk_report(
    sdk: str,
    server_url: str,
    write_key: str,
    run_id: str,
    timeout_s: float = 30,
    *,
    allow_retries: bool = False,
) -> BrowserRunReport:
    """Like run_browser_sdk, but returns what was observed (for debugging and assertions)."""
    _check_prerequisites(sdk)
    result: dict[str, Any] = {}

    # Playwright's sync API refuses to run inside a running asyncio loop (async tests),
    # so the browser session always lives in a thread of its own.
    def target() -> None:
        try:
            result["report"] = _run(sdk, server_url, write_key, run_id, timeout_s, allow_retries)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = e

    t = threading.Thread(target=target, name=f"sdk-browser-{sdk}", daemon=True)
    t.start()
    t.join(timeout_s + 60)  # browser start/stop slack; _run enforces timeout_s itself
    if t.is_alive():
        raise BrowserSDKError(f"{sdk}: browser session hung well past timeout_s={timeout_s}")
    if "error" in result:
        raise result["error"]
    return result["report"]


def run_browser_sdk(
    sdk: str,
    server_url: str,
    write_key: str,
    run_id: str,
    timeout_s: float = 30,
    *,
    allow_retries: bool = False,
) -> None:
    """Load the official `sdk` ("segment" or "rudder") browser SDK in headless Chromium from a
    page on another origin, point it at server_url, call identify/track/page/group/alias with
    ids containing run_id (userId "user-<run_id>", anonymousId "anon-<run_id>", groupId
    "group-<run_id>", alias previousId "anon-<run_id>"), and return once the page's JavaScript
    saw a 2xx for a request to server_url carrying each of them. Raises BrowserSDKError on a
    non-2xx, a CORS/network failure, a page error, or timeout. With allow_retries=True a
    failed attempt is tolerated as long as the SDK's own retry later gets a 2xx in time
    (for back-pressure tests, e.g. 429 + Retry-After)."""
    run_browser_sdk_report(
        sdk, server_url, write_key, run_id, timeout_s, allow_retries=allow_retries
    )


def _run(
    sdk: str, server_url: str, write_key: str, run_id: str, timeout_s: float, allow_retries: bool
) -> BrowserRunReport:
    from playwright.sync_api import sync_playwright

    server_origin = _origin(server_url)
    start = time.monotonic()
    deadline = start + timeout_s
    network: list[dict[str, Any]] = []
    console: list[str] = []
    external: list[str] = []

    with _StaticServer() as static, sync_playwright() as pw:
        if _origin(static.origin) == server_origin:
            raise BrowserSDKError("server_url must not be the static page origin")
        page_url = f"{static.origin}/index.html?" + urlencode(
            {"sdk": sdk, "server": server_url, "writeKey": write_key, "runId": run_id}
        )
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context()
            context.add_init_script(path=os.path.join(PAGE_DIR, "netwatch.js"))
            page = context.new_page()

            def on_request(req: Any) -> None:
                o = _origin(req.url)
                if o == server_origin:
                    network.append(
                        {
                            "method": req.method,
                            "url": req.url,
                            "headers": dict(req.headers),
                            "body": req.post_data,
                            "status": None,
                            "_req": req,
                        }
                    )
                elif o != static.origin and not req.url.startswith(("data:", "blob:", "about:")):
                    external.append(f"{req.method} {req.url}")

            def on_response(res: Any) -> None:
                for entry in reversed(network):
                    if entry.get("_req") is res.request and entry["status"] is None:
                        entry["status"] = res.status
                        entry["response_headers"] = dict(res.headers)
                        break

            def on_failed(req: Any) -> None:
                for entry in reversed(network):
                    if entry.get("_req") is req and entry["status"] is None:
                        entry["failure"] = req.failure
                        break

            page.on("request", on_request)
            page.on("response", on_response)
            page.on("requestfailed", on_failed)
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))

            page.goto(
                page_url, wait_until="load", timeout=max(1.0, deadline - time.monotonic()) * 1000
            )

            delivered: dict[str, str | None] = {}
            js: list[dict[str, Any]] = []
            harness: dict[str, Any] = {}

            def report() -> BrowserRunReport:
                return BrowserRunReport(
                    sdk=sdk,
                    page_url=page_url,
                    elapsed_s=round(time.monotonic() - start, 3),
                    delivered=dict(delivered),
                    js_requests=js,
                    network=[{k: v for k, v in e.items() if k != "_req"} for e in network],
                    console=list(console),
                    external_requests=list(external),
                    harness=harness,
                )

            def fail(why: str) -> None:
                r = report()
                detail = {
                    "delivered": r.delivered,
                    "missing": [t for t in EXPECTED_TYPES if t not in r.delivered],
                    "harness": r.harness,
                    "js_requests": [
                        {k: e.get(k) for k in ("api", "method", "url", "status", "error")}
                        for e in js
                    ],
                    "network": [
                        {k: e.get(k) for k in ("method", "url", "status", "failure")}
                        for e in r.network
                    ],
                    "external_requests": r.external_requests,
                    "console": r.console[-20:],
                }
                raise BrowserSDKError(
                    f"{sdk} browser SDK -> {server_url}: {why}\n"
                    + json.dumps(detail, indent=1, default=str)
                )

            while True:
                state = page.evaluate("() => [window.__ofHarness || null, window.__ofNet || []]")
                harness, js = state[0] or {}, state[1]
                if harness.get("state") == "error":
                    fail(f"page script failed: {harness.get('error')}")
                for e in js:
                    if _origin(e["url"]) != server_origin or e["method"] != "POST":
                        continue
                    if e["api"] != "beacon" and not e.get("done"):
                        continue
                    if e["api"] == "beacon":
                        # The page cannot see a beacon's response: use the network view.
                        statuses = [
                            n["status"]
                            for n in network
                            if n["url"] == e["url"] and n["method"] == "POST"
                        ]
                        if not statuses or statuses[-1] is None:
                            continue
                        if not 200 <= statuses[-1] < 300:
                            if allow_retries:
                                continue
                            fail(f"beacon POST {e['url']} answered {statuses[-1]}")
                    elif e.get("error") or not (200 <= (e.get("status") or 0) < 300):
                        if allow_retries:
                            continue
                        net = [n for n in network if n["url"] == e["url"]]
                        hint = ""
                        if e.get("error") and any(
                            200 <= (n["status"] or 0) < 300 for n in net if n["method"] == "POST"
                        ):
                            hint = (
                                " (the server answered 2xx but the page was not allowed"
                                " to read it: CORS headers?)"
                            )
                        cors = [c for c in console if "CORS" in c]
                        if e.get("error") and cors:
                            hint = f" (browser console: {cors[0]})"
                        fail(
                            f"{e['api']} POST {e['url']} -> status {e.get('status')}"
                            f" error {e.get('error')}{hint}"
                        )
                    for m in _messages(e.get("body")):
                        if run_id in json.dumps(m) and m.get("type") in EXPECTED_TYPES:
                            delivered.setdefault(m["type"], m.get("messageId"))
                if all(t in delivered for t in EXPECTED_TYPES):
                    return report()
                if time.monotonic() > deadline:
                    fail(f"timed out after {timeout_s}s waiting for 2xx deliveries")
                page.wait_for_timeout(50)
        finally:
            browser.close()


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: browser_harness.py <segment|rudder> <server_url> <write_key> <run_id>")
    rep = run_browser_sdk_report(*sys.argv[1:5])
    print(
        json.dumps(
            {
                "sdk": rep.sdk,
                "elapsed_s": rep.elapsed_s,
                "delivered": rep.delivered,
                "external_requests": rep.external_requests,
                "network": [
                    {k: n.get(k) for k in ("method", "url", "status")} for n in rep.network
                ],
            }
        )
    )
