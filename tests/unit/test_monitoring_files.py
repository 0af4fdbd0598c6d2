"""The shipped monitoring files (monitoring/): the alerting rules pass promtool's checks
and their unit tests, every expression has the shape the real-Prometheus test relies on,
the Grafana dashboard is a dashboard Grafana 10/11 loads, and every metric the rules and
the dashboard name is one the daemon exports.

The expressions are evaluated against a running pair by a real Prometheus in
tests/netns/test_prometheus_monitoring.py (and the IPVS ones in the VM tier).
"""

from __future__ import annotations

import json
import re
import subprocess

from hacontrol.metrics import Metrics
from hacontrol.runtime.bus import Bus
from hacontrol.runtime.events import (
    IpvsAvailability,
    IpvsTableDumped,
    OverridesChanged,
    RealServerHealthKnown,
    ReconcileResult,
    ReloadResult,
)
from healthcheck.policy import QuorumChanged
from healthcheck.runner import RunnerStats
from tests.prometheus_util import (
    DASHBOARD,
    RULES,
    alert_rules,
    dashboard_exprs,
    dashboard_variable_queries,
    grafana_to_promql,
    healthy_form,
)
from tests.support import require_tool
from tests.unit.test_metrics import hand_made_snapshot, state_event
from vrrp.events import FaultsChanged, HoldChanged, InstanceCounters, VrrpCounters
from vrrp.types import State

REQUIRED_ALERTS = {
    "HacontrolVrrpMultipleMasters",
    "HacontrolVrrpNoMaster",
    "HacontrolVrrpInstanceFault",
    "HacontrolVrrpAdvertsMissed",
    "HacontrolQuorumLost",
    "HacontrolRealServerDown",
    "HacontrolChecksBehindSchedule",
    "HacontrolReconcileFailing",
    "HacontrolConfigReloadRejected",
    "HacontrolIpvsUnavailable",
}


def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    promtool = require_tool("promtool")
    check = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in check.stdout
    tests = RULES.parent / "tests" / "hacontrol.rules.test.yml"
    run = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr
    # Every alert has a test case that expects it to fire.
    tested = set(
        re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", tests.read_text())
    )
    assert tested == {r["alert"] for r in alert_rules()}


def test_the_rules_cover_what_an_operator_must_hear_of() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert {"summary", "description"} <= rule["annotations"].keys(), rule["alert"]
        # The real-Prometheus test evaluates the part before the final comparison.
        assert healthy_form(rule["expr"]) != rule["expr"].strip(), rule["alert"]


def test_the_dashboard_is_a_grafana_dashboard_with_datasource_and_director_variables() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["schemaVersion"] >= 36 and doc["uid"] and doc["title"]
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    director = variables["director"]
    assert director["type"] == "query" and director["includeAll"] and director["multi"]
    assert dashboard_variable_queries() == [
        ("director", "hacontrol_config_last_reload_successful", "instance")
    ]
    ids = set()
    for panel in doc["panels"]:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) and refs, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
    titles = " / ".join(p["title"] for p in doc["panels"])
    for wanted in (
        "VRRP state per director",
        "Failovers",
        "Adverts per second",
        "VRRP packets dropped by reason",
        "Real-server health",
        "Real-server weight in the kernel",
        "ActiveConn per virtual service",
        "InActConn per virtual service",
        "New connections per second per virtual service",
        "Check lateness",
        "Reconcile repairs",
    ):
        assert wanted in titles


def exported_sample_names() -> set[str]:
    """Every sample name a daemon exports once everything has happened at least once."""
    metrics = Metrics()
    metrics.watch_check_runner(RunnerStats())
    metrics.watch_bus(Bus())
    metrics.on_state_change(state_event("VI_1", State.MASTER))
    metrics.on_faults(FaultsChanged("VI_1", "eth0", ()))
    metrics.on_hold(HoldChanged("VI_1", False))
    metrics.vrrp_counters.update(
        VrrpCounters({"VI_1": InstanceCounters(1, 1, 1, 0, {"send_advert": 1})}, {("eth0", "x"): 1})
    )
    metrics.on_reconcile(ReconcileResult("ipvs_table", True, 1, 1, 0.1, 0.0))
    metrics.on_ipvs_availability(IpvsAvailability(True))
    metrics.on_ipvs_table(IpvsTableDumped(hand_made_snapshot(), 0.0))
    metrics.on_health_known(RealServerHealthKnown("web", "198.51.100.1", 80, True, 1, "ok"))
    metrics.on_quorum(QuorumChanged("web", True, 1, 1, "gained"))
    metrics.on_reload(ReloadResult("applied"))
    metrics.on_overrides(OverridesChanged(frozenset({("web", "198.51.100.1", 80)}), frozenset()))
    return {s.name for family in metrics.registry.collect() for s in family.samples}


def test_every_metric_the_rules_and_dashboard_name_is_exported() -> None:
    exported = exported_sample_names()
    exprs = [r["expr"] for r in alert_rules()] + [e for _, e in dashboard_exprs()]
    exprs += [selector for _, selector, _ in dashboard_variable_queries()]
    named = {n for e in exprs for n in re.findall(r"\b(?:hacontrol|node_ipvs)_\w+", e)}
    assert named - exported == set()
    for _, expr in dashboard_exprs():
        grafana_to_promql(expr)  # no variable the tests could not evaluate
