"""Safety of the SCIM connector against hostile or broken answers and dead targets.

One bad entry must not stop the flow (filter escaping, any 4xx is `Rejected` for that object),
a dead target ends the run in seconds, every response body is bounded, and an unsafe
transport is said out loud. All against real servers on 127.0.0.1 (scim2-server, a fault
proxy, a local TLS server with a self-signed certificate).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.errors import Conflict, ConnectorError, Fatal, Rejected, Retriable, Unreachable
from syncd_connectors.scim.config import ScimConfig
from syncd_connectors.scim.connector import ScimConnector
from syncd_connectors.scim.http import DOWN_AFTER
from syncd_connectors.scim.transport import build_client
from tests.connectors.test_scim import Recording, connect, fake_time, once
from tests.peers.fault_proxy import Fault, FaultProxy
from tests.peers.run_scim2_server import build_app
from tests.peers.scim_fixtures import SCIM_TEST_TOKEN
from tests.peers.scim_servers import Scim2Server, _Peer

pytestmark = pytest.mark.peers
__all__ = ["connect"]
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
MiB = 1024 * 1024


# --- 2. one bad entry must not stop the flow -------------------------------------------------

tricky_text = st.text(st.sampled_from('\t\r\n\x00\x1f\x7f"\\ aZé€\u2028/*()[]'), max_size=12)


def test_find_and_create_take_any_text(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """Property: for any text (control characters, quotes, backslashes included), `find`
    never raises, and a user the server accepted with that userName is found, exactly it.
    Before: a TAB, CR, LF or NUL made scim2-server answer 400 invalidFilter."""
    conn = connect(scim2_server)

    @settings(max_examples=100, deadline=None)
    @given(value=tricky_text | st.text(max_size=12))
    def check(value: str) -> None:
        scim2_server.reset()
        assert conn.find("user", "userName", value) == []
        try:
            user = conn.create("user", {"userName": value})
        except Rejected:
            return  # the server refused that userName: nothing to find
        found = conn.find("user", "userName", value)
        assert [e.external_id for e in found] == [user.external_id]

    check()


def scim_error(status: str, detail: str = "refused") -> dict[str, Any]:
    return {"schemas": [ERROR], "status": status, "detail": detail}


bodies: dict[str, Callable[[int], httpx.Response]] = {
    "scim": lambda s: httpx.Response(s, json=scim_error(str(s))),
    "claims 503": lambda s: httpx.Response(s, json=scim_error("503")),
    "claims 404": lambda s: httpx.Response(s, json=scim_error("404")),
    "bad status": lambda s: httpx.Response(s, json=scim_error("abc")),
    "html": lambda s: httpx.Response(s, text="<html>" + "x" * 5000 + "</html>"),
    "empty": lambda s: httpx.Response(s),
    "long detail": lambda s: httpx.Response(s, json=scim_error(str(s), "d" * 100_000)),
}


def test_any_4xx_for_one_object_is_that_objects_problem(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """Property: a 4xx answer to a lookup, create, PATCH, PUT, DELETE or membership change
    fails that object alone (`Rejected`), whatever the body says (a body claiming 503 is not
    "try later", one claiming 404 is not "already deleted"); 401/403 stay `Fatal`, 404 is
    "gone" (and a DELETE's success), 409 a `Conflict`, 429 `Retriable`. Messages carry at most
    a capped piece of the body."""
    rec = Recording()
    conn = connect(scim2_server, transport=rec, max_retries=0)
    fake_time(conn)
    user = conn.create("user", {"userName": "target"}).external_id
    group = conn.create("group", {"displayName": "grp"}).external_id
    patchless = connect(scim2_server, transport=rec, max_retries=0)
    patchless._caps = type(patchless._caps)(**{**patchless._caps.__dict__, "patch": False})
    ops: dict[str, tuple[str, Callable[[], Any]]] = {
        "find": ("GET", lambda: conn.find("user", "userName", "target")),
        "create": ("POST", lambda: conn.create("user", {"userName": "new"})),
        "patch": ("PATCH", lambda: conn.update("user", user, {"displayName": "x"})),
        "put": ("PUT", lambda: patchless.update("user", user, {"displayName": "x"})),
        "get for put": ("GET", lambda: patchless.update("user", user, {"displayName": "x"})),
        "delete": ("DELETE", lambda: conn.delete("user", user)),
        "members": ("PATCH", lambda: conn.set_members(group, [user], [])),
    }

    @settings(max_examples=200, deadline=None)
    @given(status=st.integers(400, 499), body=st.sampled_from(sorted(bodies)),
           op=st.sampled_from(sorted(ops)))
    def check(status: int, body: str, op: str) -> None:
        method, call = ops[op]
        rec.faults[:] = [once(method, "/", lambda r: bodies[body](status))]
        expected: type[Exception] | None = {
            401: Fatal, 403: Fatal, 409: Conflict, 429: Retriable}.get(status, Rejected)
        if (status, op) == (404, "delete"):
            expected = None
        try:
            call()
        except ConnectorError as exc:
            assert expected is not None and type(exc) is expected, (status, body, op, exc)
            assert len(str(exc)) < 700
            if status == 404:
                assert "gone" in str(exc)
        else:
            assert expected is None, (status, body, op)

    check()


# --- 3. a dead target ends the run fast ------------------------------------------------------


@pytest.fixture
def own_scim2_server() -> Iterator[Scim2Server]:
    """A scim2-server of this test alone: it gets killed."""
    with Scim2Server(token=SCIM_TEST_TOKEN) as server:
        yield server


def test_a_killed_server_is_refused_within_seconds(
    own_scim2_server: Scim2Server, connect: Callable[..., ScimConnector]
) -> None:
    """The incident: scim2-server stopped after ~100 of ~400 creates and syncd retried for
    14 minutes. Now the in-flight creates fail, the connector takes the target for down
    after a few connection failures and refuses every further call at once, unsent."""
    conn = connect(own_scim2_server, bulk="never", concurrency=8)
    lock = threading.Lock()
    created = [0]
    killed: list[tuple[float, int]] = []

    def one(i: int) -> ConnectorError | None:
        try:
            conn.create("user", {"userName": f"dead{i:03d}"})
        except ConnectorError as exc:
            return exc
        with lock:
            created[0] += 1
            if created[0] == 25:
                killed.append((time.monotonic(), conn.stats["requests"]))
                own_scim2_server.kill()
        return None

    pool = ThreadPoolExecutor(8)
    futures = [pool.submit(one, i) for i in range(120)]
    _, pending = wait(futures, timeout=20)
    pool.shutdown(wait=False, cancel_futures=True)
    assert killed and not pending, f"{len(pending)} creates still running 20 s after the kill"
    elapsed = time.monotonic() - killed[0][0]
    assert elapsed < 15, elapsed
    outcomes = [f.result() for f in futures]
    down = [o for o in outcomes if isinstance(o, Fatal)]
    assert down and all("target down" in str(o) for o in down)
    assert "consecutive connection failures" in str(down[0]), down[0]
    assert all(isinstance(o, Unreachable | Fatal) for o in outcomes if o is not None)
    sent_after_kill = conn.stats["requests"] - killed[0][1]
    assert sent_after_kill <= DOWN_AFTER + 2 * 8, sent_after_kill  # in flight + a retry each
    with pytest.raises(Fatal, match="target down"):
        conn.find("user", "userName", "anyone")
    assert conn.stats["requests"] - killed[0][1] == sent_after_kill


def test_no_answer_is_unreachable_and_any_answer_resets_the_count(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    rec = Recording()
    conn = connect(scim2_server, transport=rec, max_retries=0)
    fake_time(conn)
    refused = lambda r: httpx.ConnectError("refused", request=r)  # noqa: E731
    slow = lambda r: httpx.ReadTimeout("slow", request=r)  # noqa: E731
    for _ in range(DOWN_AFTER + 1):  # a slow server answered late: alive, not down
        rec.faults.append(once("GET", "/Users", slow))
        with pytest.raises(Retriable) as late:
            conn.find("user", "userName", "x")
        assert not isinstance(late.value, Unreachable | Fatal)
    for _ in range(DOWN_AFTER - 1):
        rec.faults.append(once("GET", "/Users", refused))
        with pytest.raises(Unreachable):
            conn.find("user", "userName", "x")
    rec.faults.append(once("GET", "/Users", lambda r: httpx.Response(500)))
    with pytest.raises(Retriable) as info:  # an answer, even a 500: the server is alive
        conn.find("user", "userName", "x")
    assert not isinstance(info.value, Unreachable)
    for _ in range(DOWN_AFTER - 1):
        rec.faults.append(once("GET", "/Users", refused))
        with pytest.raises(Unreachable):
            conn.find("user", "userName", "x")
    rec.faults.append(once("GET", "/Users", refused))
    with pytest.raises(Fatal, match=f"target down: {DOWN_AFTER} consecutive connection"):
        conn.find("user", "userName", "x")
    sent = len(rec.requests)
    with pytest.raises(Fatal, match="target down"):
        conn.create("user", {"userName": "later"})
    assert len(rec.requests) == sent, "refused without sending"


def test_a_hung_server_is_down_after_two_rounds_of_timeouts(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """A server that accepts connections and never answers: every request times out. Read
    timeouts with no answer in between take the target down after 2 x concurrency of them
    (at least 6), so a hung target costs about two timeouts per thread, not the whole run."""
    rec = Recording()
    conn = connect(scim2_server, transport=rec, max_retries=0, concurrency=2)
    fake_time(conn)
    slow = lambda r: httpx.ReadTimeout("slow", request=r)  # noqa: E731
    for _ in range(5):
        rec.faults.append(once("GET", "/Users", slow))
        with pytest.raises(Retriable):
            conn.find("user", "userName", "x")
    rec.faults.append(once("GET", "/Users", slow))
    with pytest.raises(Fatal, match="target down: 6 consecutive timeouts"):
        conn.find("user", "userName", "x")
    sent = len(rec.requests)
    with pytest.raises(Fatal, match="target down"):
        conn.update("user", "any", {"displayName": "x"})
    assert len(rec.requests) == sent


# --- 5. every response is bounded ------------------------------------------------------------


def huge_listing(size: int) -> Callable[[], Iterator[bytes]]:
    """A syntactically valid ListResponse of `size` bytes, produced chunk by chunk."""
    def chunks() -> Iterator[bytes]:
        head = b'{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],' \
               b'"totalResults":1,"Resources":[{"id":"x","userName":"'
        tail = b'"}]}'
        yield head
        left = size - len(head) - len(tail)
        block = b"a" * 65536
        while left > 0:
            yield block[:left]
            left -= len(block)
        yield tail
    return chunks


@pytest.mark.parametrize("announced", [False, True], ids=["streamed", "content-length"])
def test_an_oversized_answer_is_not_read(
    scim2_server: _Peer, connect: Callable[..., ScimConnector], announced: bool
) -> None:
    """The incident: a 32 MB answer to one lookup drove syncd to 15 GB. The body is read
    as a stream and abandoned past `max_response_bytes`: the proxy could hand over only a
    small part of it before syncd hung up."""
    size = 48 * MiB
    with FaultProxy(scim2_server.url) as proxy:
        conn = connect(scim2_server, url=proxy.url, max_response_bytes=MiB)
        proxy.add(Fault("serve", status=200, method="GET", path=r"/Users$",
                        payload=huge_listing(size), length=size if announced else None, times=3))
        with pytest.raises(Rejected, match=r"response too large: .* max_response_bytes"):
            conn.find("user", "userName", "x")
        with pytest.raises(Fatal, match=r"listing GET /Users\?startIndex=1 failed: .*too large"):
            list(conn.read("user"))  # (the probe for incremental reads got one too)
        served = [e.sent for e in proxy.wait_for("serve", 3)]
        assert len(served) == 3 and all(s is not None and s < size // 4 for s in served), served
        assert conn.find("user", "userName", "x") == []  # the next answer is read normally


def test_a_bad_bulk_answer_fails_its_creates_only(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """An oversized or malformed /Bulk answer fails the creates it carried, one result per
    slot; nothing escapes `create_many` (the next run adopts whatever was applied)."""
    items: list[dict[str, Any]] = [{"userName": f"bulk{i}"} for i in range(3)]
    with FaultProxy(scim2_server.url) as proxy:
        conn = connect(scim2_server, url=proxy.url, max_response_bytes=MiB)
        assert conn.capabilities.bulk
        proxy.add(Fault("serve", status=200, method="POST", path=r"/Bulk$",
                        payload=huge_listing(8 * MiB)))
        results = conn.create_many("user", items)
        assert all(isinstance(r, Rejected) for r in results) and len(results) == 3
        assert all("max_response_bytes" in str(r) for r in results)
        proxy.add(Fault("rewrite", method="POST", path=r"/Bulk$",
                        rewrite=lambda body: b'{"Operations": 5}'))
        results = conn.create_many("user", items)
        assert [type(r) for r in results] == [Retriable] * 3


# --- 7. TLS and transport warnings -----------------------------------------------------------


def self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "syncd test 127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


@pytest.fixture
def tls_scim(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """scim2-server's app over HTTPS on 127.0.0.1 (self-signed), in a thread: (url, cert)."""
    cert, key = self_signed(tmp_path)
    server: WSGIServer = make_server("127.0.0.1", 0, build_app([SCIM_TEST_TOKEN]),
                                     handler_class=_Quiet)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/v2", cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_client_for_http_loads_no_ca_and_trusts_no_certificate(
    tls_scim: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over http:// the client loads no CA bundle (~30 ms of every start); an https URL it
    meets anyway is refused, never trusted."""
    url, cert = tls_scim
    with monkeypatch.context() as mp:
        def loaded(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("a CA bundle was loaded for an http:// target")

        mp.setattr(ssl.SSLContext, "load_verify_locations", loaded)
        client = build_client(ScimConfig(url="http://127.0.0.1:9/v2", token=SCIM_TEST_TOKEN))
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        client.get(f"{url}/ServiceProviderConfig")
    trusting = build_client(ScimConfig(url=url, token=SCIM_TEST_TOKEN, ca_file=str(cert)))
    assert trusting.get(f"{url}/ServiceProviderConfig").status_code == 200


def test_an_unverifiable_certificate_says_so(
    tls_scim: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    url, cert = tls_scim
    conn = ScimConnector("scim-tls", ScimConfig(url=url, token=SCIM_TEST_TOKEN))
    with pytest.raises(Fatal) as info:
        conn.open()
    msg = str(info.value)
    assert msg.startswith(f"TLS certificate verification failed for {url}: "), msg
    assert "self-signed certificate" in msg and "ca_file" in msg
    trusted = ScimConnector("scim-tls",
                            ScimConfig(url=url, token=SCIM_TEST_TOKEN, ca_file=str(cert)))
    trusted.open()
    try:
        assert trusted.find("user", "userName", "nobody") == []
    finally:
        trusted.close()
    insecure = ScimConnector("scim-tls",
                             ScimConfig(url=url, token=SCIM_TEST_TOKEN, tls_verify=False))
    with caplog.at_level(logging.WARNING, logger="syncd.connectors.scim"):
        for _ in range(2):  # every open, i.e. every run
            insecure.open()
            insecure.close()
    warnings = [r for r in caplog.records if "tls_verify = false" in r.getMessage()]
    assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)
    assert SCIM_TEST_TOKEN not in caplog.text


PLAIN_HTTP = {
    "http://scim.example.com/v2": True,
    "http://10.1.2.3:8080/scim": True,
    "http://127.0.0.1:9/v2": False,
    "http://localhost:9/v2": False,
    "http://[::1]:9/v2": False,
    "https://scim.example.com/v2": False,
}


def test_a_token_over_plain_http_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    """At every open, for a non-loopback http:// URL only. Nothing leaves this machine: the
    transport answers 503 without any network."""
    offline = httpx.MockTransport(lambda r: httpx.Response(503, json=scim_error("503")))
    for url, warned in PLAIN_HTTP.items():
        conn = ScimConnector("scim-http", ScimConfig(url=url, token="tok-4711", max_retries=0),
                             transport=offline)
        conn.sleep = lambda s: None
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="syncd.connectors.scim"):
            for _ in range(2):
                with pytest.raises(Fatal):
                    conn.open()
        hits = [r for r in caplog.records if "clear text" in r.getMessage()]
        assert len(hits) == (2 if warned else 0), (url, caplog.text)
        assert "tok-4711" not in caplog.text


def test_json_escape_is_what_is_sent() -> None:
    """The filter literal is a JSON string (RFC 7644 §3.4.2.2), not a hand-made one."""
    from syncd_connectors.scim.paths import escape

    for value in ("a\tb", 'q"\\', "\x00\r\n", "zoë"):
        assert json.loads(escape(value)) == value
        assert not any(ord(c) < 0x20 for c in escape(value))
