"""The check runner against real TCP servers on loopback, with the real TCP probe.

Uses healthcheck.probes.run_probe with TcpCheck (the hc helper's probe): a listening socket is
up, a closed port is down (RST: "refused"). No root needed: everything is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from ipaddress import ip_address
from typing import Any

import pytest

from healthcheck.config import TcpCheck
from healthcheck.probes import ProbeTarget, run_probe
from healthcheck.runner import CheckRunner, CheckSpec
from healthcheck.state import (
    CheckParams,
    HealthEvent,
    RealServerDown,
    RealServerId,
    RealServerUp,
    RealServerWeight,
)
from healthcheck.types import ProbeResult

pytestmark = pytest.mark.netns

LOOPBACK = ip_address("127.0.0.1")


async def _drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


@pytest.fixture
async def listener() -> AsyncIterator[asyncio.Server]:
    server = await asyncio.start_server(_drop, "127.0.0.1", 0)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def port_of(server: asyncio.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


def spec(**kwargs: Any) -> CheckSpec:
    alpha = kwargs.pop("alpha", False)
    check = TcpCheck(connect_timeout=1.0, **kwargs)
    return CheckSpec(CheckParams.from_check(check, alpha=alpha), check)


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


async def test_listening_is_up_and_closed_port_is_down(listener: asyncio.Server) -> None:
    events: list[HealthEvent] = []
    live = RealServerId("web", "127.0.0.1", port_of(listener))
    dead = RealServerId("web", "127.0.0.1", closed_port())
    async with CheckRunner(events.append, max_concurrency=8) as runner:
        for rs in (live, dead):
            runner.add_real_server(
                rs,
                ProbeTarget(LOOPBACK, rs.port),
                1,
                [spec(delay_loop=0.1, retry=0, warmup=False, alpha=True)],
            )
        await wait_for(lambda: any(isinstance(e, RealServerUp) for e in events))
        await wait_for(lambda: runner.stats.results >= 8)
        live_h, dead_h = runner.health(live), runner.health(dead)
    assert live_h is not None and dead_h is not None
    assert live_h.up is True and dead_h.up is False
    assert dead_h.checks[0].last_reason == "refused"
    assert events == [RealServerUp(live, 1, "tcp:ok")]
    assert runner.stats.crashes == 0 and runner.stats.guard_timeouts == 0


async def test_server_that_stops_listening_goes_down_after_retries_and_fall() -> None:
    server = await asyncio.start_server(_drop, "127.0.0.1", 0)
    rs = RealServerId("web", "127.0.0.1", port_of(server))
    events: list[HealthEvent] = []
    failures_seen: list[str] = []
    failures_at_event: list[int] = []

    def on_event(event: HealthEvent) -> None:
        events.append(event)
        failures_at_event.append(len(failures_seen))

    async def counting_probe(check: TcpCheck, target: ProbeTarget) -> ProbeResult:
        result = await run_probe(check, target)
        if not result.ok:
            failures_seen.append(result.reason)
        return result

    fall, retry = 3, 1
    try:
        async with CheckRunner(on_event, probe=counting_probe) as runner:
            runner.add_real_server(
                rs,
                ProbeTarget(LOOPBACK, rs.port),
                1,
                [
                    spec(
                        delay_loop=0.1,
                        retry=retry,
                        delay_before_retry=0.05,
                        fall=fall,
                        warmup=False,
                    )
                ],
            )
            await wait_for(lambda: runner.stats.results >= 3)
            assert events == [] and failures_seen == []  # up from the start, no alpha
            server.close()
            await server.wait_closed()
            await wait_for(lambda: bool(events))
            # Each counted failure is the original attempt plus its retries.
            assert failures_at_event == [fall * (retry + 1)]
            assert set(failures_seen) == {"refused"}
            assert events == [RealServerDown(rs, "tcp:refused")]
    finally:
        server.close()


async def test_a_crashing_probe_is_counted_restarted_and_marks_nothing_down(
    listener: asyncio.Server,
) -> None:
    events: list[HealthEvent] = []
    calls = 0

    async def buggy_probe(check: TcpCheck, target: ProbeTarget) -> ProbeResult:
        nonlocal calls
        calls += 1
        if calls % 2:
            raise RuntimeError("a bug in a probe")
        return await run_probe(check, target)

    rs = RealServerId("web", "127.0.0.1", port_of(listener))
    async with CheckRunner(events.append, probe=buggy_probe) as runner:
        runner.add_real_server(
            rs, ProbeTarget(LOOPBACK, rs.port), 1, [spec(delay_loop=0.05, retry=0, warmup=False)]
        )
        await wait_for(lambda: runner.stats.crashes >= 3 and runner.stats.results >= 3)
        health = runner.health(rs)
    assert health is not None and health.up
    assert events == []


async def test_hanging_probe_is_cut_by_the_guard() -> None:
    events: list[HealthEvent] = []

    async def hanging_probe(check: object, target: object) -> ProbeResult:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    rs = RealServerId("web", "127.0.0.1", 9)
    params = CheckParams(delay_loop=0.05, retry=0, warmup=0.0, timeout=0.05)
    async with CheckRunner(events.append, probe=hanging_probe, guard_margin=0.05) as runner:
        runner.add_real_server(rs, None, 1, [CheckSpec(params, None)])
        await wait_for(lambda: bool(events), timeout=5)
    assert events == [RealServerDown(rs, "check:guard_timeout")]
    assert runner.stats.guard_timeouts >= 1


async def test_concurrency_is_bounded_and_lateness_measured() -> None:
    in_flight = peak = 0

    async def slow_probe(check: object, target: object) -> ProbeResult:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return ProbeResult(True, "ok", 0.05)

    params = CheckParams(delay_loop=0.2, retry=0, warmup=0.0)
    async with CheckRunner(lambda e: None, probe=slow_probe, max_concurrency=4) as runner:
        for i in range(20):
            runner.add_real_server(
                RealServerId("web", "127.0.0.1", 1000 + i), None, 1, [CheckSpec(params, None)]
            )
        await wait_for(lambda: runner.stats.results >= 40)
    assert peak == 4
    # 20 due at once through 4 slots of 50 ms: the last ones start ~200 ms late.
    assert runner.stats.lateness.worst >= 0.15
    assert runner.stats.lateness.total >= 40


async def test_removed_server_is_no_longer_checked(listener: asyncio.Server) -> None:
    events: list[HealthEvent] = []
    rs = RealServerId("web", "127.0.0.1", port_of(listener))
    async with CheckRunner(events.append) as runner:
        runner.add_real_server(
            rs, ProbeTarget(LOOPBACK, rs.port), 1, [spec(delay_loop=0.05, retry=0, warmup=False)]
        )
        await wait_for(lambda: runner.stats.results >= 2)
        runner.remove_real_server(rs)
        await asyncio.sleep(0.02)  # let an attempt in flight finish
        attempts = runner.stats.attempts
        await asyncio.sleep(0.2)
        assert runner.stats.attempts == attempts
        assert runner.health(rs) is None and len(runner) == 0


async def test_runner_survives_its_own_clock_failing(listener: asyncio.Server) -> None:
    # The injected clock raises now and then: wherever that lands (the dispatcher, its
    # recovery, or the reducer's feed), it is counted, and checking goes on.
    loop = asyncio.get_running_loop()
    calls = 0

    def flaky_clock() -> float:
        nonlocal calls
        calls += 1
        if calls % 7 == 0:
            raise RuntimeError("clock bug")
        return loop.time()

    events: list[HealthEvent] = []
    rs = RealServerId("web", "127.0.0.1", port_of(listener))
    runner = CheckRunner(events.append, clock=flaky_clock)
    runner.add_real_server(
        rs,
        ProbeTarget(LOOPBACK, rs.port),
        1,
        [spec(delay_loop=0.02, retry=0, warmup=False, alpha=True)],
        now=loop.time(),
    )
    async with runner:
        await wait_for(lambda: runner.stats.results >= 10 and runner.stats.dispatcher_restarts >= 2)
        health = runner.health(rs)
    assert health is not None and health.up
    assert events == [RealServerUp(rs, 1, "tcp:ok")]


async def test_reload_keeps_the_state_of_unchanged_checks(listener: asyncio.Server) -> None:
    events: list[HealthEvent] = []
    rs = RealServerId("web", "127.0.0.1", port_of(listener))
    target = ProbeTarget(LOOPBACK, rs.port)
    same = spec(delay_loop=0.05, retry=0, warmup=False, alpha=True)
    async with CheckRunner(events.append) as runner:
        runner.add_real_server(rs, target, 1, [same])
        await wait_for(lambda: bool(events))
        assert events == [RealServerUp(rs, 1, "tcp:ok")]
        kept = runner.update_real_server(rs, target, 3, [same])
        assert kept.up and kept.checks[0].has_run  # no new alpha period
        assert events[1:] == [RealServerWeight(rs, 1, 3, "reload")]
        # A changed check starts afresh: alpha puts the server down until it passes again.
        changed = spec(delay_loop=0.06, retry=0, warmup=False, alpha=True)
        fresh = runner.update_real_server(rs, target, 3, [changed])
        assert not fresh.up and not fresh.checks[0].has_run
        assert events[2:] == [RealServerDown(rs, "reload")]
        await wait_for(lambda: len(events) >= 4)
        assert events[3:] == [RealServerUp(rs, 3, "tcp:ok")]


async def test_restart_after_stop_picks_every_check_up_again() -> None:
    # Stopped with attempts in flight and others waiting for a free worker: none of them is
    # on the heap any more, and a later start() must still check every server.
    probed: list[int] = []

    async def slow_probe(check: object, target: int) -> ProbeResult:
        await asyncio.sleep(0.05)
        probed.append(target)
        return ProbeResult(True, "ok", 0.05)

    params = CheckParams(delay_loop=0.05, retry=0, warmup=0.0)
    runner = CheckRunner(lambda e: None, probe=slow_probe, max_concurrency=2)
    for i in range(6):
        runner.add_real_server(
            RealServerId("web", "127.0.0.1", 1000 + i), i, 1, [CheckSpec(params, None)]
        )
    async with runner:
        await asyncio.sleep(0.02)  # two in flight, four waiting
        assert runner.stats.in_flight == 2
    assert probed == [] and runner.stats.in_flight == 0
    async with runner:
        await wait_for(lambda: set(probed) == set(range(6)), timeout=5)
    assert runner.stats.crashes == 0


async def test_probes_that_never_suspend_do_not_starve_the_loop() -> None:
    # A file check completes without ever suspending; a worker draining a long queue of
    # them must still let the rest of the daemon run now and then.
    async def instant_probe(check: object, target: object) -> ProbeResult:
        return ProbeResult(True, "ok", 0.0)

    seen_by_ticker: list[int] = []
    params = CheckParams(delay_loop=60.0, retry=0, warmup=0.0)
    runner = CheckRunner(lambda e: None, probe=instant_probe, max_concurrency=1)
    for i in range(600):
        runner.add_real_server(
            RealServerId("web", "127.0.0.1", i), None, 1, [CheckSpec(params, None)]
        )

    async def ticker() -> None:
        for _ in range(10_000):
            seen_by_ticker.append(runner.stats.results)
            await asyncio.sleep(0)

    async with runner:
        tick = asyncio.create_task(ticker())
        await wait_for(lambda: runner.stats.results >= 600)
        tick.cancel()
    assert any(0 < n < 600 for n in seen_by_ticker)  # the loop ran during the burst
    assert runner.stats.lateness.total == 600


async def test_guard_cut_of_a_probe_that_swallows_it_leaves_the_worker_usable() -> None:
    # The first attempt swallows the guard's cancellation and returns late; the worker must
    # come out of it uncancelled and the guard must still cut the next hung attempt.
    calls = 0

    async def stubborn_probe(check: object, target: object) -> ProbeResult:
        nonlocal calls
        calls += 1
        if calls == 1:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                return ProbeResult(True, "ok", 0.1)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    events: list[HealthEvent] = []
    rs = RealServerId("web", "127.0.0.1", 9)
    params = CheckParams(delay_loop=0.05, retry=0, warmup=0.0, timeout=0.05)
    runner = CheckRunner(
        events.append,
        probe=stubborn_probe,
        max_concurrency=1,
        guard_margin=0.05,
        guard_interval=0.05,
    )
    async with runner:
        runner.add_real_server(rs, None, 1, [CheckSpec(params, None)])
        await wait_for(lambda: bool(events), timeout=5)
        assert runner.stats.results >= 2  # the swallowed one fed as the probe said
    assert events == [RealServerDown(rs, "check:guard_timeout")]
    assert runner.stats.guard_timeouts >= 1 and runner.stats.crashes == 0


async def test_stop_while_a_guard_cut_probe_cleans_up_does_not_hang() -> None:
    # stop() cancels a worker whose probe the guard already cancelled: the guard must not
    # swallow stop's cancellation and keep the worker alive.
    cleaning = asyncio.Event()

    async def slow_cleanup_probe(check: object, target: object) -> ProbeResult:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cleaning.set()
            await asyncio.sleep(0.2)  # the guard's cut arrives; cleaning up takes a while
            raise
        raise AssertionError("unreachable")

    params = CheckParams(delay_loop=1.0, retry=0, warmup=0.0, timeout=0.02)
    runner = CheckRunner(
        lambda e: None, probe=slow_cleanup_probe, guard_margin=0.02, guard_interval=0.02
    )
    runner.add_real_server(RealServerId("web", "127.0.0.1", 9), None, 1, [CheckSpec(params, None)])
    await runner.start()
    try:
        await asyncio.wait_for(cleaning.wait(), timeout=5)
    finally:
        await asyncio.wait_for(runner.stop(), timeout=5)
    assert runner.stats.in_flight == 0 and runner.stats.guard_timeouts == 0


class _NotAnException(BaseException):
    """Escapes `except Exception`: kills the worker that runs the probe."""


async def test_a_worker_killed_by_a_base_exception_is_replaced_and_checking_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def killing_probe(check: object, target: object) -> ProbeResult:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise _NotAnException
        return ProbeResult(True, "ok", 0.0)

    params = CheckParams(delay_loop=0.02, retry=0, warmup=0.0)
    rs = RealServerId("web", "127.0.0.1", 9)
    async with CheckRunner(lambda e: None, probe=killing_probe) as runner:
        runner.add_real_server(rs, None, 1, [CheckSpec(params, None)])
        await wait_for(lambda: runner.stats.results >= 5)
    assert runner.stats.crashes == 1
    assert "healthcheck.worker_died" in caplog.text


async def test_dispatches_are_bounded_by_the_quantum() -> None:
    # 5,000 attempts a second spread evenly: without the quantum the dispatcher would run
    # for nearly every one of them.
    async def instant_probe(check: object, target: object) -> ProbeResult:
        return ProbeResult(True, "ok", 0.0)

    params = CheckParams(delay_loop=0.1, retry=0)  # first attempts spread over 0.1 s
    runner = CheckRunner(lambda e: None, probe=instant_probe)
    runner.dispatch_quantum = 0.01
    dispatches = 0
    dispatch = runner._dispatch

    def counting_dispatch() -> None:
        nonlocal dispatches
        dispatches += 1
        dispatch()

    runner._dispatch = counting_dispatch  # type: ignore[method-assign]
    for i in range(500):
        runner.add_real_server(
            RealServerId("web", "127.0.0.1", i), None, 1, [CheckSpec(params, None)]
        )
    loop = asyncio.get_running_loop()
    async with runner:
        t0 = loop.time()
        await wait_for(lambda: runner.stats.results >= 1500)
        elapsed = loop.time() - t0
    assert dispatches <= elapsed / 0.01 + 5
    assert runner.stats.lateness.worst < 5.0  # sanity: nothing was starved


async def test_suspend_stops_probing_and_keeps_the_state_resume_probes_again() -> None:
    """keepalived's ha_suspend: a backup's checks stop, its servers keep their state."""
    connects = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connects
        connects += 1
        writer.close()

    server = await asyncio.start_server(count, "127.0.0.1", 0)
    try:
        rid = RealServerId("web", "127.0.0.1", port_of(server))
        events: list[HealthEvent] = []
        async with CheckRunner(events.append, max_concurrency=4) as runner:
            runner.add_real_server(
                rid,
                ProbeTarget(LOOPBACK, rid.port),
                1,
                [spec(delay_loop=0.05, warmup=False, alpha=True)],
            )
            await wait_for(lambda: any(isinstance(e, RealServerUp) for e in events))
            assert runner.suspend(rid) is True
            assert runner.suspend(rid) is False  # already suspended
            assert runner.suspended(rid)
            await asyncio.sleep(0)  # an attempt in flight at suspension may still connect
            before = connects
            await asyncio.sleep(0.5)  # ten delay_loops
            assert connects <= before + 1
            health = runner.health(rid)
            assert health is not None and health.up  # the state is kept
            assert runner.resume(rid) is True
            assert not runner.suspended(rid)
            resumed = connects
            await wait_for(lambda: connects >= resumed + 3)
    finally:
        server.close()
        await server.wait_closed()
