"""Every syncd command runs with the collector's young threshold raised (`GC_YOUNG_THRESHOLD`):
with CPython's default the cyclic collector took ~15% of a large dry run's CPU."""

from __future__ import annotations

import gc

from click.testing import CliRunner

from syncd.cli.main import GC_YOUNG_THRESHOLD, main


def test_a_command_raises_the_young_threshold_only() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        result = CliRunner().invoke(main, ["connectors"])
        assert result.exit_code == 0, result.output
        assert "ldap" in result.output
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)  # older generations kept
        assert gc.isenabled()
    finally:
        gc.set_threshold(*before)
