"""FILE_CHECK: read an integer from a file an operator or a tool writes; see FileCheck for
how the value maps to up/down and to a weight."""

from __future__ import annotations

import re

from healthcheck.config import FileCheck
from healthcheck.probes.common import Clock, ProbeFailure, ProbeTarget, Up, timed
from healthcheck.types import ProbeResult

# IPVS keeps a destination's weight in a signed 32-bit int (ip_vs.h, IP_VS_DEST_ATTR_WEIGHT).
MAX_IPVS_WEIGHT = 2**31 - 1
# A track file holds one number; anything large is not a track file.
_MAX_READ = 4096
_NUMBER_RE = re.compile(rb"[+-]?[0-9]{1,20}")


def read_value(check: FileCheck) -> int:
    try:
        with check.path.open("rb") as fh:
            raw = fh.read(_MAX_READ + 1)
    except FileNotFoundError as exc:
        raise ProbeFailure("file_missing") from exc
    except OSError as exc:
        raise ProbeFailure("file_unreadable") from exc
    text = raw.strip()
    if len(raw) > _MAX_READ or not _NUMBER_RE.fullmatch(text):
        raise ProbeFailure("file_not_a_number")
    return int(text)


def init_file(check: FileCheck) -> bool:
    """keepalived's init_file: write the initial value at start if the file is missing (or
    always, with init_overwrite). True if it wrote; an error is the probe's to report."""
    if check.init_file is None:
        return False
    if not check.init_overwrite and check.path.exists():
        return False
    try:
        check.path.write_text(f"{check.init_file}\n")
    except OSError:
        return False
    return True


def judge_value(check: FileCheck, value: int) -> Up:
    if check.weight == 0:
        # keepalived track_file with weight 0: non-zero means failure (reversed: zero does).
        if (value != 0) != check.reverse:
            raise ProbeFailure("file_zero" if check.reverse else "file_nonzero")
        return Up()
    result = (-value if check.reverse else value) * check.weight
    if result < 0:
        raise ProbeFailure("file_negative")
    if result > MAX_IPVS_WEIGHT:
        raise ProbeFailure("file_weight_out_of_range")
    return Up(weight=result if check.dynamic else None)


async def _file(check: FileCheck) -> Up:
    # A local read of a few bytes; done inline rather than in a thread, which could not be
    # cancelled anyway.
    return judge_value(check, read_value(check))


async def probe_file(
    check: FileCheck, target: ProbeTarget | None = None, *, clock: Clock | None = None
) -> ProbeResult:
    """Read and judge the file; never raises except asyncio.CancelledError."""
    return await timed(lambda: _file(check), clock)
