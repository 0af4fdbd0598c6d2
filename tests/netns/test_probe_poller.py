"""The probes' readiness waits (healthcheck.probes.common.wait_ready and its _ProbePoller),
on real sockets: what each wait leaves in the epoll set, deadlines, the epoll fd's life, and
how a connect() that finished inside the call is told from one still going on.

The epoll set is read from /proc/self/fdinfo (one `tfd:` line per registered fd, proc(5)),
so the assertions see the kernel's own view, not the poller's bookkeeping.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import select
import socket
from collections.abc import Iterator

import pytest

from healthcheck.config import TcpCheck
from healthcheck.probes import ProbeTarget, run_probe
from healthcheck.probes.common import _established, _pollers, wait_ready
from tests.netns.probe_servers import closed_tcp_port, fresh_loopback, full_backlog

TCP_SYN_SENT = "02"


def registered(epoll: select.epoll) -> set[int]:
    """The fds in `epoll`'s interest list, as the kernel reports them."""
    with open(f"/proc/self/fdinfo/{epoll.fileno()}") as fh:
        return {int(line.split()[1]) for line in fh if line.startswith("tfd:")}


def poller_epoll() -> select.epoll:
    return _pollers[asyncio.get_running_loop()].epoll


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


async def test_a_wait_that_times_out_leaves_nothing_armed(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, _b = pair
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.05
    with pytest.raises(TimeoutError):
        await wait_ready(a, writable=False, deadline=deadline)
    assert loop.time() >= deadline  # never before the deadline
    # Still open, yet out of the set: left armed, a later event could wake whichever wait
    # next holds this fd number.
    assert a.fileno() not in registered(poller_epoll())
    assert not _pollers[loop].waiters


async def test_a_cancelled_wait_leaves_nothing_armed(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, _b = pair
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(wait_ready(a, writable=False, deadline=loop.time() + 30))
    await asyncio.sleep(0)  # the wait is now armed
    assert a.fileno() in registered(poller_epoll())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert a.fileno() not in registered(poller_epoll())
    assert not _pollers[loop].waiters


async def test_waits_on_one_socket_follow_each_other(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    loop = asyncio.get_running_loop()
    for round_ in range(3):
        # The wait is armed before the data is sent: the event, not a ready socket found
        # at once, is what ends it (a second wait re-arms the entry the first one left).
        waiting = asyncio.create_task(wait_ready(a, writable=False, deadline=loop.time() + 5))
        await asyncio.sleep(0)
        assert not waiting.done()
        b.send(b"x")
        await waiting
        assert a.recv(16) == b"x", round_
    # One entry stays, disarmed by EPOLLONESHOT, until the socket is closed.
    epoll = poller_epoll()
    assert a.fileno() in registered(epoll)
    a.close()
    assert not registered(epoll)


async def test_an_event_wakes_only_the_wait_on_its_own_socket() -> None:
    loop = asyncio.get_running_loop()
    (a1, b1), (a2, b2) = socket.socketpair(), socket.socketpair()
    try:
        for s in (a1, a2):
            s.setblocking(False)
        w1 = asyncio.create_task(wait_ready(a1, writable=False, deadline=loop.time() + 5))
        w2 = asyncio.create_task(wait_ready(a2, writable=False, deadline=loop.time() + 5))
        await asyncio.sleep(0)
        b2.send(b"x")
        await w2
        assert not w1.done()
        b1.send(b"y")
        await w1
    finally:
        for s in (a1, b1, a2, b2):
            s.close()


async def test_a_handshake_completing_later_is_waited_for() -> None:
    # The SYN is dropped (accept queue full), so connect() returns with the handshake still
    # on: the probe must wait for writability. Once the queue has room, the kernel's SYN
    # retransmission (after ~1 s) completes it and the probe is up.
    addr = fresh_loopback()
    with full_backlog(addr) as (listener, port):
        probe = asyncio.create_task(
            run_probe(TcpCheck(connect_timeout=5.0), ProbeTarget(addr, port))
        )
        for _ in range(500):  # bounded: 5 s at most
            if syn_sent_to(port):
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the probe's SYN_SENT socket never appeared")
        filler, _ = listener.accept()  # room in the accept queue again
        filler.close()
        result = await probe
    assert (result.ok, result.reason) == (True, "ok")
    assert result.duration >= 0.5  # it waited for the retransmission


def syn_sent_to(port: int) -> bool:
    with open("/proc/net/tcp") as fh:
        for line in fh.readlines()[1:]:
            fields = line.split()
            if int(fields[2].split(":")[1], 16) == port and fields[3] == TCP_SYN_SENT:
                return True
    return False


def test_the_epoll_fd_goes_with_its_loop() -> None:
    seen: list[select.epoll] = []

    async def one_wait() -> None:
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.send(b"x")
            await wait_ready(a, writable=False, deadline=asyncio.get_running_loop().time() + 5)
            seen.append(poller_epoll())

    asyncio.run(one_wait())
    asyncio.run(one_wait())
    first, second = seen
    assert first is not second  # one per loop
    gc.collect()
    assert first.closed and second.closed


def test_established_tells_a_finished_handshake_from_one_still_on() -> None:
    addr = fresh_loopback()
    with full_backlog(addr) as (_listener, port), socket.socket() as pending:
        pending.setblocking(False)
        assert pending.connect_ex((str(addr), port)) == errno.EINPROGRESS
        assert not _established(pending)  # SYN dropped: SYN_SENT
    with socket.socket() as refused:
        refused.setblocking(False)
        refused.connect_ex((str(addr), closed_tcp_port(addr)))
        assert not _established(refused)  # reset: never established
    with socket.socket() as server, socket.socket() as done:
        server.bind((str(addr), 0))
        server.listen(1)
        done.connect(server.getsockname())  # blocking: returns once established
        assert _established(done)
