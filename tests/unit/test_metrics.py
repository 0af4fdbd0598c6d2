"""The Prometheus export of the check runner's figures, read back as a scrape would."""

from __future__ import annotations

from prometheus_client import generate_latest

from hacontrol.metrics import Metrics
from healthcheck.runner import RunnerStats


def test_check_runner_figures_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    stats = RunnerStats()
    metrics.watch_check_runner(stats)
    value = metrics.registry.get_sample_value
    assert value("hacontrol_check_attempts_total") == 0.0
    assert value("hacontrol_check_lateness_seconds_count") == 0.0

    # The runner counts after registration; the next scrape sees it.
    stats.attempts, stats.results, stats.crashes = 7, 6, 1
    stats.guard_timeouts, stats.callback_errors, stats.dispatcher_restarts = 2, 3, 4
    stats.in_flight = 5
    late = (0.0004, 0.003, 0.049, 0.050, 0.7, 12.0)
    stats.lateness.record(0.0)
    for seconds in late:
        stats.lateness.record(seconds)

    assert value("hacontrol_check_attempts_total") == 7
    assert value("hacontrol_check_results_total") == 6
    assert value("hacontrol_check_crashes_total") == 1
    assert value("hacontrol_check_guard_timeouts_total") == 2
    assert value("hacontrol_check_callback_errors_total") == 3
    assert value("hacontrol_check_dispatcher_restarts_total") == 4
    assert value("hacontrol_check_in_flight") == 5

    def bucket(le: str) -> float | None:
        return value("hacontrol_check_lateness_seconds_bucket", {"le": le})

    # Cumulative, upper edges exclusive as the 1 ms buckets are: 0.050 is not within 50 ms.
    assert bucket("0.001") == 2
    assert bucket("0.005") == 3
    assert bucket("0.05") == 4
    assert bucket("0.1") == 5
    assert bucket("1.0") == 6
    assert bucket("10.0") == 6  # 12 s is past the runner's last bucket
    assert bucket("+Inf") == 7
    assert value("hacontrol_check_lateness_seconds_count") == 7
    assert value("hacontrol_check_lateness_seconds_sum") == sum(late)


def test_check_runner_figures_render_in_the_text_format() -> None:
    metrics = Metrics()
    metrics.watch_check_runner(RunnerStats())
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE hacontrol_check_crashes_total counter" in text
    assert "# TYPE hacontrol_check_lateness_seconds histogram" in text
    assert 'hacontrol_check_lateness_seconds_bucket{le="+Inf"} 0.0' in text
