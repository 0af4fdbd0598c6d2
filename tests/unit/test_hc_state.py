"""The rise/fall reducer: keepalived's retry / alpha / omega semantics plus rise and fall."""

from __future__ import annotations

import pytest

from healthcheck.state import (
    CheckParams,
    RealServerDown,
    RealServerHealth,
    RealServerId,
    RealServerUp,
    RealServerWeight,
    apply_result,
    check_result,
    initial_check_state,
    initial_health,
    reconfigure,
    shutdown_events,
)
from healthcheck.types import ProbeResult

OK = ProbeResult(True, "ok", 0.001)
REFUSED = ProbeResult(False, "refused", 0.001)
RS = RealServerId("web", "192.0.2.10", 80)


def ok_with(weight: int | None) -> ProbeResult:
    return ProbeResult(True, "ok", 0.001, weight)


def test_defaults_are_keepalived() -> None:
    p = CheckParams()
    assert (p.delay_loop, p.retry, p.delay_before_retry, p.rise, p.fall, p.alpha) == (
        60.0,
        1,
        1.0,
        1,
        1,
        False,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"delay_loop": 0},
        {"retry": -1},
        {"delay_before_retry": -0.1},
        {"rise": 0},
        {"fall": 0},
        {"warmup": -1.0},
    ],
)
def test_invalid_params_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CheckParams(**kwargs)  # type: ignore[arg-type]


def test_without_alpha_starts_up_and_with_alpha_down() -> None:
    assert initial_check_state(CheckParams(), 3.0).up is True
    s = initial_check_state(CheckParams(alpha=True), 3.0)
    assert s.up is False
    assert s.next_due == 3.0


def test_retry_then_down_with_delay_before_retry() -> None:
    p = CheckParams(delay_loop=5.0, retry=2, delay_before_retry=0.5)
    s = initial_check_state(p, 0.0)
    s = check_result(p, s, REFUSED, 0.0)
    assert (s.up, s.retry_it, s.next_due) == (True, 1, 0.5)
    s = check_result(p, s, REFUSED, 0.5)
    assert (s.up, s.retry_it, s.next_due) == (True, 2, 1.0)
    s = check_result(p, s, REFUSED, 1.0)  # retries spent: the failure counts, fall=1
    assert (s.up, s.retry_it, s.next_due) == (False, 0, 6.0)
    assert s.last_reason == "refused"


def test_success_during_retries_resets_them() -> None:
    p = CheckParams(delay_loop=5.0, retry=1, delay_before_retry=0.5)
    s = initial_check_state(p, 0.0)
    s = check_result(p, s, REFUSED, 0.0)
    s = check_result(p, s, OK, 0.5)
    assert (s.up, s.retry_it, s.next_due) == (True, 0, 5.5)
    s = check_result(p, s, REFUSED, 5.5)  # a fresh failure gets its retry again
    assert (s.up, s.retry_it, s.next_due) == (True, 1, 6.0)


def test_down_check_is_not_retried() -> None:
    # keepalived retries only "if check of an alive server fails".
    p = CheckParams(delay_loop=5.0, retry=3, delay_before_retry=0.5)
    s = initial_check_state(p, 0.0)
    for t in (0.0, 0.5, 1.0, 1.5):
        s = check_result(p, s, REFUSED, t)
    assert s.up is False
    s = check_result(p, s, REFUSED, 6.5)
    assert (s.up, s.retry_it, s.next_due) == (False, 0, 11.5)


def test_alpha_first_run_is_retried_then_first_success_brings_it_up() -> None:
    # A check that has never run is retried even though alpha starts it down (keepalived's
    # "checker->is_up || !checker->has_run").
    p = CheckParams(delay_loop=2.0, retry=1, delay_before_retry=0.25, alpha=True)
    s = initial_check_state(p, 0.0)
    s = check_result(p, s, REFUSED, 0.0)
    assert (s.up, s.retry_it, s.next_due) == (False, 1, 0.25)
    s = check_result(p, s, REFUSED, 0.25)
    assert (s.up, s.next_due) == (False, 2.25)
    s = check_result(p, s, REFUSED, 2.25)  # has run and down: no retry any more
    assert s.next_due == 4.25
    s = check_result(p, s, OK, 4.25)
    assert s.up is True


def test_flapping_server_with_rise_and_fall() -> None:
    p = CheckParams(delay_loop=1.0, retry=0, rise=2, fall=3)
    s = initial_check_state(p, 0.0)
    pattern = [REFUSED, REFUSED, OK, REFUSED, REFUSED, REFUSED, OK, REFUSED, OK, OK, REFUSED]
    ups = []
    for t, result in enumerate(pattern):
        s = check_result(p, s, result, float(t))
        ups.append(s.up)
    #          F     F     S     F     F     F      S      F      S      S     F
    assert ups == [True, True, True, True, True, False, False, False, False, True, True]
    assert s.failures == 1


def test_real_server_up_only_when_all_checks_up_and_events_come_once() -> None:
    pa = CheckParams(delay_loop=1.0, retry=0, alpha=True, name="tcp")
    pb = CheckParams(delay_loop=1.0, retry=0, alpha=True, name="http")
    h = initial_health(RS, 10, [pa, pb], [0.0, 0.5])
    assert h.up is False

    h, ev = apply_result(h, 0, pa, OK, 0.0)
    assert ev == () and h.up is False
    h, ev = apply_result(h, 1, pb, OK, 0.5)
    assert ev == (RealServerUp(RS, 10, "http:ok"),)
    h, ev = apply_result(h, 0, pa, OK, 1.0)
    assert ev == ()
    h, ev = apply_result(h, 1, pb, ProbeResult(False, "status_500", 0.01), 1.5)
    assert ev == (RealServerDown(RS, "http:status_500"),)
    h, ev = apply_result(h, 0, pa, REFUSED, 2.0)  # already down: no second event
    assert ev == () and h.up is False
    h, ev = apply_result(h, 1, pb, OK, 2.5)
    assert ev == () and h.up is False  # tcp still down
    h, ev = apply_result(h, 0, pa, OK, 3.0)
    assert ev == (RealServerUp(RS, 10, "tcp:ok"),)


def test_no_checks_means_alive() -> None:
    h = initial_health(RS, 3, [], [])
    assert (h.up, h.weight, h.dynamic_weight) == (True, 3, None)


def test_dynamic_weights_take_the_minimum_and_none_means_configured() -> None:
    ps = CheckParams(delay_loop=1.0, retry=0, name="script")
    pf = CheckParams(delay_loop=1.0, retry=0, name="file")
    h = initial_health(RS, 100, [ps, pf], [0.0, 0.0])
    assert h.weight == 100

    h, ev = apply_result(h, 0, ps, ok_with(40), 0.0)
    assert ev == (RealServerWeight(RS, 100, 40, "script:dynamic"),)
    h, ev = apply_result(h, 1, pf, ok_with(70), 0.1)
    assert ev == () and h.weight == 40 and h.dynamic_weight == 40
    h, ev = apply_result(h, 1, pf, ok_with(5), 1.1)
    assert ev == (RealServerWeight(RS, 40, 5, "file:dynamic"),)
    # A failure keeps the last reported weight (keepalived updates weights on success only).
    h, ev = apply_result(h, 1, pf, ProbeResult(False, "missing", 0.0), 2.1)
    assert isinstance(ev[0], RealServerDown) and h.checks[1].weight == 5
    # Success with no weight: back to the configured weight for that check.
    h, ev = apply_result(h, 1, pf, OK, 3.1)
    assert ev == (RealServerUp(RS, 40, "file:ok"),)
    h, ev = apply_result(h, 0, ps, OK, 4.0)
    assert ev == (RealServerWeight(RS, 40, 100, "script:dynamic"),)
    assert h.dynamic_weight is None


def test_omega_shutdown_reports_alive_servers_down() -> None:
    up = initial_health(RS, 1, [CheckParams()], [0.0])
    down = initial_health(RS, 1, [CheckParams(alpha=True)], [0.0])
    assert shutdown_events(up, omega=True) == (RealServerDown(RS, "shutdown"),)
    assert shutdown_events(up, omega=False) == ()
    assert shutdown_events(down, omega=True) == ()


def test_params_from_the_check_models() -> None:
    config = pytest.importorskip("healthcheck.config")
    tcp = config.TcpCheck(delay_loop=2.0, retry=3, delay_before_retry=0.5, fall=2)
    p = CheckParams.from_check(tcp, alpha=True)
    assert (p.delay_loop, p.retry, p.delay_before_retry, p.rise, p.fall) == (2.0, 3, 0.5, 1, 2)
    assert (p.alpha, p.warmup, p.timeout, p.name) == (True, None, 5.0, "tcp")
    p = CheckParams.from_check(config.TcpCheck(warmup=False, connect_timeout=1.5))
    assert (p.warmup, p.timeout, p.alpha) == (0.0, 1.5, False)


def test_health_is_a_frozen_value() -> None:
    h = initial_health(RS, 1, [CheckParams()], [0.0])
    assert isinstance(h, RealServerHealth)
    with pytest.raises(AttributeError):
        h.up = False  # type: ignore[misc]


def test_reconfigure_keeps_or_resets_and_reports_the_change() -> None:
    p = CheckParams(delay_loop=1.0, retry=0)
    alpha = CheckParams(delay_loop=1.0, retry=0, alpha=True)
    h = initial_health(RS, 1, [p], [0.0])
    h, _ = apply_result(h, 0, p, OK, 0.0)
    # Same check, new weight: state kept, the weight change reported.
    h2, ev = reconfigure(h, 4, h.checks)
    assert ev == (RealServerWeight(RS, 1, 4, "reload"),)
    assert h2.checks == h.checks and h2.up
    # A new alpha check joins: the server is down until it passes.
    h3, ev = reconfigure(h2, 4, [*h2.checks, initial_check_state(alpha, 0.5)])
    assert ev == (RealServerDown(RS, "reload"),) and not h3.up
    h4, ev = reconfigure(h3, 4, h2.checks)
    assert ev == (RealServerUp(RS, 4, "reload"),) and h4.up


def test_steady_state_keeps_the_verdict_and_only_moves_the_schedule() -> None:
    # The reducer's fast path (nothing the verdict reads changed): the other check's state,
    # the verdict and the weight stay exactly as they were, and no event comes out.
    pa = CheckParams(delay_loop=2.0, retry=0, name="tcp")
    pb = CheckParams(delay_loop=3.0, retry=0, name="file")
    h = initial_health(RS, 7, [pa, pb], [0.0, 0.0])
    h, ev = apply_result(h, 1, pb, ok_with(4), 0.0)
    assert ev == (RealServerWeight(RS, 7, 4, "file:dynamic"),)
    before = h
    h, ev = apply_result(h, 1, pb, ok_with(4), 3.0)
    assert ev == ()
    assert (h.up, h.weight, h.configured_weight, h.server) == (True, 4, 7, RS)
    assert h.checks[0] is before.checks[0]
    assert (h.checks[1].next_due, h.checks[1].weight, h.checks[1].has_run) == (6.0, 4, True)
    # Down stays down the same way: no event, and the failure reason is kept.
    h, ev = apply_result(h, 0, pa, REFUSED, 4.0)
    assert ev == (RealServerDown(RS, "tcp:refused"),)
    h, ev = apply_result(h, 0, pa, ProbeResult(False, "timeout", 1.0), 6.0)
    assert ev == () and not h.up
    assert (h.checks[0].last_reason, h.checks[0].next_due) == ("timeout", 8.0)
