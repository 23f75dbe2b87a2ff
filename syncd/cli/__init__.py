"""The `syncd` command line (click): `main` registers every command; `common` holds the exit
codes and shared options; `run`, `inspect`, `service` and `mapping` hold the commands;
`explain` computes what ``syncd explain`` shows.

The top layer: may import anything in syncd; nothing imports it.
"""
