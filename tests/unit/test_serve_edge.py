"""The SCIM service provider's edge, in-process: what a flow would certainly refuse is a 400
that says why (before anything is stored), OAuth 2 JWTs next to bearer tokens, native TLS
with a verified certificate, and requests counted for the daemon's metrics."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from syncd.config import load
from syncd.config.flows import Config
from syncd.daemon.inbound.oauth import JwtVerifier
from syncd.daemon.metrics import Metrics
from syncd.daemon.receiving import build_app, build_server
from syncd.state.inbox import Inbox
from syncd.state.store import Store
from tests.peers.slapd import free_port

TOKEN = "edge-token-0123456789"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
ISSUER = "https://sts.windows.net/00000000-0000-0000-0000-000000000001/"
AUDIENCE = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"

CONFIG = """
[state]
url = "sqlite:///{state}"

[connectors.entra]
type = "scim_inbox"

[connectors.dir]
type = "memory"
directory = "edge-{name}"

[serve]
listen = "127.0.0.1:{port}"
tokens = ["env:EDGE_TOKEN"]
directory = "entra"
{serve}

[flows.entra-to-dir]
source = "entra"
target = "dir"

[flows.entra-to-dir.users.mapping]
userName = {{ from = "externalId" }}
displayName = "displayName"
active = {{ from = "title", transform = ["bool"], on_empty = "keep" }}

[[flows.entra-to-dir.users.scope]]
attribute = "userType"
equals = "guest"
not = true

[flows.entra-to-dir.groups.mapping]
displayName = "displayName"
"""


def config(tmp: Path, monkeypatch: pytest.MonkeyPatch, serve: str = "") -> Config:
    monkeypatch.setenv("EDGE_TOKEN", TOKEN)
    path = tmp / "syncd.toml"
    path.write_text(CONFIG.format(state=tmp / "state.db", port=free_port(), serve=serve,
                                  name=tmp.name))
    return load(path, service=True)


class Edge:
    def __init__(self, cfg: Config, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.store = Store(cfg.state_url)
        assert self.store.engine is not None and cfg.serve is not None
        self.inbox = Inbox(self.store.engine, cfg.serve.directory)
        self.metrics = metrics or Metrics()
        self.changes = 0
        self.app = build_app(lambda: cfg, self.inbox, on_change=self._changed,
                             on_request=self.metrics.scim_request)

    def _changed(self) -> None:
        self.changes += 1

    def client(self, token: str = TOKEN) -> httpx.Client:
        return httpx.Client(transport=httpx.WSGITransport(app=self.app),
                            base_url="http://scim.test/v2",
                            headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Edge]:
    e = Edge(config(tmp_path, monkeypatch))
    yield e
    e.store.close()


def user(**more: Any) -> dict[str, Any]:
    return {"schemas": [USER], "userName": "ann@example.com", "externalId": "ann",
            "displayName": "Ann", **more}


def refused(r: httpx.Response, *words: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["schemas"] == [ERROR] and body["status"] == "400"
    assert body["scimType"] == "invalidValue"
    for w in words:
        assert w in body["detail"], body["detail"]


def test_a_create_the_mapping_cannot_read_is_a_400_that_says_why(edge: Edge) -> None:
    with edge.client() as http:
        refused(http.post("/Users", json=user(title="Engineer")),
                "entra-to-dir", "'active'", "title")
        refused(http.post("/Users", json=user(externalId=None)),
                "entra-to-dir", "'userName'", "yields no value")
        assert edge.inbox.count("user") == 0 and edge.inbox.head() == 0, "stored anyway"
        assert edge.changes == 0
        # out of the flow's scope: the flow does not take it, nothing to refuse
        assert http.post("/Users", json=user(title="maybe", userType="guest")).status_code \
            == 201
        assert http.post("/Users", json=user(userName="bob@example.com", externalId="bob",
                                             title="true")).status_code == 201
        assert edge.changes == 2


def test_a_patch_or_put_the_mapping_cannot_read_is_refused_and_nothing_changes(
        edge: Edge) -> None:
    with edge.client() as http:
        r = http.post("/Users", json=user())
        assert r.status_code == 201, r.text
        uid, version = r.json()["id"], r.json()["meta"]["version"]
        for op in ({"op": "Replace", "value": {"title": "Engineer"}},
                   {"op": "Remove", "path": "externalId"}):
            refused(http.patch(f"/Users/{uid}", json={"schemas": [PATCH],
                                                     "Operations": [op]}), "entra-to-dir")
        refused(http.put(f"/Users/{uid}", json=user(id=uid, title="Engineer")),
                "cannot map this user")
        got = http.get(f"/Users/{uid}").json()
        assert got["meta"]["version"] == version and "title" not in got
        r = http.patch(f"/Users/{uid}", json={"schemas": [PATCH], "Operations": [
            {"op": "Replace", "value": {"title": "False", "displayName": "Ann B"}}]})
        assert r.status_code in (200, 204), r.text
        assert edge.changes == 2


def test_requests_are_counted_by_kind_and_status(edge: Edge) -> None:
    from tests.unit.test_daemon_metrics import value

    with edge.client() as http:
        http.post("/Users", json=user())
        http.post("/Users", json=user())  # 409: userName taken
        http.post("/Users", json=user(title="Engineer"))
        http.post("/Groups", json={"schemas": [GROUP], "displayName": "staff"})
        http.get("/Users", params={"filter": 'userName eq "ann@example.com"'})
        http.get("/ServiceProviderConfig")
    with edge.client("wrong") as http:
        http.get("/Groups")
    counts = {(k, s): n for k, s, n in edge.metrics.received() or ()}
    assert counts == {("user", "201"): 1, ("user", "409"): 1, ("user", "400"): 1,
                      ("group", "201"): 1, ("user", "200"): 1, ("discovery", "200"): 1,
                      ("group", "401"): 1}
    from prometheus_client import generate_latest

    text = generate_latest(edge.metrics.registry).decode()
    assert value(text, "syncd_scim_requests_total", kind="user", method="POST",
                 status="400") == 1


# -- OAuth 2 -------------------------------------------------------------------------------


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwks(path: Path, *keys: tuple[str, rsa.RSAPrivateKey]) -> None:
    docs = []
    for kid, key in keys:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        docs.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
    path.write_text(json.dumps({"keys": docs}))


def _token(key: Any, kid: str = "k1", alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 600,
            "sub": "provisioning", **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg,
                      headers={"kid": kid})


def test_oauth_jwts_next_to_bearer_tokens(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    k1, k2, other = _key(), _key(), _key()
    jwks = tmp_path / "jwks.json"
    _jwks(jwks, ("k1", k1))
    cfg = config(tmp_path, monkeypatch, f'[serve.oauth]\nissuer = "{ISSUER}"\n'
                                        f'audience = "{AUDIENCE}"\njwks_file = "{jwks}"\n')
    e = Edge(cfg)
    try:
        def status(token: str) -> int:
            with e.client(token) as http:
                r = http.get("/Users")
                if r.status_code == 401:
                    assert r.json()["status"] == "401" and r.json()["schemas"] == [ERROR]
                    assert r.headers["WWW-Authenticate"].startswith("Bearer")
                return r.status_code

        assert status(_token(k1)) == 200
        assert status(TOKEN) == 200  # the static token still works
        now = int(time.time())
        for bad in (_token(k1, aud="someone-else"), _token(k1, iss="https://evil.example/"),
                    _token(k1, exp=now - 3600, iat=now - 7200, nbf=now - 7200),
                    _token(k1, exp=None), _token(other), _token(k2, kid="k2"),
                    _token(k1, kid="nope"), _token("shared-secret" * 4, alg="HS256"),
                    _token(k1) + "x", "not.a.jwt", ""):
            assert status(bad) == 401, jwt.decode(bad, options={"verify_signature": False}) \
                if bad.count(".") == 2 and not bad.endswith("x") else bad
        # keys rotate by replacing the file: re-read when it changes
        _jwks(jwks, ("k1", k1), ("k2", k2))
        assert status(_token(k2, kid="k2")) == 200
    finally:
        e.store.close()


def test_oauth_alone_and_config_errors(tmp_path: Path) -> None:
    from syncd.config.schema import ServeModel

    jwks = tmp_path / "jwks.json"
    _jwks(jwks, ("k1", _key()))
    oauth = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": str(jwks)}
    ServeModel.model_validate({"directory": "entra", "oauth": oauth})
    with pytest.raises(ValueError, match="no way to authenticate"):
        ServeModel.model_validate({"directory": "entra"})
    with pytest.raises(ValueError, match="HS256"):
        ServeModel.model_validate({"directory": "entra",
                                   "oauth": {**oauth, "algorithms": ["HS256"]}})
    with pytest.raises(ValueError, match="no such file"):
        ServeModel.model_validate({"directory": "entra",
                                   "oauth": {**oauth, "jwks_file": str(tmp_path / "no")}})
    v = JwtVerifier(ISSUER, [AUDIENCE], jwks)
    assert not v.valid("a.b.c")


# -- TLS -----------------------------------------------------------------------------------


def make_certificates(d: Path, names: str = "IP:127.0.0.1,DNS:localhost") -> Path:
    """A throwaway CA and a server certificate it signed (ca.pem, server.pem, server.key),
    as tests/peers/slapd.py makes them; returns the CA file."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
        "-days", "2", "-subj", "/CN=syncd serve test CA")
    run("req", *ec, "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"),
        "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text(f"subjectAltName={names}\n")
    run("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"), "-CAkey",
        str(d / "ca.key"), "-CAcreateserial", "-out", str(d / "server.pem"), "-days", "2",
        "-extfile", str(d / "san.ext"))
    return d / "ca.pem"


def test_native_tls_with_a_verified_certificate(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ca = make_certificates(tmp_path)
    cfg = config(tmp_path, monkeypatch, f'tls_cert = "{tmp_path / "server.pem"}"\n'
                                        f'tls_key = "{tmp_path / "server.key"}"\n')
    e = Edge(cfg)
    server = build_server(e.app, cfg)
    server.start()
    try:
        assert server.url.startswith("https://127.0.0.1:")
        verify = ssl.create_default_context(cafile=str(ca))
        with httpx.Client(base_url=server.url, verify=verify, timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            r = http.post("/Users", json=user())
            assert r.status_code == 201, r.text
            assert r.headers["Location"].startswith(f"{server.url}/Users/")
            assert http.get("/Users").json()["totalResults"] == 1
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"), \
                httpx.Client(base_url=server.url, timeout=10) as http:
            http.get("/ServiceProviderConfig")  # the system's CAs do not know ours
        with pytest.raises(httpx.TransportError), \
                httpx.Client(base_url=server.url.replace("https:", "http:"), timeout=10) as h:
            h.get("/ServiceProviderConfig")  # no plain HTTP on the TLS port
    finally:
        server.stop()
        e.store.close()


def test_tls_paths_resolve_in_the_credentials_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``LoadCredential=scim-tls-key:…`` + ``tls_key = "scim-tls-key"``, as the unit says."""
    from syncd.config.schema import ServeModel

    (tmp_path / "scim-tls-cert").write_text("cert")
    (tmp_path / "scim-tls-key").write_text("key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    m = ServeModel.model_validate({"directory": "entra", "tokens": ["t"],
                                   "tls_cert": "scim-tls-cert", "tls_key": "scim-tls-key"})
    assert (m.tls_cert, m.tls_key) == (str(tmp_path / "scim-tls-cert"),
                                       str(tmp_path / "scim-tls-key"))
    with pytest.raises(ValueError, match="no such file"):
        ServeModel.model_validate({"directory": "entra", "tokens": ["t"],
                                   "tls_cert": "nope", "tls_key": "scim-tls-key"})


def test_debounced_runs_once_per_burst_and_again_after_a_change_during_a_run() -> None:
    import threading

    from syncd.daemon.inbound.trigger import Debounced

    calls: list[float] = []
    inside, release = threading.Event(), threading.Event()

    def action() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            inside.set()
            release.wait(10)

    d = Debounced(action, name="test", quiet=0.05, most=1.0)
    try:
        for _ in range(20):
            d.changed()
        assert inside.wait(10)
        d.changed()  # during the run: one more run after it
        d.changed()
        release.set()
        deadline = time.monotonic() + 10
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling for the observable outcome
    finally:
        d.stop()
    assert len(calls) == 2


def test_a_reload_changes_the_tokens_in_place(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from syncd.daemon.receiving import Receiver

    cfg = config(tmp_path, monkeypatch)
    r = Receiver(lambda: cfg, lambda _name: None, Metrics())
    try:
        app = r.app

        def status(token: str) -> int:
            with httpx.Client(transport=httpx.WSGITransport(app=app),
                              base_url="http://scim.test/v2",
                              headers={"Authorization": f"Bearer {token}"}) as http:
                return http.get("/Users").status_code

        assert status(TOKEN) == 200
        monkeypatch.setenv("EDGE_TOKEN", "rotated-token-0123456789")
        r.reload(load(cfg.path, service=True))
        assert status(TOKEN) == 401 and status("rotated-token-0123456789") == 200
    finally:
        r.close()
