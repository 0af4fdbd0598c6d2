"""The persistent state file (overrides, owned services) and the pid lock.

Plain files in a temporary directory; no sockets, no sleeps.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hacontrol.ipvs.model import ServiceKey
from hacontrol.runtime.lock import AlreadyRunning, PidLock
from hacontrol.runtime.state import (
    PersistentState,
    RealServerRef,
    StateError,
    StateFile,
    decode_state,
    encode_state,
)


def sample() -> PersistentState:
    web = ServiceKey.of("TCP", "192.0.2.10", 80)
    v6 = ServiceKey.of("UDP", "2001:db8::10", 53)
    mark = ServiceKey.of_fwmark(7)
    return PersistentState(
        drained=frozenset(
            {RealServerRef("web", "198.51.100.11", 80), RealServerRef("dns", "2001:db8::2", 53)}
        ),
        stepped_down=frozenset({"VI_1"}),
        owned_services=frozenset({web, v6, mark}),
        drain_timeouts={web: 300.0, mark: 12.5},
    )


def test_round_trip() -> None:
    state = sample()
    assert decode_state(encode_state(state)) == state


def test_encoding_is_stable_so_rewrites_do_not_churn() -> None:
    assert encode_state(sample()) == encode_state(sample())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not JSON"),
        ("[]", "the top level must be an object"),
        ('{"version": 99}', "unknown format version 99"),
        ('{"version": 1, "drained": {}}', "drained must be a list"),
        ('{"version": 1, "drained": [{"address": "x"}]}', "bad drained entry"),
        ('{"version": 1, "stepped_down": [1]}', "stepped_down must list instance names"),
        ('{"version": 1, "owned_services": [{"family": 2}]}', "bad service key"),
        (
            '{"version": 1, "owned_services": [{"family": 2, "fwmark": 0, "protocol": 6,'
            ' "address": "not an ip", "port": 80}]}',
            "bad service key",
        ),
    ],
)
def test_bad_content_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(StateError, match=message):
        decode_state(text)


def test_missing_file_is_an_empty_state(tmp_path: Path) -> None:
    assert StateFile(tmp_path / "nothing").load() == PersistentState()


def test_save_then_load(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "lib")
    assert store.save(sample())
    assert StateFile(tmp_path / "lib").load() == sample()
    assert [p.name for p in (tmp_path / "lib").iterdir()] == ["state.json"]  # no temp left


def test_unreadable_file_is_kept_aside_and_the_daemon_starts_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = StateFile(tmp_path)
    store.path.write_text("{garbage")
    assert store.load() == PersistentState()
    assert "state.unreadable" in caplog.text
    assert (tmp_path / "state.json.bad").read_text() == "{garbage"
    assert not store.path.exists()


def test_save_failure_is_reported_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert not StateFile(blocker / "sub").save(sample())  # a file where a folder should be


def test_second_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first = PidLock.acquire(tmp_path / "run")
    try:
        assert (tmp_path / "run" / "hacontrol.pid").read_text() == f"{os.getpid()}\n"
        with pytest.raises(AlreadyRunning) as info:
            PidLock.acquire(tmp_path / "run")
        assert info.value.pid == os.getpid()
        assert f"already running (pid {os.getpid()}" in str(info.value)
    finally:
        first.release()
    assert not (tmp_path / "run" / "hacontrol.pid").exists()
    again = PidLock.acquire(tmp_path / "run")  # released: the next daemon may start
    again.release()


def test_a_stale_pid_file_without_a_lock_does_not_block(tmp_path: Path) -> None:
    (tmp_path / "hacontrol.pid").write_text("999999\n")  # left by a kill -9: no lock held
    lock = PidLock.acquire(tmp_path)
    assert (tmp_path / "hacontrol.pid").read_text() == f"{os.getpid()}\n"
    lock.release()
