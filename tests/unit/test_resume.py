"""`hacontrol restart`'s resume file (hacontrol/runtime/resume.py): only what is in time,
of this boot, and well formed may make an instance resume as MASTER."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hacontrol.runtime import resume


def test_an_instance_resumes_only_before_its_deadline() -> None:
    text = resume.encode({"VI_1": 1000.5, "VI_2": 990.0}, "boot-a")
    assert resume.decode(text, "boot-a", 1000.0) == {"VI_1": pytest.approx(0.5)}
    assert resume.decode(text, "boot-a", 1001.0) == {}


def test_another_boot_or_a_bad_file_resumes_nothing() -> None:
    text = resume.encode({"VI_1": 1000.5}, "boot-a")
    assert resume.decode(text, "boot-b", 1000.0) == {}
    for bad in (
        "",
        "[]",
        "{",
        json.dumps({"boot_id": "boot-a", "masters": []}),
        json.dumps({"boot_id": "boot-a", "masters": {"VI_1": "soon", "VI_2": True}}),
        json.dumps({"boot_id": "boot-a", "masters": {"VI_1": 1e9}}),  # beyond any MDI
    ):
        assert resume.decode(bad, "boot-a", 1000.0) == {}, bad


def test_the_file_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resume, "boot_id", lambda: "boot-a")
    assert resume.save(tmp_path, {"VI_1": 1003.0})
    assert resume.take(tmp_path, 1000.0) == {"VI_1": pytest.approx(3.0)}
    assert not (tmp_path / resume.RESUME_FILE).exists()
    assert resume.take(tmp_path, 1000.0) == {}
