"""FILE_CHECK probe: values read from real files, keepalived track_file semantics."""

from __future__ import annotations

import os
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from healthcheck.config import FileCheck
from healthcheck.probes import ProbeTarget, run_probe

TARGET = ProbeTarget(IPv4Address("127.0.0.1"), 80)


@pytest.mark.parametrize(
    ("content", "weight", "dynamic", "ok", "reason", "result_weight"),
    [
        ("0\n", 0, False, True, "ok", None),
        ("1\n", 0, False, False, "file_nonzero", None),
        ("-3", 0, False, False, "file_nonzero", None),
        ("5", 1, False, True, "ok", None),
        ("5", 1, True, True, "ok", 5),
        ("  7 \n", 10, True, True, "ok", 70),
        ("0", 10, True, True, "ok", 0),
        ("-2", 10, True, False, "file_negative", None),
        ("-2", -10, True, True, "ok", 20),
        ("3", -1, False, False, "file_negative", None),
        ("+4", 2, True, True, "ok", 8),
        ("2147483647", 1, True, True, "ok", 2**31 - 1),
        ("2147483648", 1, True, False, "file_weight_out_of_range", None),
        ("up", 1, False, False, "file_not_a_number", None),
        ("", 1, False, False, "file_not_a_number", None),
        ("1 2", 1, False, False, "file_not_a_number", None),
        ("1.5", 1, False, False, "file_not_a_number", None),
    ],
)
async def test_values(
    tmp_path: Path,
    content: str,
    weight: int,
    dynamic: bool,
    ok: bool,
    reason: str,
    result_weight: int | None,
) -> None:
    path = tmp_path / "track"
    path.write_text(content)
    result = await run_probe(FileCheck(path=path, weight=weight, dynamic=dynamic), TARGET)
    assert (result.ok, result.reason, result.weight) == (ok, reason, result_weight)


async def test_missing_file(tmp_path: Path) -> None:
    result = await run_probe(FileCheck(path=tmp_path / "absent"), TARGET)
    assert (result.ok, result.reason) == (False, "file_missing")


async def test_directory_is_unreadable(tmp_path: Path) -> None:
    result = await run_probe(FileCheck(path=tmp_path), TARGET)
    assert (result.ok, result.reason) == (False, "file_unreadable")


async def test_huge_file_is_not_a_number(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"1" + b" " * 10000)
    assert (await run_probe(FileCheck(path=path), TARGET)).reason == "file_not_a_number"


async def test_value_change_is_seen_on_the_next_probe(tmp_path: Path) -> None:
    path = tmp_path / "track"
    path.write_text("1")
    check = FileCheck(path=path, weight=3, dynamic=True)
    assert (await run_probe(check, TARGET)).weight == 3
    tmp = tmp_path / "track.new"
    tmp.write_text("4")
    os.replace(tmp, path)  # how tools update a track file atomically
    assert (await run_probe(check, TARGET)).weight == 12
