"""`hacontrol restart`'s resume file (hacontrol/runtime/resume.py): only what is in time,
of this boot, and well formed may make an instance resume as MASTER."""

from __future__ import annotations

import json
import os
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
    assert resume.take(tmp_path, 1000.0).masters == {"VI_1": pytest.approx(3.0)}
    assert not (tmp_path / resume.RESUME_FILE).exists()
    assert resume.take(tmp_path, 1000.0) == resume.Resume()


def test_a_kept_vrrp_process_is_for_the_same_daemon_pid_only() -> None:
    # Its fd number means something only in the process that executed itself again.
    kept = {"pid": 4321, "fd": 9, "code": "abc"}
    text = resume.encode({"VI_1": 1000.5}, "boot-a", kept, daemon_pid=100)
    assert resume.decode_process(text, "boot-a", 100) == kept
    assert resume.decode_process(text, "boot-a", 101) is None
    assert resume.decode_process(text, "boot-b", 100) is None
    assert resume.decode(text, "boot-a", 1000.0) == {"VI_1": pytest.approx(0.5)}
    assert resume.decode_process(resume.encode({}, "boot-a"), "boot-a", 0) is None
    for bad in ("", "[]", json.dumps({"boot_id": "boot-a", "daemon_pid": 100, "vrrp_process": 3})):
        assert resume.decode_process(bad, "boot-a", 100) is None, bad


def test_a_kept_vrrp_process_is_refused_unless_it_runs_the_installed_code() -> None:
    from hacontrol.runtime.vrrp_host import adopt_refusal

    assert adopt_refusal("c1", "c1", alive=True, is_socket=True) == ""
    assert "code changed" in adopt_refusal("c2", "c1", alive=True, is_socket=True)
    assert "not running" in adopt_refusal("c1", "c1", alive=False, is_socket=True)
    assert "socket" in adopt_refusal("c1", "c1", alive=True, is_socket=False)


def test_the_code_id_follows_the_source_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hacontrol.runtime import vrrp_protocol

    first = vrrp_protocol.code_id()
    assert first == vrrp_protocol.code_id()
    real_stat = os.stat

    def touched(path: str) -> object:
        st = real_stat(path)
        if path.endswith("fsm.py"):
            return type("St", (), {"st_size": st.st_size, "st_mtime_ns": st.st_mtime_ns + 1})()
        return st

    monkeypatch.setattr(os, "stat", touched)
    assert vrrp_protocol.code_id() != first
