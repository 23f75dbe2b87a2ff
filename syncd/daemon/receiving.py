"""The daemon's SCIM service provider (``[serve]``): one process under systemd both serves
what Entra ID / Okta provision and runs the flows that carry it on.

- `build_app` / `build_server`: the WSGI application and the HTTP server of a config, shared
  with ``syncd serve``: bearer tokens, OAuth JWTs (`syncd.daemon.inbound.oauth`), limits,
  and the refusal check (`syncd.daemon.inbound.refusal`) against the *current* config's
  flows, so a reload changes what is refused without a restart.
- `Receiver`: started by `syncd.daemon.service.Daemon` when ``[serve]`` is configured. A
  received change (answered only once it is durable) notifies one `Debounced` trigger per
  flow reading the directory, which runs that flow through `Daemon.run_flow` within about
  a second: the same connector locks as scheduled runs (never two runs of one flow at
  once), the same journal, metrics and alerts. Requests are counted by kind, method and
  status (`Metrics.scim_request`). On SIGTERM the server stops accepting and lets requests
  in flight finish (`stop_serving`), then the triggers stop (`close`) once the daemon's stop
  event tells runs in progress to wind down.
- `Receiver.prune`: the daily pruning of the directory's tombstones
  (`syncd.state.inbox_prune`): those every flow reading the directory has read past (its
  ``seq:N`` cursor, per kind) and older than ``[serve] tombstones_keep``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.config.durations import parse_duration
from syncd.config.flows import Config
from syncd.daemon.inbound.app import InboundApp
from syncd.daemon.inbound.oauth import JwtVerifier
from syncd.daemon.inbound.refusal import Refusals
from syncd.daemon.inbound.server import Server
from syncd.daemon.inbound.trigger import Debounced
from syncd.model import Kind
from syncd.state.inbox import Inbox
from syncd.state.inbox_prune import prune_tombstones
from syncd.state.inbox_source import parse_cursor

log = logging.getLogger("syncd.serve")

KINDS: tuple[Kind, ...] = ("user", "group")


def build_app(config: Callable[[], Config], inbox: Inbox, *,
              on_change: Callable[[], None] | None = None,
              on_request: Callable[[str, str, int], None] | None = None) -> InboundApp:
    """The SCIM application for ``config().serve``; `config` is asked again per request by
    the refusal check (the daemon's current config)."""
    sc = config().serve
    assert sc is not None
    oauth = None
    if sc.oauth is not None:
        oauth = JwtVerifier(sc.oauth.issuer, sc.oauth.audience, sc.oauth.jwks_file,
                            algorithms=sc.oauth.algorithms,
                            leeway=parse_duration(sc.oauth.leeway))
    return InboundApp(inbox, [t.get_secret_value() for t in sc.tokens], max_body=sc.max_body,
                      rate_limit=sc.rate_limit, on_change=on_change,
                      refuse=Refusals(config, sc.directory).why, oauth=oauth,
                      on_request=on_request)


def build_server(app: InboundApp, cfg: Config) -> Server:
    sc = cfg.serve
    assert sc is not None
    return Server(app, sc.listen, threads=sc.threads, tls_cert=sc.tls_cert,
                  tls_key=sc.tls_key, behind_proxy=sc.behind_proxy, max_body=sc.max_body)


def flows_reading(cfg: Config, directory: str) -> list[str]:
    return sorted(name for name, f in cfg.flows.items() if f.source == directory)


class Receiver:
    def __init__(self, config: Callable[[], Config], run_flow: Callable[[str], object],
                 metrics: Any, *, quiet: float = 0.2, most: float = 1.0) -> None:
        from syncd.state.store import Store

        self.config = config
        self.run_flow = run_flow
        self.metrics = metrics
        self.quiet, self.most = quiet, most
        cfg = config()
        assert cfg.serve is not None
        self.serve = cfg.serve
        self.directory = cfg.serve.directory
        self.store = Store(cfg.state_url)
        assert self.store.engine is not None
        self.inbox = Inbox(self.store.engine, self.directory)
        self.app = build_app(config, self.inbox, on_change=self.changed,
                             on_request=metrics.scim_request)
        self.server = build_server(self.app, cfg)
        self._triggers: dict[str, Debounced] = {}
        self._guard = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Bind and serve (OSError: address in use, unreadable certificate)."""
        try:
            self.server.start()
        except BaseException:
            self.store.close()
            raise
        self.metrics.serving()
        log.info("serving SCIM 2.0 on %s (directory %r): a received change runs %s",
                 self.server.url, self.directory,
                 ", ".join(flows_reading(self.config(), self.directory)) or "no flow")

    def changed(self) -> None:
        """A change is durable in the directory: run each flow reading it, debounced."""
        names = flows_reading(self.config(), self.directory)
        with self._guard:
            if self._closed:
                return
            for name in names:
                trigger = self._triggers.get(name)
                if trigger is None:
                    trigger = self._triggers[name] = Debounced(
                        lambda n=name: self.run_flow(n), name=f"flow {name}",  # type: ignore[misc]
                        quiet=self.quiet, most=self.most)
                trigger.changed()

    def stop_serving(self) -> None:
        """Stop accepting; requests in flight finish (up to the server's shutdown timeout)."""
        self.server.stop()

    def close(self) -> None:
        """Stop the triggers (a run in progress is waited for) and release the store."""
        with self._guard:
            self._closed = True
            triggers = list(self._triggers.values())
        for trigger in triggers:
            trigger.stop()
        self.store.close()

    def reload(self, cfg: Config) -> None:
        """Apply what can change while serving (the tokens); say what needs a restart."""
        new = cfg.serve
        if new is None:
            log.warning("[serve] was removed: still serving until the daemon is restarted")
            return
        fixed = ("listen", "directory", "tls_cert", "tls_key", "behind_proxy", "threads",
                 "max_body", "rate_limit", "oauth")
        changed = [k for k in fixed if getattr(new, k) != getattr(self.serve, k)]
        if changed:
            log.warning("[serve] %s changed: takes effect when the daemon is restarted",
                        ", ".join(changed))
        try:
            self.app.set_tokens([t.get_secret_value() for t in new.tokens])
        except ValueError as exc:
            log.error("[serve] tokens not changed: %s", exc)

    def prune(self) -> dict[Kind, int] | None:
        """The job: delete the tombstones every flow reading the directory has read past and
        older than ``tombstones_keep``; tombstones pruned per kind, None on failure. Never
        raises (tried again the next day)."""
        cfg = self.config()
        keep = parse_duration((cfg.serve or self.serve).tombstones_keep)
        older_than = datetime.now(UTC) - timedelta(seconds=keep)
        out: dict[Kind, int] = {}
        try:
            for kind in KINDS:
                upto = self.inbox.head()
                for name in flows_reading(cfg, self.directory):
                    flow = cfg.flows[name]
                    if flow.kind(kind) is None:
                        continue
                    seq = parse_cursor(self.store.cursor(name, self.directory, kind).value)
                    if seq is not None:  # no cursor: a full read next, needing no tombstone
                        upto = min(upto, seq)
                assert self.store.engine is not None
                out[kind] = prune_tombstones(self.store.engine, self.directory, kind,
                                             upto=upto, older_than=older_than)
        except Exception as exc:
            log.error("tombstones of %r not pruned: %s: %s", self.directory,
                      type(exc).__name__, exc)
            return None
        log.info("tombstones of %r pruned: %d user(s), %d group(s) read by every flow and "
                 "older than %s (serve.tombstones_keep)", self.directory, out["user"],
                 out["group"], (cfg.serve or self.serve).tombstones_keep)
        return out
