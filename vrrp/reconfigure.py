"""What a new set of instances means for the running ones (a reload), as a pure plan.

An instance is known by its name. One whose identity (interface, address family, VRID:
what a virtual router is on the wire) stays the same keeps running and takes its new
settings in place, keeping its state (a master stays master); one whose identity changed
(or its VMAC settings, which move its sockets and VIPs) is stopped (resigning, as at
shutdown) and started anew; the rest are added or removed.
A new set that contradicts itself (a name twice, one VRID twice on an interface and
family, an address of the wrong family) has those instances refused, by name, and the
others go ahead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from vrrp.types import InstanceSpec
from vrrp.vmac import vmac_name_problem


@dataclass(frozen=True, slots=True)
class ReconfigurePlan:
    unchanged: tuple[str, ...] = ()
    update: tuple[InstanceSpec, ...] = ()  # same identity, new settings: in place
    restart: tuple[InstanceSpec, ...] = ()  # identity changed: stop the old, start this
    add: tuple[InstanceSpec, ...] = ()
    remove: tuple[str, ...] = ()
    errors: Mapping[str, str] = field(default_factory=dict)


def spec_problem(spec: InstanceSpec, others: Sequence[InstanceSpec]) -> str | None:
    """Why `spec` cannot run beside `others`, or None."""
    family = spec.family
    for address in (*spec.unicast_peers, *([spec.unicast_src_ip] if spec.unicast_src_ip else [])):
        if address.version != family:
            return f"instance {spec.name!r}: {address} is not of its family"
    if spec.use_vmac is not None:
        problem = vmac_name_problem(spec.use_vmac)
        if problem is not None:
            return f"instance {spec.name!r}: use_vmac: {problem}"
        if spec.use_vmac == spec.interface:
            return f"instance {spec.name!r}: its VMAC cannot be named like its interface"
    for other in others:
        if other.name == spec.name:
            return f"duplicate instance name {spec.name!r}"
        if other.identity == spec.identity:
            return (
                f"instance {spec.name!r}: vrid {spec.params.vrid} already used on "
                f"{spec.interface} by {other.name!r}"
            )
        if spec.use_vmac is not None and other.use_vmac == spec.use_vmac:
            return f"instance {spec.name!r}: VMAC {spec.use_vmac} already used by {other.name!r}"
    return None


def _restarts(current: InstanceSpec, wanted: InstanceSpec) -> bool:
    # A VMAC moves the instance's sockets and VIPs to another interface: start it anew.
    return current.identity != wanted.identity or (current.use_vmac, current.vmac_xmit_base) != (
        wanted.use_vmac,
        wanted.vmac_xmit_base,
    )


def plan_reconfigure(
    running: Mapping[str, InstanceSpec], wanted: Sequence[InstanceSpec]
) -> ReconfigurePlan:
    errors: dict[str, str] = {}
    accepted: list[InstanceSpec] = []
    for spec in wanted:
        problem = spec_problem(spec, accepted)
        if problem is not None:
            errors[spec.name] = problem
        else:
            accepted.append(spec)
    by_name = {spec.name: spec for spec in accepted}
    unchanged: list[str] = []
    update: list[InstanceSpec] = []
    restart: list[InstanceSpec] = []
    add: list[InstanceSpec] = []
    for spec in accepted:
        current = running.get(spec.name)
        if current is None:
            add.append(spec)
        elif _restarts(current, spec):
            restart.append(spec)
        elif current == spec:
            unchanged.append(spec.name)
        else:
            update.append(spec)
    # A refused instance keeps running as it was rather than being removed by a typo.
    remove = [name for name in running if name not in by_name and name not in errors]
    return ReconfigurePlan(
        unchanged=tuple(unchanged),
        update=tuple(update),
        restart=tuple(restart),
        add=tuple(add),
        remove=tuple(remove),
        errors=errors,
    )
