"""``python -m syncd``: the same command line as the ``syncd`` script."""

from syncd.cli.main import main

main(prog_name="syncd")
