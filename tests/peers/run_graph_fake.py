"""Serve the Graph fake (tests/peers/graph_fake.py) over HTTP, and launch it as a subprocess.

``python -m tests.peers.run_graph_fake --port P [--token T] [--threads N]`` serves it with
waitress (keep-alive, like Graph). `GraphFakeServer` starts that process on a free loopback
port, polls it ready, drives the control API and stops it by its PID.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import parse_qs

import httpx

from tests.peers.graph_fake import DEFAULT_PAGE, PREFIX, FakeGraph, GraphError, _now
from tests.peers.scim_servers import READY_TIMEOUT, REPO, free_port


def _json(start: Callable[..., Any], status: int, body: Any = None,
          headers: dict[str, str] | None = None) -> list[bytes]:
    data = b"" if body is None else json.dumps(body).encode()
    hdrs = [("Content-Length", str(len(data))), *list((headers or {}).items())]
    if body is not None:
        hdrs.append(("Content-Type", "application/json"))
    reason = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401:
              "Unauthorized", 404: "Not Found", 410: "Gone", 429: "Too Many Requests"}
    start(f"{status} {reason.get(status, 'Status')}", hdrs)
    return [data]


def build_app(graph: FakeGraph) -> Callable[..., Iterable[bytes]]:
    """The WSGI application: the control API under /_fake, Graph under /v1.0."""

    def app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""),
                                          keep_blank_values=True).items()}
        with graph.lock:
            if path.startswith("/_fake/"):
                return _json(start, 200, _control(graph, method, path[6:], raw))
            entry = {"t": time.time(), "method": method, "path": path,
                     "query": environ.get("QUERY_STRING", ""), "status": 0}
            graph.log.append(entry)
            try:
                status, body, headers = _graph(graph, environ, method, path, q, raw)
            except GraphError as exc:
                status, headers = exc.status, exc.headers
                body = {"error": {"code": exc.code, "message": exc.message, "innerError": {
                    "date": _now(), "request-id": str(uuid.uuid4())}}}
            entry["status"] = status
        return _json(start, status, body, headers)

    return app


def _control(graph: FakeGraph, method: str, op: str, raw: bytes) -> Any:
    arg = json.loads(raw) if raw else {}
    if op == "/reset":
        graph.reset()
    elif op == "/seed":
        return graph.seed(int(arg.get("users", 0)), int(arg.get("groups", 0)),
                          int(arg.get("members", 0)))
    elif op == "/expire":
        graph.tokens.clear()
        graph.rounds.clear()
    elif op == "/fault":
        graph.faults.append({"count": 1, "status": 429, "retry_after": "1", "match": ""} | arg)
    elif op == "/requests":
        out = list(graph.log)
        if method == "DELETE":
            graph.log.clear()
        return out
    elif op == "/state":
        return graph.dump()
    return {}


def _expand(coll: str, raw: str | None) -> str | None:
    """``$expand``: users expand ``manager`` (optionally ``manager($select=id)``)."""
    if not raw:
        return None
    name = raw.split("(", 1)[0].strip()
    if coll != "users" or name.lower() != "manager":
        raise GraphError(400, "Request_BadRequest", f"Could not find a property named "
                         f"'{name}' on type 'microsoft.graph.{coll[:-1]}'.")
    return "manager"


def _graph(graph: FakeGraph, environ: dict[str, Any], method: str, path: str,
           q: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
    for fault in graph.faults:
        if fault["count"] > 0 and fault["match"] in path + "?" + environ.get("QUERY_STRING", ""):
            fault["count"] -= 1
            hdrs = {"Retry-After": str(fault["retry_after"])} if fault["retry_after"] else {}
            raise GraphError(int(fault["status"]), fault.get("code", "TooManyRequests"),
                             "Too many requests. Please retry later.", hdrs)
    if graph.token is not None and environ.get("HTTP_AUTHORIZATION") != f"Bearer {graph.token}":
        raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure.")
    if not path.startswith(PREFIX + "/"):
        raise GraphError(404, "BadRequest", f"Invalid version: {path}")
    base = f"http://{environ['HTTP_HOST']}{PREFIX}"
    parts = path[len(PREFIX) + 1:].split("/")
    body = json.loads(raw) if raw else {}
    coll = parts[0]
    prefer = environ.get("HTTP_PREFER", "")
    m = re.search(r"odata\.maxpagesize=(\d+)", prefer)
    page_size = min(int(m.group(1)), 999) if m else DEFAULT_PAGE
    if coll in ("users", "groups"):
        if len(parts) == 2 and parts[1] in ("delta()", "delta") and method == "GET":
            if "$expand" in q:
                raise GraphError(400, "Request_BadRequest", "$expand is not supported with "
                                 "delta queries.")
            return 200, graph.delta(coll, q, page_size, base), {}
        expand = _expand(coll, q.get("$expand"))
        if len(parts) == 1 and method == "GET":
            select = graph.select(coll, q.get("$select"))
            found = graph.matches(coll, q.get("$filter"))[:int(q.get("$top", page_size))]
            return 200, {"value": [graph.render(coll, o, select, expand=expand)
                                   for o in found]}, {}
        if len(parts) == 1 and method == "POST":
            return 201, graph.create(coll, body), {}
        oid = parts[1] if len(parts) > 1 else ""
        if len(parts) == 2:
            if method == "GET":
                obj = graph._find(coll, oid)
                select = graph.select(coll, q.get("$select"))
                return 200, graph.render(coll, obj, select, expand=expand), {}
            if method == "PATCH":
                graph.update(coll, oid, body)
                return 204, None, {}
            if method == "DELETE":
                graph.delete(coll, oid)
                return 204, None, {}
        if coll == "users" and len(parts) >= 3 and parts[2] == "manager":
            if len(parts) == 3 and method == "GET":
                return 200, graph.manager(oid), {}
            if len(parts) == 4 and parts[3] == "$ref" and method in ("PUT", "DELETE"):
                ref = str(body.get("@odata.id", "")) if method == "PUT" else None
                if method == "PUT" and not ref:
                    raise GraphError(400, "Request_BadRequest", "Missing '@odata.id'.")
                graph.set_manager(oid, ref)
                return 204, None, {}
        if coll == "groups" and len(parts) >= 4 and parts[2] == "members":
            graph._find(coll, oid)
            if parts[3] == "$ref" and method == "POST":
                graph._bind(oid, [str(body.get("@odata.id", ""))])
                return 204, None, {}
            if len(parts) == 5 and parts[4] == "$ref" and method == "DELETE":
                if parts[3] not in graph.members[oid]:
                    raise GraphError(404, "Request_ResourceNotFound", f"Resource '{parts[3]}' "
                                     f"is not a member of group '{oid}'.")
                graph._member(oid, parts[3], False)
                return 204, None, {}
    if parts[:2] == ["directory", "deletedItems"] and len(parts) >= 3:
        if len(parts) == 4 and parts[3] == "restore" and method == "POST":
            return 200, graph.restore(parts[2]), {}
        if len(parts) == 3 and method == "DELETE":
            graph.purge(parts[2])
            return 204, None, {}
    raise GraphError(400, "BadRequest", f"Unsupported request: {method} {path}")


class GraphFakeServer:
    """The fake as a subprocess on 127.0.0.1; `.url` is the Graph endpoint (``.../v1.0``)."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.http = httpx.Client(timeout=60)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.root + PREFIX

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def start(self) -> Self:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        for _attempt in range(3):
            self.port = free_port()
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
            cmd = [sys.executable, "-m", "tests.peers.run_graph_fake", "--port", str(self.port)]
            if self.token:
                cmd += ["--token", self.token]
            self.proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdout=self._log,
                                         stderr=subprocess.STDOUT)
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError("the Graph fake did not start")

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline, delay = time.monotonic() + READY_TIMEOUT, 0.01
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if self.http.get(self.root + "/_fake/state").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(delay)  # polling interval, not synchronisation
            delay = min(delay * 2, 0.2)
        return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start() if self.proc is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        self.http.close()

    # -- control API ---------------------------------------------------------------------
    def control(self, op: str, body: Any = None, method: str = "POST") -> Any:
        r = self.http.request(method, f"{self.root}/_fake/{op}", json=body)
        r.raise_for_status()
        return r.json()

    def reset(self) -> None:
        self.control("reset")

    def seed(self, users: int, groups: int = 0, members: int = 0) -> dict[str, list[str]]:
        return dict(self.control("seed", {"users": users, "groups": groups, "members": members}))

    def expire_tokens(self) -> None:
        self.control("expire")

    def fault(self, status: int = 429, retry_after: str | None = "1", count: int = 1,
              match: str = "", code: str = "TooManyRequests") -> None:
        self.control("fault", {"status": status, "retry_after": retry_after, "count": count,
                               "match": match, "code": code})

    def requests(self, clear: bool = False) -> list[dict[str, Any]]:
        return list(self.control("requests", method="DELETE" if clear else "GET"))

    def state(self) -> dict[str, Any]:
        return dict(self.control("state", method="GET"))

    # -- Graph itself, as an admin would change the tenant -------------------------------
    def graph(self, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return self.http.request(method, self.url + path, json=body, headers=headers)

    def add_user(self, upn: str, **props: Any) -> str:
        body = {"accountEnabled": True, "displayName": upn.split("@")[0],
                "mailNickname": upn.split("@")[0], "userPrincipalName": upn,
                "passwordProfile": {"password": "Init-" + uuid.uuid4().hex}} | props
        r = self.graph("POST", "/users", body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", default=None)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    import waitress

    waitress.serve(build_app(FakeGraph(args.token)), host="127.0.0.1", port=args.port,
                   threads=args.threads, ident="graph-fake", _quiet=True)


if __name__ == "__main__":
    main()
