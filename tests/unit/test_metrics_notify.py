"""The Prometheus export of notify scripts and notify FIFOs, read back as a scrape would."""

from __future__ import annotations

from hacontrol.metrics import Metrics
from hacontrol.notify_plan import FifoStats
from healthcheck.notify import NotifyStats


def test_notify_scripts_by_source_and_result() -> None:
    metrics = Metrics()
    vrrp, lvs = NotifyStats(), NotifyStats()
    metrics.watch_notify("vrrp", vrrp)
    metrics.watch_notify("lvs", lvs)
    value = metrics.registry.get_sample_value
    assert value("hacontrol_notify_scripts_total", {"source": "vrrp", "result": "timed_out"}) == 0
    vrrp.succeeded, vrrp.timed_out, vrrp.abandoned = 4, 1, 2
    lvs.exec_errors = 3
    assert value("hacontrol_notify_scripts_total", {"source": "vrrp", "result": "succeeded"}) == 4
    assert value("hacontrol_notify_scripts_total", {"source": "vrrp", "result": "timed_out"}) == 1
    assert value("hacontrol_notify_scripts_total", {"source": "vrrp", "result": "abandoned"}) == 2
    assert value("hacontrol_notify_scripts_total", {"source": "lvs", "result": "exec_errors"}) == 3


def test_notify_fifo_figures_by_reason_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    fifos = [FifoStats("/run/a.fifo")]
    metrics.watch_notify_fifos(lambda: fifos)
    value = metrics.registry.get_sample_value
    labels = {"fifo": "/run/a.fifo"}
    # Every reason is exported from the start, at 0, so alerts can use rate() at once.
    assert (
        value("hacontrol_notify_fifo_lines_dropped_total", {**labels, "reason": "buffer_full"}) == 0
    )
    assert value("hacontrol_notify_fifo_errors_total", {**labels, "reason": "no_reader"}) == 0
    fifos[0] = FifoStats(
        "/run/a.fifo",
        written=5,
        dropped={"buffer_full": 7},
        errors={"no_reader": 1, "reader_gone": 2},
        buffered=3,
        reader=True,
    )
    assert value("hacontrol_notify_fifo_lines_written_total", labels) == 5
    assert (
        value("hacontrol_notify_fifo_lines_dropped_total", {**labels, "reason": "buffer_full"}) == 7
    )
    assert value("hacontrol_notify_fifo_errors_total", {**labels, "reason": "reader_gone"}) == 2
    assert value("hacontrol_notify_fifo_buffered_lines", labels) == 3
    assert value("hacontrol_notify_fifo_open", labels) == 1
    fifos.clear()  # no FIFO configured (any more): nothing exported
    assert value("hacontrol_notify_fifo_open", labels) is None
