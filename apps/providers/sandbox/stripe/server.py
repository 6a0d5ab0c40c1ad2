"""The Stripe sandbox over HTTP: auth, form decoding, idempotency, fault injection, signed webhooks.

Stripe's own paths live under ``/v1``; the test-helper API lives under ``/_sandbox`` (JSON in, JSON out):

- ``POST /_sandbox/reset`` forgets every object, event, idempotency key, fault and logged request.
- ``POST /_sandbox/seed`` ``{"objects": [{"ref": "gold", "path": "/v1/prices", "params": {...}}]}`` creates
  objects through the same handlers as the API; a path segment or param value ``"$gold"`` is replaced
  with the id of the object created earlier with ``ref`` ``gold``.
  Answers ``{"ids": {ref: id}, "objects": [...]}``.
- ``POST /_sandbox/faults`` ``{"path": "^/v1/credit_notes$", "method": "POST", "count": 1, "status": 500 |
  429, "retry_after": 2, "should_retry": false, "delay": 1.5}``: the next ``count`` matching requests
  get that status (without running; nothing is stored) or are first held ``delay`` seconds (then run).
  ``DELETE /_sandbox/faults`` clears them.
- ``POST /_sandbox/clock`` ``{"frozen_time": 1790000000}``: a test clock. Time moves there (never back);
  subscriptions whose period ends on the way are invoiced and rolled, auto-advancing drafts finalize
  an hour after creation. ``now`` stays frozen there until the next call.
- ``GET /_sandbox/requests`` lists every API request seen (method, path, idempotency key, status).
- ``POST /_sandbox/webhooks`` ``{"url": ..., "secret": "whsec_..."}`` configures the endpoint;
  ``POST /_sandbox/webhooks/deliver`` ``{"types": [...], "duplicate": 1, "order": "reverse"|"shuffle"}``
  POSTs every undelivered event, signed like Stripe (``Stripe-Signature``), and reports each delivery.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import stripe

from ..persistence import StateFile, wait_for_stop_signal
from .cycle import clock_params
from .state import API_VERSION, Obj, StripeApiError, StripeState

DEFAULT_API_KEY = "sk_test_trueup_sandbox"
DEFAULT_WEBHOOK_SECRET = "whsec_trueup_sandbox"  # noqa: S105 -- a published test secret, like the key


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``a[b][0][c]=v`` pairs → nested dicts, with all-numeric keys turned into lists (in index order)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+|(?<=\[)(?=\])", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        last = parts[-1] if parts else key
        if last == "" and isinstance(node, dict):  # a[]=x appends
            last = str(len(node))
        node[last] = value

    def listify(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        items = {k: listify(v) for k, v in node.items()}
        if items and all(k.isdigit() for k in items):
            return [items[k] for k in sorted(items, key=int)]
        return items

    return listify(root)


class Sandbox:
    """State plus everything around it that is not Stripe logic (keys, faults, log, webhooks)."""

    def __init__(self, api_key: str = DEFAULT_API_KEY, webhook_secret: str = DEFAULT_WEBHOOK_SECRET) -> None:
        self.api_key = api_key
        self.state = StripeState()
        self.webhook_url: str | None = None
        self.webhook_secret = webhook_secret
        self.reset()

    def reset(self) -> None:
        with self.state.lock:
            self.state.reset()
            self.idempotency: dict[str, dict[str, Any]] = {}
            self.faults: list[dict[str, Any]] = []
            self.requests: list[dict[str, Any]] = []
            self.delivered: set[str] = set()

    # --- faults ----------------------------------------------------------------
    def add_fault(self, spec: dict[str, Any]) -> None:
        with self.state.lock:
            self.faults.append({"count": 1, "method": None, **spec})

    def take_fault(self, method: str, path: str) -> dict[str, Any] | None:
        with self.state.lock:
            for fault in self.faults:
                if (
                    fault["count"] > 0
                    and (fault["method"] in (None, method))
                    and re.search(fault["path"], path)
                ):
                    fault["count"] -= 1
                    return dict(fault)
        return None

    # --- the API -------------------------------------------------------------------
    def api(
        self, method: str, path: str, headers: Any, params: dict[str, Any]
    ) -> tuple[int, Obj, dict[str, str]]:
        request_id = f"req_{uuid.uuid4().hex[:14]}"
        out_headers = {
            "Request-Id": request_id,
            "Stripe-Version": headers.get("Stripe-Version") or API_VERSION,
        }
        idem_key = headers.get("Idempotency-Key") if method == "POST" else None
        entry = {"method": method, "path": path, "idempotency_key": idem_key, "status": 0}
        with self.state.lock:
            self.requests.append(entry)
        fault = self.take_fault(method, path)
        if fault and fault.get("delay"):
            time.sleep(float(fault["delay"]))
        if fault and fault.get("status"):
            status = int(fault["status"])
            if fault.get("retry_after") is not None:
                out_headers["Retry-After"] = str(fault["retry_after"])
            if "should_retry" in fault:
                out_headers["Stripe-Should-Retry"] = "true" if fault["should_retry"] else "false"
            kind = "rate_limit" if status == 429 else "api_error"
            entry["status"] = status
            body = {
                "error": {
                    "type": "invalid_request_error" if status == 429 else "api_error",
                    "code": kind,
                    "message": f"Injected fault: {status}.",
                }
            }
            return status, body, out_headers
        if not self.authorized(headers.get("Authorization") or ""):
            entry["status"] = 401
            return (
                401,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "api_key_invalid",
                        "message": "Invalid API Key provided.",
                    }
                },
                out_headers,
            )
        with self.state.lock:
            if idem_key:
                stored = self.idempotency.get(idem_key)
                if stored is not None:
                    if (stored["method"], stored["path"], stored["params"]) != (method, path, params):
                        entry["status"] = 400
                        return (
                            400,
                            {
                                "error": {
                                    "type": "idempotency_error",
                                    "code": "idempotency_key_in_use",
                                    "message": "Keys for idempotent requests can only be used with the "
                                    "same parameters they were first used with.",
                                }
                            },
                            out_headers,
                        )
                    entry["status"] = stored["status"]
                    out_headers["Idempotent-Replayed"] = "true"
                    out_headers["Original-Request"] = stored["request_id"]
                    return stored["status"], json.loads(stored["body"]), out_headers
            try:
                status, body = (
                    200,
                    self.state.handle(method, path, params, {"id": request_id, "idempotency_key": idem_key}),
                )
            except StripeApiError as exc:
                status, body = exc.status, exc.body
            entry["status"] = status
            if idem_key and status < 500:
                self.idempotency[idem_key] = {
                    "method": method,
                    "path": path,
                    "params": params,
                    "status": status,
                    "body": json.dumps(body),
                    "request_id": request_id,
                }
            if idem_key:
                out_headers["Idempotency-Key"] = idem_key
        return status, body, out_headers

    def authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            import base64

            value = base64.b64decode(value).decode(errors="replace").partition(":")[0]
        elif scheme.lower() != "bearer":
            return False
        return value == self.api_key

    # --- the test-helper API ----------------------------------------------------------
    def helper(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if (method, path) == ("POST", "/_sandbox/reset"):
            self.reset()
            return 200, {"ok": True}
        if (method, path) == ("POST", "/_sandbox/seed"):
            return self.seed(body.get("objects", []))
        if path == "/_sandbox/faults":
            if method == "DELETE":
                with self.state.lock:
                    self.faults.clear()
                return 200, {"ok": True}
            self.add_fault(body)
            return 200, {"ok": True}
        if (method, path) == ("POST", "/_sandbox/clock"):
            with self.state.lock:
                try:
                    return 200, self.state.clock_advance(clock_params(body))
                except StripeApiError as exc:
                    return 400, {"error": {"type": "invalid_request_error", "message": str(exc)}}
        if (method, path) == ("GET", "/_sandbox/requests"):
            with self.state.lock:
                return 200, {"data": list(self.requests)}
        if (method, path) == ("POST", "/_sandbox/webhooks"):
            self.webhook_url = body.get("url")
            self.webhook_secret = body.get("secret", self.webhook_secret)
            return 200, {"url": self.webhook_url}
        if (method, path) == ("POST", "/_sandbox/webhooks/deliver"):
            return 200, {"data": self.deliver(**body)}
        return 404, {"error": {"type": "invalid_request_error", "message": f"No sandbox helper at {path}"}}

    def seed(self, objects: list[dict[str, Any]]) -> tuple[int, Any]:
        ids: dict[str, str] = {}

        def resolve(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: resolve(v) for k, v in value.items()}
            if isinstance(value, list):
                return [resolve(v) for v in value]
            if isinstance(value, str) and value.startswith("$") and value[1:] in ids:
                return ids[value[1:]]
            if isinstance(value, bool):
                return "true" if value else "false"
            return value if isinstance(value, str) else str(value)

        def resolve_path(path: str) -> str:
            return re.sub(r"\$(\w+)", lambda m: str(ids.get(str(m.group(1)), m.group(0))), path)

        created = []
        with self.state.lock:
            for spec in objects:
                try:
                    obj = self.state.handle(
                        spec.get("method", "POST"),
                        resolve_path(spec["path"]),
                        resolve(spec.get("params", {})),
                    )
                except StripeApiError as exc:
                    return exc.status, {**exc.body, "ids": ids}
                if spec.get("ref"):
                    ids[spec["ref"]] = obj.get("id", "")
                created.append(obj)
        return 200, {"ids": ids, "objects": created}

    # --- webhooks ------------------------------------------------------------------------
    def signed(self, event: Obj, timestamp: int | None = None) -> tuple[str, str]:
        payload = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(
            payload, self.webhook_secret, timestamp=timestamp or int(time.time())
        )
        return payload, header

    def deliver(
        self, types: list[str] | None = None, duplicate: int = 0, order: str = "created", seed: int = 0
    ) -> list[dict[str, Any]]:
        with self.state.lock:
            events = [
                self.state.public(e)
                for e in sorted(self.state.objects.get("event", {}).values(), key=lambda e: e["_seq"])
                if e["id"] not in self.delivered and (not types or e["type"] in types)
            ]
            self.delivered.update(e["id"] for e in events)
        batch = [e for e in events for _ in range(1 + int(duplicate))]
        if order == "reverse":
            batch.reverse()
        elif order == "shuffle":
            random.Random(seed).shuffle(batch)  # noqa: S311 -- a test's reproducible disorder, not security
        results = []
        for event in batch:
            payload, header = self.signed(event)
            results.append(
                {"event": event["id"], "type": event["type"], "status": self.post(payload, header)}
            )
        return results

    def post(self, payload: str, header: str) -> int:
        if not self.webhook_url:
            return 0
        url = urllib.parse.urlsplit(self.webhook_url)
        conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(url.netloc, timeout=10)
        try:
            conn.request(
                "POST",
                url.path or "/",
                body=payload.encode(),
                headers={"Content-Type": "application/json", "Stripe-Signature": header},
            )
            return conn.getresponse().status
        except OSError:
            return 0
        finally:
            conn.close()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and the demo read their own output
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        sandbox = self.server.sandbox
        try:
            if url.path.startswith("/_sandbox/"):
                status, body = sandbox.helper(method, url.path, json.loads(raw) if raw.strip() else {})
                self._changed(method)
                self._send(status, body)
                return
            pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
            if method == "POST":
                pairs += urllib.parse.parse_qsl(raw, keep_blank_values=True)
            status, body, headers = sandbox.api(method, url.path, self.headers, decode_form(pairs))
        except Exception as exc:  # a sandbox bug must still answer like Stripe's 500
            status, body, headers = 500, {"error": {"type": "api_error", "message": repr(exc)}}, {}
        self._changed(method)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client timed out and left
            self._send(status, body, headers)

    def _changed(self, method: str) -> None:
        """Before answering a request that may have changed the state, have the state file save it."""
        if method != "GET" and self.server.state_file is not None:
            self.server.state_file.changed()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sandbox: Sandbox
    state_file: StateFile | None = None


class StripeSandboxServer:
    """Runs the sandbox in a thread: ``with StripeSandboxServer() as server:`` use ``server.url``."""

    def __init__(
        self,
        port: int = 0,
        *,
        api_key: str = DEFAULT_API_KEY,
        state_file: str | os.PathLike[str] | None = None,
    ) -> None:
        """``state_file``: keep the state there across restarts (loaded now when it exists)."""
        self.sandbox = Sandbox(api_key=api_key)
        self.state_file: StateFile | None = None
        if state_file:
            self.state_file = StateFile(
                state_file,
                {"sandbox": self.sandbox, "state": self.sandbox.state},
                lock=self.sandbox.state.lock,
                exclude={"sandbox": ("state", "api_key")},
            )
            self.state_file.load()
        self.httpd = _Server(("127.0.0.1", port), _Handler)
        self.httpd.sandbox = self.sandbox
        self.httpd.state_file = self.state_file
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def api_key(self) -> str:
        return self.sandbox.api_key

    def start(self) -> StripeSandboxServer:
        if self.state_file is not None:
            self.state_file.start()
        self.thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="stripe-sandbox",
            daemon=True,
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.state_file is not None:
            self.state_file.close()

    def __enter__(self) -> StripeSandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    port: int = 12111,
    *,
    webhook_url: str = "",
    state_file: str | os.PathLike[str] | None = None,
    write: Callable[[str], object] = print,
) -> None:
    """Serve on 127.0.0.1 until Ctrl-C or SIGTERM, after printing the URL and the test keys.

    With ``state_file``, the state of the previous run is served again and every change is kept.
    """
    server = StripeSandboxServer(port, state_file=state_file)
    if webhook_url:
        server.sandbox.webhook_url = webhook_url
    server.start()
    write(f"Stripe sandbox listening on {server.url}")
    write(f"secret key: {server.api_key}")
    write(f"webhook signing secret: {server.sandbox.webhook_secret}")
    if state_file:
        write(f"state kept in {state_file}")
    try:
        wait_for_stop_signal()
        write("stopping")
    finally:
        server.stop()


@contextmanager
def running_sandbox(port: int = 0) -> Iterator[StripeSandboxServer]:
    with StripeSandboxServer(port) as server:
        yield server
