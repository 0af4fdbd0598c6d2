"""The systemd unit (systemd/hacontrol.service): settings whose loss breaks a feature."""

from __future__ import annotations

import configparser
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "hacontrol.service"


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_other_users_processes_stay_visible() -> None:
    # track_process and pidof-style track scripts read /proc: with ProtectProc=invisible
    # (or noaccess, ptraceable) a running service of another user reads as stopped, and
    # a weight-0 item puts both directors in FAULT.
    assert service().get("ProtectProc", "default") == "default"
    assert service().get("ProcSubset", "all") == "all"
