"""``python -m asyncworkers``: the same command line as the ``asyncworkers`` script."""

from __future__ import annotations

if __name__ == "__main__":
    # Imported here, and absolutely: anyio's process workers re-run this file as
    # ``__mp_main__`` (where a relative import has no parent package), and they need
    # nothing from the CLI.
    import sys

    from asyncworkers.cli import main

    sys.exit(main())
