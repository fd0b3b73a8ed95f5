"""`python -m tests.stalled_tvo MARKER SKIP ARGS...`: `tvo ARGS...` whose units train through
tests.faults.stalling_entry, so that its stack after the first SKIP stalls after a known
epoch's checkpoint, for a fault test to SIGKILL the process there (as a user's `kill -9`
would, with no race against training)."""

from __future__ import annotations

import functools
import sys

import jobs.entry
from tests.faults import stalling_entry

if __name__ == "__main__":
    marker, skip, *args = sys.argv[1:]
    # the backends call jobs.entry.run_unit when no stand-in entry is given (cluster.backends)
    jobs.entry.run_unit = functools.partial(stalling_entry, marker=marker, skip=int(skip))
    sys.argv = ["tvo", *args]
    from runner.entry import main

    main()
