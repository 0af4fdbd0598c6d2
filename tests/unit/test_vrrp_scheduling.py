"""The VRRP process's scheduling calls, witnessed by strace.

The packaged unit's system-call filter refuses sched_setscheduler and setpriority unless
the realtime drop-in allows them, so a config that sets neither vrrp_rt_priority nor
vrrp_priority must make neither call (it used to reset SCHED_OTHER on every start, which
the filter turned into an error in the log).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import require_tool

ROOT = Path(__file__).resolve().parents[2]


def scheduling_calls(tmp_path: Path, rt_priority: int | None, nice: int | None) -> list[str]:
    strace = require_tool("strace")
    out = tmp_path / "trace"
    code = (
        "from hacontrol.runtime.vrrp_process import apply_scheduling; "
        f"apply_scheduling({rt_priority!r}, {nice!r})"
    )
    trace = [strace, "-f", "-qq", "-e", "trace=sched_setscheduler,setpriority", "-o", str(out)]
    subprocess.run(
        [*trace, sys.executable, "-c", code],
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    return [line for line in out.read_text().splitlines() if "(" in line]


def test_nothing_configured_makes_no_scheduling_call(tmp_path: Path) -> None:
    assert scheduling_calls(tmp_path, None, None) == []


def test_a_nice_value_is_set_and_nothing_else(tmp_path: Path) -> None:
    calls = scheduling_calls(tmp_path, None, 5)
    assert len(calls) == 1 and "setpriority(PRIO_PROCESS, 0, 5)" in calls[0], calls
