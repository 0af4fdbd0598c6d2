"""Logging for the daemon and its VRRP process: one format, pyroute2 kept quiet.

Standard library only: the VRRP process imports this and must stay small.
"""

from __future__ import annotations

import contextlib
import logging
import sys


def setup_logging(log_level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # pyroute2 logs every netlink message at debug level; --log-level debug is
    # for our own events (each dropped packet), not for that. Importing pyroute2
    # resets its logger to NOTSET (pyroute2/config/log.py: setLevel(0)), which
    # would undo a level set before the daemon's first import of it: import it
    # first, so the level set here is the last word.
    with contextlib.suppress(ImportError):
        import pyroute2.config.log  # noqa: F401
    for noisy in ("pyroute2", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
