"""The notify FIFO writer with real FIFOs and a real event loop: it never blocks the loop
and never raises, whatever the reader does (absent, late, slow, gone), and never writes
into something that is not a FIFO."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

from hacontrol.notify_fifo import FifoWriter
from hacontrol.notify_plan import fifo_line
from tests.netns.notify_util import FifoReader


def line(n: int) -> str:
    return fifo_line("INSTANCE", f"VI_{n}", "MASTER", 100)


async def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def read_until(reader: FifoReader, count: int, timeout: float) -> list[str]:
    await wait_for(lambda: len(reader.poll()) >= count, timeout, f"{count} lines")
    return reader.lines


async def test_no_reader_keeps_lines_for_a_late_reader_and_counts_one_episode(
    tmp_path: Path,
) -> None:
    path = tmp_path / "notify.fifo"
    writer = FifoWriter(str(path), 100)
    writer.start()
    # Created as keepalived does, private to root.
    info = os.stat(path)
    assert stat.S_ISFIFO(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    started = time.monotonic()
    for n in range(5):
        writer.write(line(n))
    assert time.monotonic() - started < 0.05  # nothing waited for a reader
    await asyncio.sleep(0.5)  # a few reopen attempts fail meanwhile
    stats = writer.stats()
    assert (stats.buffered, stats.written, stats.reader) == (5, 0, False)
    assert stats.errors == {"no_reader": 1}  # an episode, not every attempt
    with FifoReader(path, create=False) as reader:
        lines = await read_until(reader, 5, timeout=5.0)
    assert lines == [line(n).rstrip("\n") for n in range(5)]
    assert writer.stats().written == 5 and writer.stats().buffered == 0
    assert writer.conditions.current is None
    await writer.close()


async def test_a_full_buffer_drops_the_oldest_and_the_late_reader_gets_the_newest(
    tmp_path: Path,
) -> None:
    path = tmp_path / "notify.fifo"
    writer = FifoWriter(str(path), 3)
    writer.start()
    for n in range(10):
        writer.write(line(n))
    assert writer.stats().dropped == {"buffer_full": 7}
    with FifoReader(path, create=False) as reader:
        lines = await read_until(reader, 3, timeout=5.0)
    assert lines == [line(n).rstrip("\n") for n in (7, 8, 9)]
    await writer.close()


async def test_a_reader_that_goes_away_is_an_error_episode_and_the_line_waits(
    tmp_path: Path,
) -> None:
    path = tmp_path / "notify.fifo"
    reader = FifoReader(path)
    writer = FifoWriter(str(path), 100)
    writer.start()
    writer.write(line(0))
    assert await read_until(reader, 1, timeout=2.0) == [line(0).rstrip("\n")]
    reader.close()
    writer.write(line(1))  # EPIPE: no signal, no exception
    writer.write(line(2))
    stats = writer.stats()
    assert stats.errors.get("reader_gone") == 1 and stats.reader is False
    assert stats.buffered == 2
    with FifoReader(path, create=False) as again:
        lines = await read_until(again, 2, timeout=5.0)
    assert lines == [line(1).rstrip("\n"), line(2).rstrip("\n")]
    assert "no_reader" not in writer.stats().errors  # the same episode, not a second one
    await writer.close()


async def test_a_slow_reader_never_blocks_the_writer_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "notify.fifo"
    reader = FifoReader(path, pipe_size=4096)  # one page: about 150 lines
    writer = FifoWriter(str(path), 1000)
    writer.start()
    started = time.monotonic()
    for n in range(600):  # about 18 KiB: four pipes' worth
        writer.write(line(n))
    assert time.monotonic() - started < 0.2
    assert writer.stats().buffered > 0 and writer.conditions.current == "reader_slow"
    # The reader takes its time: half a page at a time, while the loop goes on; the
    # writer refills the pipe whenever the loop says it has room.
    rounds = 0
    while len(reader.lines) < 600 and rounds < 1000:
        rounds += 1
        reader.poll(max_bytes=2048)
        await asyncio.sleep(0.01)
    assert rounds >= 8  # 18 KiB through a 4 KiB pipe, 2 KiB a round
    assert reader.lines == [line(n).rstrip("\n") for n in range(600)]
    stats = writer.stats()
    assert stats.dropped == {} and stats.written == 600 and stats.errors == {"reader_slow": 1}
    await wait_for(lambda: writer.conditions.current is None, 2.0, "caught up")
    reader.close()
    await writer.close()


async def test_something_that_is_not_a_fifo_is_never_written(tmp_path: Path) -> None:
    regular = tmp_path / "regular"
    regular.write_text("precious\n")
    fifo = tmp_path / "real.fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link.fifo"
    link.symlink_to(fifo)
    with FifoReader(fifo, create=False) as reader:
        for path in (regular, link):
            writer = FifoWriter(str(path), 10)
            writer.start()
            writer.write(line(1))
            writer.write(line(2))
            await asyncio.sleep(0.3)
            assert writer.stats().errors == {"not_a_fifo": 1}, path
            assert writer.stats().written == 0
            await writer.close()
        assert regular.read_text() == "precious\n"
        assert reader.poll(0.1) == []  # nothing went through the symlink


async def test_a_missing_directory_is_a_create_error_not_a_crash(tmp_path: Path) -> None:
    writer = FifoWriter(str(tmp_path / "no" / "such" / "fifo"), 10)
    writer.start()
    writer.write(line(1))
    assert writer.stats().errors == {"create_failed": 1}
    await writer.close()
    assert writer.stats().dropped == {"shutdown": 1}


async def test_close_gives_waiting_lines_a_moment_then_counts_what_is_left(
    tmp_path: Path,
) -> None:
    path = tmp_path / "notify.fifo"
    reader = FifoReader(path, pipe_size=4096)
    writer = FifoWriter(str(path), 1000)
    writer.start()
    for n in range(300):
        writer.write(line(n))
    left = writer.stats().buffered
    assert left > 0
    started = time.monotonic()
    await writer.close(flush_timeout=0.3)  # the reader never reads
    assert 0.25 < time.monotonic() - started < 1.0
    assert writer.stats().dropped == {"shutdown": left}
    writer.write(line(999))  # after close: ignored, no error
    reader.close()
