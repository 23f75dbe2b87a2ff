"""The systemd units: `systemd-analyze verify` and `security` pass, the directives the daemon
relies on are there, and syncd works under MemoryDenyWriteExecute's kernel equivalent.

systemd-analyze comes from Debian's ``systemd`` package. When it is missing these tests fail
(they never skip): a unit file nobody verified is exactly what this guards against.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
SYNCD = Path(sys.executable).parent / "syncd"

PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1


def analyze() -> str:
    path = shutil.which("systemd-analyze")
    assert path, "systemd-analyze is missing: apt-get install -y systemd (Debian package)"
    return path


def installed_copy(tmp: Path, unit: str, name: str | None = None) -> Path:
    """The unit with ExecStart pointing at this venv's syncd: verify checks that the binary
    exists, and /usr/bin/syncd does not on a development machine."""
    assert SYNCD.exists(), f"{SYNCD} missing: run scripts/bootstrap.sh"
    text = (UNITS / unit).read_text()
    assert "ExecStart=/usr/bin/syncd " in text
    out = tmp / (name or unit)
    out.write_text(text.replace("/usr/bin/syncd ", f"{SYNCD} "))
    return out


def directives(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (UNITS / unit).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.parametrize(("unit", "name"), [("syncd.service", None),
                                            ("syncd@.service", "syncd@corp.service")])
def test_systemd_analyze_verify(tmp_path: Path, unit: str, name: str | None) -> None:
    path = installed_copy(tmp_path, unit, name)
    res = subprocess.run([analyze(), "verify", str(path)], capture_output=True, text=True,
                         timeout=60)
    complaints = [line for line in res.stderr.splitlines() if path.name in line]
    assert res.returncode == 0 and not complaints, res.stderr


def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    """The check above can fail: a typo in a directive is reported."""
    path = installed_copy(tmp_path, "syncd.service")
    path.write_text(path.read_text().replace("ProtectHome=yes", "ProtectHome=yes\nProtectHom=1"))
    res = subprocess.run([analyze(), "verify", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert "ProtectHom" in res.stderr


def test_security_exposure_is_low(tmp_path: Path) -> None:
    path = installed_copy(tmp_path, "syncd.service")
    res = subprocess.run([analyze(), "security", "--offline=true", "--threshold=20",  # 2.0 of 10
                          "--no-pager", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr


@pytest.mark.parametrize("unit", ["syncd.service", "syncd@.service"])
def test_the_directives_the_daemon_relies_on(unit: str) -> None:
    d = directives(unit)
    one = {k: v[-1] for k, v in d.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["WatchdogSec"] and one["TimeoutStopSec"]
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["DynamicUser"] == "yes" and one["UMask"] == "0077"
    assert one["ConfigurationDirectory"] == "syncd"
    assert one["RestartPreventExitStatus"] == "2"  # invalid config: restarting cannot help
    for key, want in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                      "PrivateDevices": "yes", "NoNewPrivileges": "yes",
                      "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
                      "SystemCallArchitectures": "native", "CapabilityBoundingSet": "",
                      "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
                      "ProtectControlGroups": "yes", "RestrictNamespaces": "yes",
                      "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
                      "RestrictRealtime": "yes"}.items():
        assert one.get(key) == want, key
    assert "@system-service" in d["SystemCallFilter"]
    if unit == "syncd.service":
        assert one["ExecStart"] == "/usr/bin/syncd daemon --config /etc/syncd/syncd.toml"
        assert one["StateDirectory"] == "syncd"
    else:
        assert one["ExecStart"] == "/usr/bin/syncd daemon --config /etc/syncd/%i.toml"
        assert one["StateDirectory"] == "syncd/%i"


def _mdwe() -> None:
    """In the child before exec: refuse writable+executable memory from now on, as
    MemoryDenyWriteExecute=yes does (the kernel's PR_SET_MDWE; inherited across exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE) failed")


CHILD = textwrap.dedent("""
    import ctypes, mmap, sys
    libc = ctypes.CDLL(None)
    assert libc.prctl(66, 0, 0, 0, 0) == 1, "MDWE not in force"
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        pass
    else:
        sys.exit("W+X mapping was allowed: the check would prove nothing")
    import httpx, socket
    import syncd_connectors.ldap.connector, syncd_connectors.scim.connector
    from syncd.cli import main
    from syncd.daemon import metrics, service
    from syncd.state.store import Store
    from syncd.config import load
    store = Store("sqlite:///" + sys.argv[1] + "/s.db")
    store.start_run("f")
    store.close()
    m = metrics.Metrics()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m.serve(f"127.0.0.1:{port}")
    assert "syncd_runs" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
    m.close()
    print("ok")
""")


def test_syncd_runs_with_memory_deny_write_execute(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True,
                         text=True, timeout=120, preexec_fn=_mdwe, cwd=REPO)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]
