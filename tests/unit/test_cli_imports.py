"""What the `hacontrol` command imports before it knows what it will do.

`hacontrol run` starts its VRRP process before loading the config models (vrrp_launch.py),
which only helps if importing the command does not load them already; and `hacontrol
status` (and the other operator commands) should not pay 0.3 s for models they never use.
Each check runs in a fresh interpreter, where sys.modules starts empty."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pydantic", "hacontrol.config", "hacontrol.daemon", "hacontrol.importer.translate")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    modules: list[str] = json.loads(out.splitlines()[-1])
    return [m for m in modules if m.startswith(HEAVY)]


def test_importing_the_command_loads_no_config_models() -> None:
    assert _loaded_after("import hacontrol.cli") == []


def test_building_the_parser_for_an_operator_command_loads_no_config_models() -> None:
    code = (
        "from hacontrol import cli\n"
        "for argv in (['status'], ['ipvs', 'list'], ['genhash', 'http://x/'],"
        " ['import', 'keepalived', 'f']):\n"
        "    cli._build_parser().parse_args(argv)"
    )
    assert _loaded_after(code) == []
