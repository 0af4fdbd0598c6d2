"""Debian's real Prometheus for tests: started as a process inside a network namespace
the test made, listening on that namespace's loopback only, asked over its HTTP API
(/api/v1/query, /api/v1/alerts) through a socket opened inside that namespace.

Also what the tests read from the shipped monitoring files: every PromQL expression of
the alerting rules (and its healthy form, the part before the final comparison) and of
the Grafana dashboard (with Grafana's variables replaced), and a copy of the rules with
short `for:` durations and rate windows for a test that makes alerts fire in seconds.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "monitoring" / "hacontrol.rules.yml"
DASHBOARD = ROOT / "monitoring" / "grafana-dashboard.json"
PORT = 9090

# Grafana's variables as the tests evaluate them: every director, a rate window of a few
# scrapes (the test Prometheus scrapes every second).
GRAFANA_VARIABLES = {"$director": ".*", "$__rate_interval": "15s"}

# Figures that exist only where the kernel has IPVS: the kernel tier (VM) evaluates the
# expressions that use them; the host's kernel has no IPVS.
IPVS_TABLE_METRICS = (
    "node_ipvs_",
    "hacontrol_ipvs_service_",
    "hacontrol_ipvs_backend_",
    "hacontrol_ipvs_snapshot_",
)

_COMPARISON = re.compile(
    r"^(?P<signal>.*\S)\s*(==|!=|>=|<=|>|<)\s*(?P<threshold>[0-9.]+)\s*$", re.S
)


def needs_ipvs_table(expr: str) -> bool:
    return any(name in expr for name in IPVS_TABLE_METRICS)


def alert_rules(path: Path = RULES) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def healthy_form(expr: str) -> str:
    """`SIGNAL CMP NUMBER` -> SIGNAL: what the alert compares, which has a value whether or
    not the alert's condition holds (the rules file promises every rule has this shape)."""
    match = _COMPARISON.match(expr.strip())
    if match is None:
        raise ValueError(f"not SIGNAL COMPARISON THRESHOLD: {expr!r}")
    return match.group("signal")


def dashboard_exprs(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, expr) of every query of every panel, rows' panels included."""
    doc = json.loads(path.read_text())
    out: list[tuple[str, str]] = []

    def walk(panels: Sequence[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", ()):
                out.append((panel["title"], target["expr"]))
            walk(panel.get("panels", ()))

    walk(doc["panels"])
    return out


def dashboard_variable_queries(path: Path = DASHBOARD) -> list[tuple[str, str, str]]:
    """(variable, metric selector, label) of every `label_values(SELECTOR, LABEL)` query."""
    doc = json.loads(path.read_text())
    out = []
    for var in doc["templating"]["list"]:
        if var["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["definition"])
        assert match is not None, var["definition"]
        out.append((var["name"], match.group(1), match.group(2)))
    return out


def grafana_to_promql(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a Grafana variable the tests do not know in {expr!r}"
    return expr


def fast_rules(src: Path, dst: Path, *, hold: str = "2s", window: str = "20s") -> None:
    """A copy of the rules whose alerts fire within seconds: every `for:` becomes `hold`
    and every range selector of minutes `window`; the expressions are otherwise those
    shipped."""
    doc = yaml.safe_load(src.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = hold
            rule["expr"] = re.sub(r"\[\d+m\]", f"[{window}]", rule["expr"])
    dst.write_text(yaml.safe_dump(doc, sort_keys=False))


class Prometheus:
    """One Prometheus server in a namespace (argv prefix `netns_argv`), stopped by pid."""

    def __init__(
        self,
        workdir: Path,
        *,
        targets: Sequence[str],
        rule_files: Sequence[Path] = (),
        labels: dict[str, str] | None = None,
        netns_argv: Sequence[str] = (),
        connect: Callable[[], socket.socket],
        binary: str = "prometheus",
    ) -> None:
        self.workdir = workdir
        self.connect = connect
        self.log_path = workdir / "prometheus.log"
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {
                    "job_name": "hacontrol",
                    "static_configs": [{"targets": list(targets), "labels": labels or {}}],
                }
            ],
        }
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.argv = [
            *netns_argv,
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{PORT}",
            "--log.level=warn",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    # ---- HTTP API ------------------------------------------------------------------------

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        sock = self.connect()
        sock.settimeout(timeout)
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
        conn.sock = sock  # already connected, inside the namespace
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = self.get(f"/api/v1/{path}{query}")
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise AssertionError(f"/api/v1/{path}{query}: HTTP {status}: {body[:500]!r}")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to now (a PromQL error fails the test)."""
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return found

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.get("/-/ready", timeout=2.0)[0] == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus not ready after {timeout}s:\n{self.log()}")
            time.sleep(0.2)

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.25)

    def wait_data(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """`expr` until it returns at least one series."""
        result: list[dict[str, Any]] = self.wait_for(
            f"data from {expr!r}", lambda: self.query(expr), timeout
        )
        return result

    def firing(self, alertname: str, **labels: str) -> list[dict[str, Any]]:
        return [
            a
            for a in self.alerts()
            if a["labels"].get("alertname") == alertname
            and a["state"] == "firing"
            and all(a["labels"].get(k) == v for k, v in labels.items())
        ]

    def wait_firing(
        self, alertname: str, timeout: float = 60.0, explain: str = "", **labels: str
    ) -> dict[str, Any]:
        """Until `alertname` (with `labels`) fires; the failure shows the alert's state and
        what `explain` (an expression) evaluates to."""
        try:
            found: list[dict[str, Any]] = self.wait_for(
                f"{alertname} {labels} firing", lambda: self.firing(alertname, **labels), timeout
            )
        except AssertionError as exc:
            seen = [a for a in self.alerts() if a["labels"].get("alertname") == alertname]
            detail = self.query(explain) if explain else None
            raise AssertionError(f"{exc}; alerts: {seen}; {explain}: {detail}") from None
        return found[0]


def series_labels(result: list[dict[str, Any]]) -> Iterator[dict[str, str]]:
    for series in result:
        yield series["metric"]
