"""One sync cycle, the imperative shell around the pure planner: read, confirm absences,
match, plan, check, apply, journal.

- `engine`: `run` and `run_flow`, the entry points (store lock, run journal, outcome);
- `push` and `two_way`: one cycle of each flow mode, side by side;
- `read`, `stream`, `absence`: reading a source (whole, or page by page for an initial sync)
  and proving what is gone before anything is deprovisioned;
- `commit`: the shared tail (safety check, apply, retries, cursors only when clean);
- `apply`, `session`, `write_back`: the one place that writes, to targets and (two-way) back
  to the source; `retrying`: failures remembered and held with backoff;
- `setup`, `result`, `render`: cursor choice, what a run returns, how it is shown.

May import everything below it (plugin API, mapping, state, config, plan); never the daemon
or the command line. Dry run is "stop before apply" with the store opened read-only.
"""
