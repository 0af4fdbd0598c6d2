"""The configuration reference in doc/ is what the config models generate (it cannot drift)."""

from __future__ import annotations

from hacontrol.reference import DOC_DIR, generated, sections


def test_the_committed_reference_is_current() -> None:
    for name, text in generated().items():
        committed = (DOC_DIR / name).read_text()
        assert committed == text, f"doc/{name} is stale: run python -m hacontrol.reference --write"


def test_every_key_of_every_model_is_listed_once_per_place() -> None:
    by_path = {s.path: [k.name for k in s.keys] for s in sections()}
    assert {"global", "vrrp_instances", "virtual_servers", "ipvs"} <= set(by_path["(top level)"])
    assert "virtual_ipaddresses" in by_path["vrrp_instances[]"]
    assert "real_servers" in by_path["virtual_servers[]"]
    checks = [s for s in sections() if s.path == "virtual_servers[].real_servers[].checks[]"]
    assert {s.title.rsplit("type: ", 1)[-1].rstrip(")") for s in checks} >= {
        "tcp",
        "http",
        "https",
        "script",
        "udp",
        "dns",
        "smtp",
        "icmp",
        "file",
    }
    for names in by_path.values():
        assert len(names) == len(set(names))


def test_facts_come_from_the_models() -> None:
    keys = {k.name: k for s in sections() if s.path == "vrrp_instances[]" for k in s.keys}
    assert keys["priority"].default == "100"
    assert keys["priority"].allowed == ">= 1; <= 255"
    assert keys["vrid"].keepalived == "virtual_router_id"
    assert keys["virtual_ipaddresses"].keepalived == "virtual_ipaddress"
    assert keys["vrid"].default == "required"
    assert "Hop Limit" in keys["unicast_ttl"].text  # the comment beside the field
