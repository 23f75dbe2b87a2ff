"""One flow between two in-memory directories, for engine-level unit tests: the config head
(state store, the two memory connectors, the flow) is written here once; each test module
adds its flow settings and mappings as the TOML *body*."""

from __future__ import annotations

import itertools
from pathlib import Path

from syncd import config
from syncd.cycle import engine
from syncd.cycle.result import FlowResult
from syncd.testing import DIRECTORIES, Directory, directory

_names = itertools.count()

HEAD = """
[state]
url = "sqlite:///{state}"
[connectors.src]
type = "memory"
directory = "{src}"
page_size = {page_size}
[connectors.dst]
type = "memory"
directory = "{dst}"
[flows.f]
source = "src"
target = "dst"
"""


class MemoryFlow:
    """Flow ``f`` from directory `src` to directory `dst`, fresh names per instance."""

    def __init__(self, tmp: Path, body: str, *, prefix: str = "m", page_size: int = 2,
                 ok: tuple[str, ...] = ("ok",)) -> None:
        n = next(_names)
        self.src_name, self.dst_name = f"{prefix}src{n}", f"{prefix}dst{n}"
        self.src: Directory = directory(self.src_name)
        self.dst: Directory = directory(self.dst_name)
        self.path = tmp / f"c{n}.toml"
        self.path.write_text(HEAD.format(state=tmp / f"s{n}.db", src=self.src_name,
                                         dst=self.dst_name, page_size=page_size) + body)
        self.cfg = config.load(self.path)
        self.ok = ok

    def run(self, **kw: object) -> FlowResult:
        (res,) = engine.run(self.cfg, **kw)  # type: ignore[arg-type]
        assert res.result in self.ok, (res.result, res.errors, res.failures)
        return res

    def close(self) -> None:
        DIRECTORIES.pop(self.src_name, None)
        DIRECTORIES.pop(self.dst_name, None)
