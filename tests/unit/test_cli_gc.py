"""How syncd commands tune CPython's cyclic collector (`syncd.cli.main.GC_YOUNG_THRESHOLD`,
`syncd.cli.common.settle_start_up`): with the defaults the collector took ~20% of a large
dry run's CPU, traversing entry dicts that hold no cycles and the long-lived objects of
every imported module."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncd.cli.main import GC_YOUNG_THRESHOLD, main
from syncd.testing import DIRECTORIES, directory

CONFIG = """
[state]
url = "sqlite:///{state}"
[connectors.src]
type = "memory"
directory = "gc-src"
[connectors.dst]
type = "memory"
directory = "gc-dst"
[flows.f]
source = "src"
target = "dst"
[flows.f.users.mapping]
userName = "uid"
"""


@pytest.fixture
def collector() -> Iterator[None]:
    """CPython's defaults, nothing frozen; restored afterwards."""
    before = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_command_raises_the_young_threshold_only(collector: None) -> None:
    result = CliRunner().invoke(main, ["connectors"])
    assert result.exit_code == 0, result.output
    assert "ldap" in result.output
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)  # older generations kept
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0  # a command that reads no directory freezes nothing


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_run_freezes_what_start_up_loaded_until_it_ends(
        collector: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dry_run: bool) -> None:
    calls: list[str] = []
    freeze, unfreeze = gc.freeze, gc.unfreeze

    def frozen() -> None:
        calls.append("freeze")
        assert "syncd.cycle.engine" in sys.modules  # start-up is over
        freeze()

    def unfrozen() -> None:
        calls.append(f"unfreeze ({gc.get_freeze_count() > 0 and 'frozen'})")
        unfreeze()

    monkeypatch.setattr(gc, "freeze", frozen)
    monkeypatch.setattr(gc, "unfreeze", unfrozen)
    src = directory("gc-src")
    directory("gc-dst")
    try:
        src.put("user", {"uid": "ann"}, "u1")
        cfg = tmp_path / "c.toml"
        cfg.write_text(CONFIG.replace("{state}", str(tmp_path / "s.db")))
        result = CliRunner().invoke(main, ["run", "-c", str(cfg),
                                           *(["--dry-run"] if dry_run else [])])
        assert result.exit_code == 0, result.output
        assert "1 create" in result.output
        assert calls == ["freeze", "unfreeze (frozen)"]  # once, and undone at the end
        assert gc.get_freeze_count() == 0
        assert gc.isenabled()
    finally:
        DIRECTORIES.pop("gc-src", None)
        DIRECTORIES.pop("gc-dst", None)
