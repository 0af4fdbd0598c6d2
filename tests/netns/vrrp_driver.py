"""Run one VrrpEngine in this process (started inside a namespace by the netns tests).

Usage: python3 tests/netns/vrrp_driver.py CONFIG_JSON

CONFIG_JSON: {"instances": [{"name", "interface", "vrid", "version", "priority", "advert_int",
"primary", "vips": ["192.0.2.100/24", ...], optional "preempt", "unicast_src", "peers",
"unicast_ttl", "min_ttl", "max_ttl", "check_unicast_src", "garp": {GarpSettings fields},
"excluded": [...], "initial_state": "BACKUP", "vip_options": {"ADDR": {AddressOptions
fields}}, "routes": [{VirtualRoute fields}], "rules": [{VirtualRule fields}], "use_vmac":
NAME, "vmac_xmit_base": bool}]}

Writes one JSON object per line on stdout: {"event": "ready"} once started, then every
state change as it happens ("state"), fault changes ("faults"), repairs ("vip_repair",
"route_repair"), and answers to commands read from stdin, one per line (the figures come
from the engine's counters):

    status                 -> {"event": "status", "id": N, "states": {...}, "drops": {...},
                               "sent": {...}, "received": {...}}
    priority NAME P        -> set_priority, then {"event": "ok", "id": N}
    stop                   -> await engine.stop(), {"event": "stopped"}, exit 0

SIGTERM and SIGINT stop the engine the same way (priority-0 adverts, VIPs removed).
Logs (DEBUG) go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections import Counter
from dataclasses import fields, replace
from ipaddress import ip_address, ip_interface, ip_network
from typing import Any

from vrrp.events import FaultsChanged, InstanceStateChanged, RouteRepaired, VipRepaired
from vrrp.io import VrrpEngine, spec_of
from vrrp.types import (
    AddressOptions,
    GarpSettings,
    InstanceParams,
    State,
    VirtualRoute,
    VirtualRule,
)


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def echo(event: object) -> None:
    """The engine's publish callable: state changes are echoed as they happen."""
    if isinstance(event, InstanceStateChanged):
        emit(
            event="state",
            instance=event.instance,
            old=event.old.value,
            new=event.new.value,
            reason=event.reason.value,
        )
    elif isinstance(event, FaultsChanged):
        emit(event="faults", instance=event.instance, faults=list(event.faults))
    elif isinstance(event, VipRepaired):
        emit(event="vip_repair", instance=event.instance, iface=event.interface, item=event.address)
    elif isinstance(event, RouteRepaired):
        emit(event="route_repair", instance=event.instance, kind=event.kind, item=event.item)


def status(engine: VrrpEngine, serial: int) -> None:
    counters = engine.counters()
    drops: Counter[str] = Counter()
    for (_iface, reason), n in counters.drops.items():
        drops[reason] += n
    errors = {
        f"{name}:{op}": n for name, c in counters.instances.items() for op, n in c.errors.items()
    }
    emit(
        event="status",
        id=serial,
        states={k: v.value for k, v in engine.states().items()},
        drops=drops,
        sent={k: c.adverts_sent for k, c in counters.instances.items()},
        received={k: c.adverts_received for k, c in counters.instances.items()},
        mismatches={k: c.address_mismatch for k, c in counters.instances.items()},
        garps={k: c.garp_sent for k, c in counters.instances.items()},
        errors=errors,
    )


def build(engine: VrrpEngine, spec: dict[str, Any]) -> None:
    garp_fields = {f.name for f in fields(GarpSettings)}
    garp = GarpSettings(**{k: v for k, v in spec.get("garp", {}).items() if k in garp_fields})
    initial = spec.get("initial_state")
    params = InstanceParams(
        name=spec["name"],
        vrid=spec["vrid"],
        version=spec["version"],
        priority=spec["priority"],
        advert_int=spec["advert_int"],
        primary_address=ip_address(spec["primary"]),
        virtual_addresses=tuple(ip_interface(v) for v in spec["vips"]),
        preempt=spec.get("preempt", True),
        garp=garp,
        excluded_addresses=tuple(ip_interface(v) for v in spec.get("excluded", [])),
        initial_state=State(initial) if initial else None,
    )
    unicast_src = spec.get("unicast_src")
    base = spec_of(
        params,
        spec["interface"],
        unicast_src_ip=ip_address(unicast_src) if unicast_src else None,
        unicast_peers=[ip_address(p) for p in spec.get("peers", [])],
        unicast_ttl=spec.get("unicast_ttl"),
        min_ttl=spec.get("min_ttl"),
        max_ttl=spec.get("max_ttl"),
        check_unicast_src=spec.get("check_unicast_src", False),
    )
    options = {
        ip_address(address): AddressOptions(
            dev=o.get("dev"),
            scope=o.get("scope"),
            broadcast=ip_address(o["brd"]) if o.get("brd") else None,
            no_track=o.get("no_track", False),
        )
        for address, o in spec.get("vip_options", {}).items()
    }
    routes = tuple(
        VirtualRoute(
            dst=ip_network(r["dst"]),
            via=ip_address(r["via"]) if r.get("via") else None,
            src=ip_address(r["src"]) if r.get("src") else None,
            **{k: r[k] for k in ("dev", "metric", "table", "scope", "type", "no_track") if k in r},
        )
        for r in spec.get("routes", [])
    )
    rules = tuple(
        VirtualRule(
            family=r["family"],
            priority=r["priority"],
            table=r["table"],
            src=ip_network(r["src"]) if r.get("src") else None,
            dst=ip_network(r["dst"]) if r.get("dst") else None,
            **{k: r[k] for k in ("fwmark", "fwmask", "no_track") if k in r},
        )
        for r in spec.get("rules", [])
    )
    engine.add_spec(
        replace(
            base,
            vip_options=tuple(options.items()),
            virtual_routes=routes,
            virtual_rules=rules,
            use_vmac=spec.get("use_vmac"),
            vmac_xmit_base=spec.get("vmac_xmit_base", False),
        )
    )


async def main(config: dict[str, Any]) -> int:
    loop = asyncio.get_running_loop()
    engine = VrrpEngine(echo)
    for spec in config["instances"]:
        build(engine, spec)
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def commands() -> None:
        serial = 0
        while not done.is_set():
            line = (await reader.readline()).decode()
            if not line:
                return  # stdin closed: keep running until a signal
            serial += 1
            words = line.split()
            if words == ["status"]:
                status(engine, serial)
            elif len(words) == 3 and words[0] == "priority":
                engine.set_priority(words[1], int(words[2]))
                emit(event="ok", id=serial)
            elif words == ["stop"]:
                done.set()

    await engine.start()
    emit(event="ready")
    command_task = asyncio.create_task(commands())
    await done.wait()
    await engine.stop()
    command_task.cancel()
    emit(event="stopped")
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.DEBUG,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("pyroute2").setLevel(logging.WARNING)
    sys.exit(asyncio.run(main(json.loads(sys.argv[1]))))
