"""The asyncio adapter of the VRRP engine: sockets, timers and VIPs around the sans-IO core.

`VrrpEngine` owns, for every interface its instances use, one raw VRRP socket per address
family (instances on the same interface share it and are told apart by VRID), an AF_PACKET
socket for gratuitous ARP / unsolicited NA, the VIPs (through route netlink) and exactly one
`loop.call_at` timer per instance. It feeds each `vrrp.fsm.Instance` the loop's monotonic
time, performs the actions the instance returns, in order, and re-arms the timer from
`get_timer()` after every input.

Everything the network sends is untrusted: a datagram that fails any check is dropped,
logged at debug level and reported to the observer with a reason; nothing raised while
handling it leaves the reader. Link events (netlink) drive FAULT: an interface that goes
down or disappears puts its instances in FAULT, and they recover when it comes back (with
fresh sockets if it came back under a new ifindex).

Metrics and notifications hang off `VrrpObserver`, so this module imports no metrics code.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol

from vrrp import arp, packet
from vrrp.addresses import (
    AddressAdded,
    AddressError,
    AddressRemoved,
    Link,
    LinkChanged,
    LinkEvent,
    LinkRemoved,
    Rtnl,
)
from vrrp.fsm import Instance
from vrrp.sockets import (
    ETH_P_ARP,
    ETH_P_IPV6,
    Datagram,
    DatagramError,
    open_packet_socket,
    open_vrrp_socket,
    read_datagram,
    send_frame,
    send_vrrp,
)
from vrrp.types import (
    VRRP_MCAST_V4,
    VRRP_MCAST_V6,
    Action,
    AddAddresses,
    Advertisement,
    InstanceParams,
    IPAddress,
    IPInterface,
    RemoveAddresses,
    SendAdvertisement,
    SendGratuitousArp,
    State,
    StateChanged,
)

log = logging.getLogger("vrrp.io")

DEFAULT_MTU = 1500  # Ethernet's, for an interface that is absent at start
READ_BURST = 64  # datagrams per readiness callback, so one busy socket cannot starve the loop
STOP_TIMEOUT = 5.0  # seconds stop() waits for the priority-0 adverts and VIP removals
MONITOR_RETRY = 1.0  # seconds between attempts to re-open a failed netlink monitor


class VrrpObserver(Protocol):
    """What the engine reports; the daemon turns it into metrics and notify hooks.

    Called on the event loop; implementations must not block.
    """

    def on_state_change(self, instance: str, change: StateChanged) -> None: ...

    def on_drop(self, interface: str, reason: str) -> None: ...

    def on_advert_sent(self, instance: str) -> None: ...

    def on_advert_received(self, instance: str) -> None: ...

    def on_address_mismatch(self, instance: str) -> None: ...

    def on_garp_sent(self, instance: str, count: int) -> None: ...

    def on_error(self, instance: str, operation: str) -> None:
        """An action failed: operation is send_advert, add_address, remove_address, send_garp."""
        ...


class NullObserver:
    """An observer that ignores everything; subclass it to hear only some events."""

    def on_state_change(self, instance: str, change: StateChanged) -> None:
        pass

    def on_drop(self, interface: str, reason: str) -> None:
        pass

    def on_advert_sent(self, instance: str) -> None:
        pass

    def on_advert_received(self, instance: str) -> None:
        pass

    def on_address_mismatch(self, instance: str) -> None:
        pass

    def on_garp_sent(self, instance: str, count: int) -> None:
        pass

    def on_error(self, instance: str, operation: str) -> None:
        pass


class _Guarded:
    """Forwards to the daemon's observer; a bug there is logged, never raised into the engine.

    The engine calls observers from the socket reader and the timers, where an exception
    would skip the rest of a datagram's handling or an instance's timer re-arm.
    """

    def __init__(self, inner: VrrpObserver) -> None:
        self._inner = inner

    def _call(self, method: Callable[..., None], *args: object) -> None:
        try:
            method(*args)
        except Exception:
            log.exception("vrrp.observer_error method=%s", method.__name__)

    def on_state_change(self, instance: str, change: StateChanged) -> None:
        self._call(self._inner.on_state_change, instance, change)

    def on_drop(self, interface: str, reason: str) -> None:
        self._call(self._inner.on_drop, interface, reason)

    def on_advert_sent(self, instance: str) -> None:
        self._call(self._inner.on_advert_sent, instance)

    def on_advert_received(self, instance: str) -> None:
        self._call(self._inner.on_advert_received, instance)

    def on_address_mismatch(self, instance: str) -> None:
        self._call(self._inner.on_address_mismatch, instance)

    def on_garp_sent(self, instance: str, count: int) -> None:
        self._call(self._inner.on_garp_sent, instance, count)

    def on_error(self, instance: str, operation: str) -> None:
        self._call(self._inner.on_error, instance, operation)


class Drop(enum.Enum):
    """Drop reasons decided here rather than by the codec (whose reasons pass through)."""

    NOT_A_PEER = "not_a_peer"  # check_unicast_src: the source is not a configured peer
    UNKNOWN_VRID = "unknown_vrid"  # no instance of ours on this interface has that VRID
    OWN_PACKET = "own_packet"  # the source is one of our own addresses (not a VIP)
    INTERNAL_ERROR = "internal_error"  # a bug of ours while handling it; logged with traceback
    # A valid lower-priority advert a master heard but did not answer: it answered one
    # within the last Advertisement_Interval (vrrp/fsm.py's rate limit on answers).
    ANSWER_SUPPRESSED = "answer_suppressed"


@dataclass(frozen=True, slots=True)
class Unicast:
    """keepalived's unicast_src_ip / unicast_peer: adverts go to each peer, not the group.

    With keepalived's defaults the peers list says where adverts go, not whom to hear:
    `check_src` (check_unicast_src, also implied by min_ttl / max_ttl, as in keepalived)
    drops adverts from anyone else. `ttl` is the TTL / Hop Limit sent to the peers
    (unicast_ttl; None: 255, see the README); `min_ttl` / `max_ttl` bound the received one.
    """

    source: IPAddress | None
    peers: frozenset[IPAddress]
    ttl: int | None = None
    min_ttl: int | None = None
    max_ttl: int | None = None
    check_src: bool = False


@dataclass(eq=False)
class _Runner:
    """One instance and everything the adapter keeps for it."""

    fsm: Instance
    interface: str
    unicast: Unicast
    labels: Mapping[IPAddress, str]
    timer: asyncio.TimerHandle | None = None
    deadline: float | None = None
    queue: asyncio.Queue[Action] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None
    mismatch_logged: bool = False
    send_failing: bool = False  # log the first failure of a run at warning, the rest at debug
    encode_failing: bool = False  # likewise for adverts that cannot be encoded at all

    @property
    def name(self) -> str:
        return self.fsm.params.name

    @property
    def family(self) -> socket.AddressFamily:
        return _family(self.fsm.params.primary_address)


@dataclass(eq=False)
class _Interface:
    """One interface: its link, our addresses on it, its sockets and its instances."""

    name: str
    link: Link | None = None
    operational: bool = False  # link up and sockets open: instances are out of FAULT
    own: set[IPAddress] = field(default_factory=set)  # every address on it, VIPs included
    vips: set[IPAddress] = field(default_factory=set)  # our instances' VIPs on it
    sockets: dict[socket.AddressFamily, socket.socket] = field(default_factory=dict)
    instances: dict[tuple[socket.AddressFamily, int], _Runner] = field(default_factory=dict)

    def sent_by_us(self, source: IPAddress) -> bool:
        """Whether a packet from `source` is one of this director's own.

        The VIPs we hold do not count: a real address owner (priority 255, RFC 5798
        §5.2.4) advertises from its interface address, which is the VIP, and while we
        hold the VIP we must still hear it, or we never give the VIP back.
        """
        if source in self.vips:
            return False
        return source in self.own or any(
            source == runner.unicast.source for runner in self.instances.values()
        )


def _family(address: IPAddress) -> socket.AddressFamily:
    return socket.AF_INET if isinstance(address, IPv4Address) else socket.AF_INET6


def _ipv6_forwarding(ifname: str) -> bool:
    """Whether IPv6 forwarding is on for `ifname` (this process's namespace).

    keepalived sets the NA's Router flag then: hosts drop a router from their default router
    list on an NA with R clear (RFC 4861 §7.2.5).
    """
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/forwarding", "rb") as f:
            return f.read().strip() == b"1"
    except OSError:
        return False


def _reason_label(reason: object) -> str:
    value = getattr(reason, "value", None)
    if isinstance(value, str):
        return value
    name = getattr(reason, "name", None)
    return name.lower() if isinstance(name, str) else str(reason)


# epoll_wait() lets the kernel fire late by 0.1% of the timeout (fs/select.c,
# select_estimate_accuracy: 3.6 ms on a 3.6 s Master_Down_Interval), which would
# be added to every failover. Long waits therefore wake early by a little more
# than that and then wait the short remainder.
_SLACK = 0.002
_EXACT = 0.0002


def _wake_time(deadline: float, now: float) -> float:
    early = (deadline - now) * _SLACK
    return deadline - early if early > _EXACT else deadline


class VrrpEngine:
    """Runs VRRP instances: add them, `await start()`, and `await stop()` before exiting.

    `stop()` resigns every master (priority-0 advert, RFC 5798 §6.4.3) and removes its VIPs;
    the process must await it before it exits or the backups wait Master_Down_Interval.
    """

    def __init__(
        self,
        observer: VrrpObserver | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._observer = _Guarded(observer if observer is not None else NullObserver())
        self._loop = loop
        self._runners: dict[str, _Runner] = {}
        self._interfaces: dict[str, _Interface] = {}
        self._rtnl = Rtnl()
        self._packet_socket: socket.socket | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._started = False
        self._stopped = False

    # ---- public API ----------------------------------------------------------

    def add_instance(
        self,
        params: InstanceParams,
        interface: str,
        *,
        unicast_src_ip: IPAddress | None = None,
        unicast_peers: Iterable[IPAddress] = (),
        vip_labels: Mapping[IPAddress, str] | None = None,
        unicast_ttl: int | None = None,
        min_ttl: int | None = None,
        max_ttl: int | None = None,
        check_unicast_src: bool = False,
    ) -> None:
        """Register an instance on `interface` (before `start()`).

        With `unicast_peers` the instance sends to each peer instead of the multicast group
        (with TTL / Hop Limit `unicast_ttl`, default 255) and hears unicast adverts only;
        `unicast_src_ip` is then its source address (default: `params.primary_address`).
        keepalived's receive checks for unicast: `check_unicast_src` drops adverts from
        anyone but the peers, `min_ttl` / `max_ttl` bound their TTL (and imply
        `check_unicast_src`). `vip_labels` gives IPv4 VIPs a label such as "eth0:1". Raises
        ValueError for a duplicate name or a VRID already used on that interface and
        family, and whatever `Instance` raises for bad parameters.
        """
        if self._started:
            raise RuntimeError("add_instance() after start()")
        if params.name in self._runners:
            raise ValueError(f"duplicate instance name {params.name!r}")
        family = _family(params.primary_address)
        peers = frozenset(unicast_peers)
        for address in (*peers, *([unicast_src_ip] if unicast_src_ip else [])):
            if _family(address) != family:
                raise ValueError(f"instance {params.name!r}: {address} is not of its family")
        iface = self._interfaces.setdefault(interface, _Interface(interface))
        key = (family, params.vrid)
        if key in iface.instances:
            other = iface.instances[key].name
            raise ValueError(
                f"instance {params.name!r}: vrid {params.vrid} already used on {interface} "
                f"by {other!r}"
            )
        bounded = min_ttl is not None or max_ttl is not None
        runner = _Runner(
            fsm=Instance(params),
            interface=interface,
            unicast=Unicast(
                unicast_src_ip,
                peers,
                ttl=unicast_ttl,
                min_ttl=min_ttl,
                max_ttl=max_ttl,
                check_src=bool(peers) and (check_unicast_src or bounded),
            ),
            labels=dict(vip_labels or {}),
        )
        iface.instances[key] = runner
        iface.vips.update(vip.ip for vip in params.held_addresses)
        self._runners[params.name] = runner

    async def start(self) -> None:
        """Open netlink, learn the links, open sockets and start every instance."""
        if self._started:
            raise RuntimeError("start() twice")
        self._started = True
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        await self._rtnl.open()
        self._packet_socket = open_packet_socket()
        await self._resync()
        self._monitor_task = asyncio.create_task(self._monitor(), name="vrrp-link-monitor")
        now = self._loop.time()
        for iface in self._interfaces.values():
            for runner in iface.instances.values():
                self._fit_advert(runner, iface)
                runner.worker = asyncio.create_task(self._work(runner), name=f"vrrp-{runner.name}")
                if not iface.operational:
                    # Remembered by the fsm: start() then goes straight to FAULT.
                    runner.fsm.interface_down(now)
                self._feed(runner, runner.fsm.start, now)
                self._remove_stale_vips(runner, iface)
        log.info("vrrp.started instances=%d", len(self._runners))

    def _fit_advert(self, runner: _Runner, iface: _Interface) -> None:
        """Size the instance's adverts for its interface's MTU, as keepalived does, and say
        once which VIPs they leave out (held and announced all the same).

        Decided at start, before the instance runs: keepalived sizes adverts once, from the
        MTU it sees at start, and a peer must carry as many addresses as it expects.
        """
        params = runner.fsm.params
        mtu = iface.link.mtu if iface.link is not None else DEFAULT_MTU
        fits = packet.max_advert_addresses(params.version, params.primary_address.version, mtu)
        if fits < params.max_advert_addresses:
            params = replace(params, max_advert_addresses=fits)
            runner.fsm = Instance(params)
        overflow = params.overflow_addresses
        if overflow:
            log.warning(
                "vrrp.vips_excluded instance=%s iface=%s mtu=%d advertised=%d excluded=%d "
                "first_excluded=%s reason=%s",
                runner.name,
                iface.name,
                mtu,
                len(params.advert_addresses),
                len(overflow),
                overflow[0],
                "count_field" if params.max_advert_addresses == packet.MAX_ADDRESSES else "mtu",
            )

    def _remove_stale_vips(self, runner: _Runner, iface: _Interface) -> None:
        """Take back VIPs a previous run left behind (kill -9) unless we start as master.

        keepalived does the same on startup: a backup holding the master's VIPs would answer
        ARP for them and split the traffic.
        """
        if runner.fsm.state is State.MASTER:
            return
        stale = tuple(v for v in runner.fsm.params.held_addresses if v.ip in iface.own)
        if stale:
            log.warning(
                "vrrp.stale_vip instance=%s iface=%s addresses=%s",
                runner.name,
                iface.name,
                ",".join(map(str, stale)),
            )
            runner.queue.put_nowait(RemoveAddresses(stale))

    async def stop(self) -> None:
        """Resign and remove VIPs everywhere, then close everything. Safe to call twice."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        assert self._loop is not None
        now = self._loop.time()
        for runner in self._runners.values():
            self._feed(runner, runner.fsm.stop, now)
        waits = [runner.queue.join() for runner in self._runners.values()]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), STOP_TIMEOUT)
        except TimeoutError:
            log.error("vrrp.stop_timeout seconds=%s", STOP_TIMEOUT)
        tasks = [r.worker for r in self._runners.values() if r.worker is not None]
        tasks.extend(self._background)
        if self._monitor_task is not None:
            tasks.append(self._monitor_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for runner in self._runners.values():
            self._cancel_timer(runner)
        for iface in self._interfaces.values():
            self._close_sockets(iface)
        if self._packet_socket is not None:
            self._packet_socket.close()
        self._rtnl.close()
        log.info("vrrp.stopped instances=%d", len(self._runners))

    def states(self) -> dict[str, State]:
        return {name: runner.fsm.state for name, runner in self._runners.items()}

    def set_priority(self, name: str, priority: int) -> None:
        """Set an instance's effective priority (tracking); KeyError for an unknown name."""
        runner = self._runners[name]
        if not self._started or self._stopped:
            raise RuntimeError("set_priority() while not running")
        assert self._loop is not None
        self._feed(runner, lambda now: runner.fsm.set_priority(priority, now), self._loop.time())

    # ---- feeding the state machine -------------------------------------------

    def _feed(self, runner: _Runner, event: _Event, now: float) -> None:
        """Call one fsm input, send its adverts now, queue its other actions in order, and
        re-arm the instance's timer.

        Adverts do not wait in the queue: a master adding hundreds of VIPs spends seconds
        in netlink round trips, and adverts held behind them for longer than the backups'
        Master_Down_Interval make the backups take over. An advert needs nothing the queue
        does (RFC 5798 §6.4.2 sends it before the VIPs are added anyway).
        """
        try:
            actions = event(now)
        except Exception:
            log.exception("vrrp.fsm_error instance=%s", runner.name)
            actions = []
        for action in actions:
            if isinstance(action, SendAdvertisement):
                try:
                    self._send_advertisement(runner, action.advertisement)
                except Exception:
                    log.exception("vrrp.action_error instance=%s action=%s", runner.name, action)
            else:
                runner.queue.put_nowait(action)
        self._arm(runner)

    def _arm(self, runner: _Runner) -> None:
        deadline = runner.fsm.get_timer()
        if runner.timer is not None and deadline == runner.deadline:
            return
        self._cancel_timer(runner)
        if deadline is not None and not self._stopped:
            assert self._loop is not None
            runner.deadline = deadline
            runner.timer = self._loop.call_at(
                _wake_time(deadline, self._loop.time()), self._on_timer, runner
            )

    def _cancel_timer(self, runner: _Runner) -> None:
        if runner.timer is not None:
            runner.timer.cancel()
        runner.timer = runner.deadline = None

    def _on_timer(self, runner: _Runner) -> None:
        assert self._loop is not None
        deadline = runner.deadline
        if deadline is not None and self._loop.time() < deadline - _EXACT:
            # The early wake-up of _wake_time: wait the short remainder, which the
            # kernel times to within microseconds.
            runner.timer = self._loop.call_at(deadline, self._on_timer, runner)
            return
        runner.timer = runner.deadline = None
        # call_at may run a handle up to the clock resolution early; the fsm fires only
        # deadlines that are due, so never hand it a time before the one it asked for.
        now = max(self._loop.time(), deadline or 0.0)
        self._feed(runner, runner.fsm.handle_timer, now)

    # ---- performing actions --------------------------------------------------

    async def _work(self, runner: _Runner) -> None:
        """Perform one instance's actions strictly in order (VIPs before the GARP for them)."""
        while True:
            action = await runner.queue.get()
            try:
                await self._perform(runner, action)
            except Exception:
                log.exception("vrrp.action_error instance=%s action=%s", runner.name, action)
            finally:
                runner.queue.task_done()

    async def _perform(self, runner: _Runner, action: Action) -> None:
        if isinstance(action, SendAdvertisement):  # _feed sends them; a queued one still goes
            self._send_advertisement(runner, action.advertisement)
        elif isinstance(action, AddAddresses):
            await self._add_addresses(runner, action.addresses)
        elif isinstance(action, RemoveAddresses):
            await self._remove_addresses(runner, action.addresses)
        elif isinstance(action, SendGratuitousArp):
            self._send_garp(runner, action.addresses, action.count)
        elif isinstance(action, StateChanged):
            params = runner.fsm.params
            log.info(
                "vrrp.state instance=%s vrid=%d iface=%s from=%s to=%s reason=%s",
                runner.name,
                params.vrid,
                runner.interface,
                action.old.value,
                action.new.value,
                action.reason.value,
            )
            self._observer.on_state_change(runner.name, action)

    def _source(self, runner: _Runner, iface: _Interface) -> IPAddress | None:
        if runner.unicast.source is not None:
            return runner.unicast.source
        primary = runner.fsm.params.primary_address
        if isinstance(primary, IPv4Address) or primary.is_link_local or runner.unicast.peers:
            return primary
        # RFC 5798 §5.1.2.1: IPv6 adverts come from the interface's link-local address.
        link_local = sorted(a for a in iface.own if isinstance(a, IPv6Address) and a.is_link_local)
        return link_local[0] if link_local else None

    def _send_advertisement(self, runner: _Runner, adv: Advertisement) -> None:
        iface = self._interfaces[runner.interface]
        sock = iface.sockets.get(runner.family)
        source = self._source(runner, iface)
        if sock is None or iface.link is None or source is None:
            log.debug("vrrp.send_skipped instance=%s iface=%s", runner.name, runner.interface)
            self._observer.on_error(runner.name, "send_advert")
            return
        group: IPAddress = VRRP_MCAST_V4 if runner.family == socket.AF_INET else VRRP_MCAST_V6
        destinations = sorted(runner.unicast.peers) or [group]
        sent = False
        for destination in destinations:
            try:
                payload = packet.encode(adv, source, destination)
            except ValueError as exc:
                # A bug of ours, not the network's: it would fail the same way every
                # Advertisement_Interval, so say it once (not a traceback a second) and
                # count every failure. The other destinations would fail alike.
                level = logging.DEBUG if runner.encode_failing else logging.ERROR
                runner.encode_failing = True
                log.log(
                    level,
                    "vrrp.encode_error instance=%s iface=%s addresses=%d error=%s",
                    runner.name,
                    runner.interface,
                    len(adv.addresses),
                    exc,
                )
                self._observer.on_error(runner.name, "send_advert")
                return
            runner.encode_failing = False
            try:
                # The socket sends 255 (RFC 5798 §5.1.1.3); unicast_ttl overrides it per packet.
                send_vrrp(
                    sock, payload, source, destination, iface.link.ifindex, runner.unicast.ttl
                )
                sent = True
            except OSError as exc:
                level = logging.DEBUG if runner.send_failing else logging.WARNING
                runner.send_failing = True
                log.log(
                    level,
                    "vrrp.send_error instance=%s iface=%s src=%s dst=%s error=%s",
                    runner.name,
                    runner.interface,
                    source,
                    destination,
                    exc,
                )
                self._observer.on_error(runner.name, "send_advert")
        if sent:
            runner.send_failing = False
            self._observer.on_advert_sent(runner.name)

    async def _add_addresses(self, runner: _Runner, addresses: tuple[IPInterface, ...]) -> None:
        iface = self._interfaces[runner.interface]
        for address in addresses:
            if iface.link is None:
                log.warning("vrrp.vip_add_skipped instance=%s address=%s", runner.name, address)
                self._observer.on_error(runner.name, "add_address")
                continue
            try:
                added = await self._rtnl.add_address(
                    iface.link.ifindex, address, runner.labels.get(address.ip)
                )
            except AddressError as exc:
                log.error(
                    "vrrp.vip_add_error instance=%s address=%s error=%s", runner.name, address, exc
                )
                self._observer.on_error(runner.name, "add_address")
                continue
            iface.own.add(address.ip)
            log.info(
                "vrrp.vip_add instance=%s iface=%s address=%s present=%s",
                runner.name,
                runner.interface,
                address,
                not added,
            )

    async def _remove_addresses(self, runner: _Runner, addresses: tuple[IPInterface, ...]) -> None:
        iface = self._interfaces[runner.interface]
        for address in addresses:
            if iface.link is None:
                continue  # the interface is gone, and its addresses with it
            try:
                removed = await self._rtnl.remove_address(iface.link.ifindex, address)
            except AddressError as exc:
                log.error(
                    "vrrp.vip_del_error instance=%s address=%s error=%s", runner.name, address, exc
                )
                self._observer.on_error(runner.name, "remove_address")
                continue
            iface.own.discard(address.ip)
            log.info(
                "vrrp.vip_del instance=%s iface=%s address=%s absent=%s",
                runner.name,
                runner.interface,
                address,
                not removed,
            )

    def _send_garp(self, runner: _Runner, addresses: tuple[IPAddress, ...], count: int) -> None:
        iface = self._interfaces[runner.interface]
        if iface.link is None or self._packet_socket is None:
            self._observer.on_error(runner.name, "send_garp")
            return
        mac = iface.link.mac
        frames: list[tuple[int, bytes]] = []
        router: bool | None = None
        for address in addresses:
            if isinstance(address, IPv4Address):
                frames.append((ETH_P_ARP, arp.gratuitous_arp(mac, address)))
            else:
                if router is None:
                    router = _ipv6_forwarding(iface.name)
                frames.append((ETH_P_IPV6, arp.unsolicited_na(mac, address, router=router)))
        sent = 0
        try:
            for _ in range(count):
                for ethertype, frame in frames:
                    send_frame(self._packet_socket, iface.name, ethertype, frame)
                    sent += 1
        except OSError as exc:
            log.warning(
                "vrrp.garp_error instance=%s iface=%s error=%s", runner.name, iface.name, exc
            )
            self._observer.on_error(runner.name, "send_garp")
        if sent:
            log.debug("vrrp.garp instance=%s iface=%s frames=%d", runner.name, iface.name, sent)
            self._observer.on_garp_sent(runner.name, sent)

    # ---- receiving -----------------------------------------------------------

    def _on_readable(self, iface: _Interface, family: socket.AddressFamily) -> None:
        sock = iface.sockets.get(family)
        for _ in range(READ_BURST):
            if sock is None or iface.sockets.get(family) is not sock:
                return  # closed by a link event handled in between
            try:
                datagram = read_datagram(sock)
            except DatagramError as exc:
                self._drop(iface, exc.reason, exc.detail, None)
                continue
            except OSError as exc:
                # e.g. ENETDOWN queued on the socket while the link flapped.
                log.debug("vrrp.recv_error iface=%s error=%s", iface.name, exc)
                return
            if datagram is None:
                return
            try:
                self._receive(iface, family, datagram)
            except Exception:
                log.exception("vrrp.receive_error iface=%s src=%s", iface.name, datagram.source)
                self._drop(iface, Drop.INTERNAL_ERROR.value, "see traceback", datagram.source)

    def _receive(self, iface: _Interface, family: socket.AddressFamily, dgram: Datagram) -> None:
        """decode -> instance -> delivery -> peers -> check_for_instance -> addresses_match
        -> fsm."""
        if iface.sent_by_us(dgram.source):
            self._drop(iface, Drop.OWN_PACKET.value, "", dgram.source)
            return
        runners = [r for (fam, _), r in iface.instances.items() if fam == family]
        if (
            runners
            and all(r.unicast.check_src for r in runners)
            and not any(dgram.source in r.unicast.peers for r in runners)
        ):
            # Checked before decoding too: a stranger's bytes need not reach the codec.
            self._drop(iface, Drop.NOT_A_PEER.value, "", dgram.source)
            return
        try:
            adv = packet.decode(dgram.payload, dgram.source, dgram.destination)
        except packet.PacketError as exc:
            self._drop(iface, _reason_label(exc.reason), str(exc), dgram.source)
            return
        runner = iface.instances.get((family, adv.vrid))
        if runner is None:
            self._drop(iface, Drop.UNKNOWN_VRID.value, f"vrid {adv.vrid}", dgram.source)
            return
        unicast = runner.unicast
        try:
            # Decided here, not in the codec: only the instance knows whether it expects
            # multicast (TTL 255, RFC 5798 §7.1) or unicast (TTL checked if configured).
            packet.check_delivery(
                dgram.destination,
                dgram.ttl,
                unicast=bool(unicast.peers),
                min_ttl=unicast.min_ttl,
                max_ttl=unicast.max_ttl,
            )
        except packet.PacketError as exc:
            self._drop(iface, _reason_label(exc.reason), f"vrid {adv.vrid}: {exc}", dgram.source)
            return
        if unicast.check_src and dgram.source not in unicast.peers:
            self._drop(iface, Drop.NOT_A_PEER.value, f"vrid {adv.vrid}", dgram.source)
            return
        try:
            packet.check_for_instance(adv, runner.fsm.params)
        except packet.PacketError as exc:
            self._drop(iface, _reason_label(exc.reason), str(exc), dgram.source)
            return
        self._observer.on_advert_received(runner.name)
        if not packet.addresses_match(adv, runner.fsm.params):
            # RFC 5798 §6.4.2 (420) lets an implementation log this and still accept the
            # advert; a misconfigured peer must not start a fight over the VIPs.
            self._observer.on_address_mismatch(runner.name)
            level = logging.DEBUG if runner.mismatch_logged else logging.WARNING
            runner.mismatch_logged = True
            log.log(
                level,
                "vrrp.address_mismatch instance=%s vrid=%d iface=%s src=%s",
                runner.name,
                adv.vrid,
                iface.name,
                dgram.source,
            )
        else:
            runner.mismatch_logged = False
        source = dgram.source
        suppressed = runner.fsm.suppressed_answers
        self._feed(runner, lambda now: runner.fsm.receive(adv, source, now), self._now())
        if runner.fsm.suppressed_answers != suppressed:
            self._drop(iface, Drop.ANSWER_SUPPRESSED.value, f"instance {runner.name}", source)

    def _drop(self, iface: _Interface, reason: str, detail: str, source: IPAddress | None) -> None:
        log.debug(
            "vrrp.drop iface=%s reason=%s src=%s detail=%s", iface.name, reason, source, detail
        )
        self._observer.on_drop(iface.name, reason)

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # ---- links ---------------------------------------------------------------

    def _open_sockets(self, iface: _Interface) -> bool:
        assert self._loop is not None and iface.link is not None
        families = {family for family, _ in iface.instances}
        try:
            for family in families:
                if family not in iface.sockets:
                    sock = open_vrrp_socket(family, iface.name, iface.link.ifindex)
                    iface.sockets[family] = sock
                    self._loop.add_reader(sock.fileno(), self._on_readable, iface, family)
        except OSError as exc:
            log.warning("vrrp.socket_error iface=%s error=%s", iface.name, exc)
            self._close_sockets(iface)
            return False
        return True

    def _close_sockets(self, iface: _Interface) -> None:
        for sock in iface.sockets.values():
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()
        iface.sockets.clear()

    def _set_operational(self, iface: _Interface, operational: bool) -> None:
        if operational == iface.operational:
            return
        iface.operational = operational
        link = iface.link
        log.info(
            "vrrp.link iface=%s ifindex=%s up=%s",
            iface.name,
            link.ifindex if link else None,
            operational,
        )
        if self._stopped:
            return
        now = self._now()
        for runner in iface.instances.values():
            if runner.worker is None:
                continue  # not started yet: start() handles the initial state
            event = runner.fsm.interface_up if operational else runner.fsm.interface_down
            self._feed(runner, event, now)

    def _apply(self, event: LinkEvent) -> None:
        if isinstance(event, LinkChanged):
            link = event.link
            for iface in self._interfaces.values():
                renamed = iface.link is not None and iface.link.ifindex == link.ifindex
                if renamed and iface.name != link.ifname:  # renamed away: gone for us
                    self._link_gone(iface)
            iface_or_none = self._interfaces.get(link.ifname)
            if iface_or_none is None:
                return
            iface = iface_or_none
            if iface.link is not None and iface.link.ifindex != link.ifindex:
                self._link_gone(iface)  # replaced: the old sockets are bound to a dead index
            if iface.link is None and self._monitor_task is not None:
                # A link that appears (or is renamed to our name) may already carry
                # addresses no event will announce; read them, e.g. its IPv6 link-local.
                self._spawn(self._load_addresses(iface, link.ifindex))
            iface.link = link
            if link.up:
                self._set_operational(iface, self._open_sockets(iface))
            else:
                self._set_operational(iface, False)
        elif isinstance(event, LinkRemoved):
            for iface in self._interfaces.values():
                if iface.link is not None and iface.link.ifindex == event.ifindex:
                    self._link_gone(iface)
        elif isinstance(event, AddressAdded | AddressRemoved):
            for iface in self._interfaces.values():
                if iface.link is not None and iface.link.ifindex == event.address.ifindex:
                    if isinstance(event, AddressAdded):
                        iface.own.add(event.address.address.ip)
                    else:
                        iface.own.discard(event.address.address.ip)

    def _link_gone(self, iface: _Interface) -> None:
        iface.link = None
        iface.own.clear()
        self._close_sockets(iface)
        self._set_operational(iface, False)

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)  # asyncio keeps only weak references to tasks
        task.add_done_callback(self._background.discard)

    async def _load_addresses(self, iface: _Interface, ifindex: int) -> None:
        try:
            addresses = await self._rtnl.addresses()
        except Exception as exc:
            log.warning("vrrp.address_dump_error iface=%s error=%s", iface.name, exc)
            return
        if iface.link is not None and iface.link.ifindex == ifindex:
            iface.own.update(a.address.ip for a in addresses if a.ifindex == ifindex)

    async def _resync(self) -> None:
        """Learn every link and address from a dump, as if each were a fresh event."""
        links = await self._rtnl.links()
        present = {link.ifname for link in links}
        for iface in self._interfaces.values():
            if iface.name not in present and iface.link is not None:
                self._link_gone(iface)
        for link in links:
            self._apply(LinkChanged(link))
        addresses = await self._rtnl.addresses()
        for iface in self._interfaces.values():
            if iface.link is not None:
                index = iface.link.ifindex
                iface.own = {a.address.ip for a in addresses if a.ifindex == index}

    async def _monitor(self) -> None:
        while True:
            try:
                async for event in self._rtnl.events():
                    self._apply(event)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # ENOBUFS: the kernel dropped events. Re-subscribe, then re-read everything.
                log.warning("vrrp.monitor_error error=%s", exc)
                await asyncio.sleep(MONITOR_RETRY)
                with contextlib.suppress(Exception):
                    await self._rtnl.open_monitor()
                    await self._resync()


class _Event(Protocol):
    def __call__(self, now: float, /) -> list[Action]: ...
