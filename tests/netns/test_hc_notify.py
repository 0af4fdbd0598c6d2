"""Notify hooks with real processes: in order, without a shell, killed on timeout (real time)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from healthcheck.notify import Notifier, NotifyCommand

APPEND = """#!/bin/sh
# append-hook OUT DELAY WORD: sleep DELAY then append WORD to OUT
sleep "$2"
printf '%s\\n' "$3" >> "$1"
"""

HANG = """#!/bin/sh
# hang-hook PIDFILE: leave a child in our group, record both pids, then hang
sleep 60 &
echo "$$ $!" > "$1"
sleep 60
"""

EXIT3 = """#!/bin/sh
exit 3
"""


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(body)
    path.chmod(0o755)
    return str(path)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_hooks_run_in_submission_order(tmp_path: Path) -> None:
    hook = script(tmp_path, "append", APPEND)
    out = tmp_path / "out"
    notifier = Notifier()
    await notifier.start()
    words = [f"w{i}" for i in range(12)]
    for i, word in enumerate(words):
        # Slow hooks first and fast ones after: forking each at once would reorder them.
        delay = "0.08" if i % 3 == 0 else "0"
        assert notifier.submit(NotifyCommand((hook, str(out), delay, word), timeout=5.0))
    async with asyncio.timeout(20):
        await notifier.join()
    await notifier.stop()
    assert out.read_text().split() == words
    assert (notifier.stats.run, notifier.stats.succeeded, notifier.stats.failed) == (12, 12, 0)


async def test_submit_never_blocks_even_while_a_hook_runs(tmp_path: Path) -> None:
    hook = script(tmp_path, "append", APPEND)
    out = tmp_path / "out"
    notifier = Notifier()
    await notifier.start()
    notifier.submit(NotifyCommand((hook, str(out), "1", "slow"), timeout=5.0))
    for _ in range(200):  # bounded: until the slow hook has started
        if notifier.stats.run:
            break
        await asyncio.sleep(0.01)
    t0 = time.monotonic()
    for i in range(100):
        assert notifier.submit(NotifyCommand((hook, str(out), "0", f"f{i}"), timeout=5.0))
    # Submitting did not wait for the running hook: it has not written its line yet.
    assert not out.exists()
    assert time.monotonic() - t0 < 0.5
    assert notifier.stats.queued == 101
    await notifier.stop(drain=True, timeout=30)
    assert out.read_text().split() == ["slow"] + [f"f{i}" for i in range(100)]


async def test_hanging_hook_and_its_group_are_killed_after_the_timeout(tmp_path: Path) -> None:
    hang = script(tmp_path, "hang", HANG)
    hook = script(tmp_path, "append", APPEND)
    pids, out = tmp_path / "pids", tmp_path / "out"
    notifier = Notifier(kill_grace=0.2)
    await notifier.start()
    t0 = time.monotonic()
    notifier.submit(NotifyCommand((hang, str(pids)), timeout=0.4, event="quorum_down vs=web"))
    notifier.submit(NotifyCommand((hook, str(out), "0", "after"), timeout=5.0))
    async with asyncio.timeout(15):
        await notifier.join()
    elapsed = time.monotonic() - t0
    await notifier.stop()
    assert notifier.stats.timed_out == 1
    assert out.read_text().split() == ["after"]  # the queue moved on
    assert 0.4 <= elapsed < 5.0
    leader, child = (int(p) for p in pids.read_text().split())
    for _ in range(50):  # the kernel delivers SIGKILL asynchronously; bounded wait
        if not alive(leader) and not alive(child):
            break
        await asyncio.sleep(0.02)
    assert not alive(leader)
    assert not alive(child), "the hook's background child survived: group not killed"


async def test_no_shell_arguments_are_passed_verbatim(tmp_path: Path) -> None:
    hook = script(tmp_path, "append", APPEND)
    out = tmp_path / "out"
    canary = tmp_path / "canary"
    nasty = f"$(touch {canary});`touch {canary}`;*"
    notifier = Notifier()
    await notifier.start()
    notifier.submit(NotifyCommand((hook, str(out), "0", nasty)))
    await notifier.stop(drain=True, timeout=10)
    assert out.read_text() == nasty + "\n"
    assert not canary.exists()


async def test_errors_are_counted_not_raised(tmp_path: Path) -> None:
    fail = script(tmp_path, "exit3", EXIT3)
    hook = script(tmp_path, "append", APPEND)
    not_executable = tmp_path / "plain"
    not_executable.write_text("#!/bin/sh\n")
    out = tmp_path / "out"
    notifier = Notifier()
    await notifier.start()
    notifier.submit(NotifyCommand((fail,)))
    notifier.submit(NotifyCommand((str(tmp_path / "missing"),)))
    notifier.submit(NotifyCommand((str(not_executable),)))
    notifier.submit(NotifyCommand((hook, str(out), "0", "still-runs")))
    await notifier.stop(drain=True, timeout=10)
    s = notifier.stats
    assert (s.run, s.failed, s.exec_errors, s.succeeded) == (4, 1, 2, 1)
    assert out.read_text() == "still-runs\n"


async def test_full_queue_drops_and_counts(tmp_path: Path) -> None:
    hook = script(tmp_path, "append", APPEND)
    out = tmp_path / "out"
    notifier = Notifier(max_queue=3)
    # Before start(): queued in order, bounded the same way.
    results = [notifier.submit(NotifyCommand((hook, str(out), "0", f"q{i}"))) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert notifier.stats.dropped == 2
    await notifier.start()
    await notifier.stop(drain=True, timeout=10)
    assert out.read_text().split() == ["q0", "q1", "q2"]


async def test_stop_without_drain_kills_the_running_hook(tmp_path: Path) -> None:
    hang = script(tmp_path, "hang", HANG)
    pids = tmp_path / "pids"
    notifier = Notifier(kill_grace=0.2)
    await notifier.start()
    notifier.submit(NotifyCommand((hang, str(pids)), timeout=60))
    for _ in range(100):
        if pids.exists() and pids.read_text().strip():
            break
        await asyncio.sleep(0.02)
    await notifier.stop(drain=False)
    leader, child = (int(p) for p in pids.read_text().split())
    for _ in range(50):
        if not alive(leader) and not alive(child):
            break
        await asyncio.sleep(0.02)
    assert not alive(leader) and not alive(child)


def test_command_validation() -> None:
    with pytest.raises(ValueError):
        NotifyCommand(())
    with pytest.raises(ValueError):
        NotifyCommand(("/bin/true",), timeout=0)
    assert os.path.exists("/bin/sh")
