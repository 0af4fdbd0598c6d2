"""An in-memory LAN for VRRP state machines: event-driven time, zero-latency delivery.

Each `SendAdvertisement` one instance emits reaches every other running
instance at the same `now`, with the sender's primary address as the source
(what the adapter reads from the IP header). Time only moves to the next
deadline any instance reports through `get_timer()`, so runs are exact and
take no wall time. Every loop is bounded; running past the bound fails loudly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from vrrp.fsm import Instance
from vrrp.types import (
    Action,
    AddAddresses,
    Advertisement,
    InstanceParams,
    IPAddress,
    IPInterface,
    Reason,
    RemoveAddresses,
    SendAdvertisement,
    SendGratuitousArp,
    State,
    StateChanged,
)

MAX_STEPS = 100_000
MAX_DELIVERIES_PER_INSTANT = 1_000


@dataclass(frozen=True, slots=True)
class Event:
    time: float
    node: str
    action: Action


@dataclass
class Node:
    name: str
    params: InstanceParams
    instance: Instance
    running: bool = False  # started, not stopped, not killed: hears and is heard
    holds: set[IPInterface] = field(default_factory=set)  # VIPs the "kernel" has on this node

    @property
    def state(self) -> State:
        return self.instance.state


class Link:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.nodes: dict[str, Node] = {}
        self.events: list[Event] = []
        self.steps = 0

    # ---- building and driving ------------------------------------------------

    def add(self, name: str, params: InstanceParams) -> Node:
        node = Node(name, params, Instance(params))
        self.nodes[name] = node
        return node

    def start(self, name: str) -> list[Action]:
        node = self.nodes[name]
        if node.running:
            raise AssertionError(f"{name} already running")
        if node.instance.state is not State.INITIALIZE:
            # Killed earlier: its process is gone, a restart is a fresh instance.
            node.instance = Instance(node.params)
            node.holds.clear()
        node.running = True
        return self._perform(node, node.instance.start(self.now))

    def stop(self, name: str) -> list[Action]:
        node = self.nodes[name]
        actions = self._perform(node, node.instance.stop(self.now))
        node.running = False
        return actions

    def kill(self, name: str) -> None:
        """The daemon dies without a word: no priority-0 advert, VIPs left behind."""
        self.nodes[name].running = False

    def set_priority(self, name: str, priority: int) -> list[Action]:
        node = self.nodes[name]
        return self._perform(node, node.instance.set_priority(priority, self.now))

    def interface_down(self, name: str) -> list[Action]:
        node = self.nodes[name]
        return self._perform(node, node.instance.interface_down(self.now))

    def interface_up(self, name: str) -> list[Action]:
        node = self.nodes[name]
        return self._perform(node, node.instance.interface_up(self.now))

    def next_deadline(self) -> float | None:
        deadlines = [
            t
            for node in self.nodes.values()
            if node.running and (t := node.instance.get_timer()) is not None
        ]
        return min(deadlines) if deadlines else None

    def step(self) -> bool:
        """Advance to the earliest deadline and fire every timer due then."""
        deadline = self.next_deadline()
        if deadline is None:
            return False
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise AssertionError(f"simulation exceeded {MAX_STEPS} steps")
        assert deadline >= self.now, (deadline, self.now)
        self.now = deadline
        for node in sorted(self.nodes.values(), key=lambda n: n.name):
            timer = node.instance.get_timer()
            if node.running and timer is not None and timer <= self.now:
                self._perform(node, node.instance.handle_timer(self.now))
        return True

    def run_until(self, until: float, check: Callable[[Link], None] | None = None) -> None:
        """Fire every deadline up to and including `until`, then stand at `until`."""
        while (deadline := self.next_deadline()) is not None and deadline <= until:
            self.step()
            if check is not None:
                check(self)
        self.now = max(self.now, until)

    def run_for(self, seconds: float, check: Callable[[Link], None] | None = None) -> None:
        self.run_until(self.now + seconds, check)

    def _perform(self, sender: Node, actions: list[Action]) -> list[Action]:
        """Log and carry out `actions`, delivering adverts (and the answers they cause)."""
        queue: deque[tuple[Node, list[Action]]] = deque([(sender, actions)])
        deliveries = 0
        while queue:
            node, batch = queue.popleft()
            for action in batch:
                self.events.append(Event(self.now, node.name, action))
                if isinstance(action, AddAddresses):
                    node.holds.update(action.addresses)
                elif isinstance(action, RemoveAddresses):
                    node.holds.difference_update(action.addresses)
                elif isinstance(action, SendAdvertisement):
                    for peer in sorted(self.nodes.values(), key=lambda n: n.name):
                        if peer is node or not peer.running:
                            continue
                        deliveries += 1
                        if deliveries > MAX_DELIVERIES_PER_INSTANT:
                            raise AssertionError("advert storm within one instant")
                        answer = peer.instance.receive(
                            action.advertisement, node.params.primary_address, self.now
                        )
                        queue.append((peer, answer))
        return actions

    # ---- looking at what happened --------------------------------------------

    def masters(self) -> list[str]:
        return sorted(n.name for n in self.nodes.values() if n.running and n.state is State.MASTER)

    def actions_of(
        self, name: str, kind: type[Action], since: float = float("-inf")
    ) -> list[Event]:
        return [
            e
            for e in self.events
            if e.node == name and isinstance(e.action, kind) and e.time >= since
        ]

    def actions_of_kind(self, kind: type[Action]) -> list[Event]:
        return [e for e in self.events if isinstance(e.action, kind)]

    def adverts_of(self, name: str) -> list[tuple[float, Advertisement]]:
        return [
            (e.time, e.action.advertisement)
            for e in self.events
            if e.node == name and isinstance(e.action, SendAdvertisement)
        ]

    def last_advert_time(self, name: str) -> float:
        return self.adverts_of(name)[-1][0]

    def transitions(self, name: str) -> list[tuple[float, State, State, Reason]]:
        return [
            (e.time, e.action.old, e.action.new, e.action.reason)
            for e in self.events
            if e.node == name and isinstance(e.action, StateChanged)
        ]

    def garps(self, name: str) -> list[tuple[float, int]]:
        return [
            (e.time, e.action.count)
            for e in self.events
            if e.node == name and isinstance(e.action, SendGratuitousArp)
        ]

    def source_of(self, name: str) -> IPAddress:
        return self.nodes[name].params.primary_address


def assert_one_master(link: Link, expected: str | None = None) -> None:
    """Exactly one running, link-up instance is master, and only it holds the VIPs."""
    masters = link.masters()
    assert len(masters) == 1, f"t={link.now}: masters={masters}"
    if expected is not None:
        assert masters == [expected], f"t={link.now}: masters={masters}, expected {expected}"
    holders = sorted(n.name for n in link.nodes.values() if n.running and n.holds)
    assert holders == masters, f"t={link.now}: VIP holders={holders}, masters={masters}"


def one_master_check(expected: str | None = None) -> Callable[[Link], None]:
    def check(link: Link) -> None:
        assert_one_master(link, expected)

    return check
