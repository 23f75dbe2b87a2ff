"""Start-up: a command imports only what it and the configured connectors need.

A one-shot ``syncd run`` from cron is mostly start-up (issue 17): scim2-models alone cost
~0.4 s to import and more to build its classes. These tests run real processes and read
``python -X importtime`` (every module the process imported, in order) — behaviour, not
timing: a module that should not be imported on a path is a regression whatever the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import Sync

REPO = Path(__file__).resolve().parents[2]
#: Needed only to validate a body or to send PATCH/PUT/DELETE through scim2-client
#: (`syncd_connectors.scim.client`), and by the Graph connector.
WRITE_ONLY = ("scim2_models", "scim2_client")
#: Never needed by a flow between LDAP and SCIM.
OTHER_CONNECTORS = ("msgraph", "azure", "kiota_abstractions")
#: The store's SQLModel declarations and the ORM: a run uses the Core tables rendered from them
#: (`syncd.state.schema`); the PostgreSQL dialect: the e2e store is SQLite.
STORE_UNNEEDED = ("sqlmodel", "sqlalchemy.orm", "syncd.state.declarations",
                  "sqlalchemy.dialects.postgresql")
#: The two-way cycle, its merge, catch-up and streaming: a push flow needs none of them.
TWO_WAY = ("syncd.cycle.two_way", "syncd.cycle.two_way_stream", "syncd.cycle.catch_up",
           "syncd.plan.merge")
#: The engine, the store, the config and mapping compilers: `syncd --help` needs none.
ENGINE = ("syncd.cycle", "syncd.state", "syncd.config", "syncd.mapping", "sqlalchemy",
          "sqlmodel", "pydantic", "ldap3", "httpx", "syncd_connectors")


def imported(*args: str, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """The modules a ``python -m syncd ARGS`` process imported, and its stdout."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "syncd", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    names = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
             if line.startswith("import time:") and "|" in line}
    assert "syncd.cli.main" in names  # the listing is really there
    return names, proc.stdout


def under(names: set[str], packages: tuple[str, ...]) -> list[str]:
    """The modules of `names` that are, or are inside, one of `packages`."""
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in packages))


def test_help_imports_no_engine_no_connector() -> None:
    names, out = imported("--help")
    assert "run" in out and "validate" in out
    assert under(names, ENGINE + WRITE_ONLY + OTHER_CONNECTORS) == []


def test_a_no_change_run_into_scim_needs_no_scim2_models(sync: Sync) -> None:
    """The first run writes (and builds scim2-models' classes); the second, with nothing to
    change, never imports scim2-models or scim2-client, nor another connector's modules."""
    env = {"E2E_LDAP_PASSWORD": sync.ldap.admin_password,
           "E2E_SCIM_TOKEN": sync.scim.token or ""}
    first, _ = imported("run", "-c", str(sync.config), env=env)
    assert under(first, WRITE_ONLY) != []  # creates were validated: the check can fail
    assert under(first, STORE_UNNEEDED + TWO_WAY) == []  # the store created without SQLModel
    names, out = imported("run", "-c", str(sync.config), env=env)
    assert "users: no changes; groups: no changes" in out
    assert under(names, WRITE_ONLY + OTHER_CONNECTORS + STORE_UNNEEDED + TWO_WAY) == []
    dry, out = imported("run", "--dry-run", "-c", str(sync.config), env=env)
    assert under(dry, WRITE_ONLY + OTHER_CONNECTORS + STORE_UNNEEDED + TWO_WAY) == []
