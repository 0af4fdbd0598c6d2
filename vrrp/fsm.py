"""The VRRP state machine of one virtual router, sans-IO (RFC 5798 §6, RFC 3768 v2 timings).

`Instance` owns no clock and no socket. Every call takes `now` (float seconds on
the adapter's monotonic clock) and returns the `Action`s the adapter must
perform, in order; `get_timer()` says when `handle_timer()` is next due. The
adapter validates packets and instance membership (VRID, auth, v2 interval)
before `receive()`; anything it still passes that looks wrong is ignored,
never raised, because it came from the network. Misuse by our own code
(`receive()` before `start()`, `start()` twice, bad `InstanceParams`) raises.

Behaviour beyond the RFC follows keepalived, which operators compare us with:

* Gratuitous ARP / unsolicited NA: `garp.master_repeat` frames per VIP at once on
  becoming master, the same again `garp.master_delay` seconds later, then
  `garp.master_refresh_repeat` every `garp.master_refresh` seconds while master;
  `garp.lower_prio_repeat` frames when a master hears a lower-priority master.
* A master that hears a lower-priority (or tie-losing) master answers at once
  with an advertisement, so the other side steps down without waiting a full
  Advertisement_Interval (split-brain recovery). At most one such answer (and
  its GARP burst) per Advertisement_Interval: one heals a split brain, and a
  flood of spoofed lower-priority adverts must not make us send an advert and
  a GARP burst for each (101,900 packets/s once drew 528,079 frames in 20 s).
  Answers held back are counted in `suppressed_answers` for the adapter.
* A master whose advert timer fires a whole Advertisement_Interval late or more
  (the machine or the process stalled) sends one advert, not a catch-up burst,
  and counts the intervals that passed without one in `intervals_missed`: three
  in a row are what makes a backup take over.
* Equal priorities, as RFC 5798 has them (and keepalived and FRR): a backup
  follows a live master whose priority equals its own (§6.4.2 (440)), so a
  director that comes back does not take the VIPs from its equal peer. The
  primary-address tie-break (§6.4.3 (735)) settles two masters only, e.g.
  backups whose Master_Down_Timers fired together.
* FAULT, while any fault holds (keepalived's FAULT state): the interface is
  down or does not exist, or it has no address to advertise from (keepalived
  waits in FAULT rather than advertise from 0.0.0.0 or from a VIP). Adverts
  are ignored; a master drops its VIPs. When the last fault clears, the
  instance starts over as at §6.4.1 (the owner as master, anyone else backup).
* Operator step-down (`set_hold`): a master resigns as at shutdown (priority 0,
  so backups take over after Skew_Time) and the instance stays BACKUP, never
  taking over, until released.
* `update()` applies new parameters in place (a reload): a master keeps its
  state, adds and announces new VIPs, removes dropped ones and advertises at
  once if what its adverts say changed; preemption is re-evaluated by RFC 5798's
  own rules on the next advert heard.
* Adverts carry at most `max_advert_addresses` VIPs of the instance's family (255
  fit the Count field; keepalived carries fewer where the interface MTU allows
  fewer). The VIPs beyond that, and keepalived's `virtual_ipaddress_excluded`,
  are added, removed and announced with the others but never advertised.
* Tracking (vrrp/track.py) reaches the machine as `set_priority()` and as faults named
  `track_KIND:NAME`; a master that goes to FAULT for a reason that leaves its link up
  (tracking, its sync group) sends a priority-0 advert first, as keepalived does
  (vrrp_state_leave_master), so the backup takes over after Skew_Time.
* Sync groups (vrrp/syncgroup.py): a member (`set_gated(True)`) never becomes MASTER on its
  own. Where it would (Master_Down_Timer, preemption, address owner), it *wants* MASTER
  (`wants_master`), stays BACKUP and keeps listening, re-arming its Master_Down_Timer as
  keepalived does; the adapter `promote()`s the members once all want it, and moves them
  with `sync_to_backup()` and the `sync_group` fault.
* Virtual routes and rules follow mastership like the VIPs (`ApplyRoutes`): applied
  after the VIPs on becoming master, withdrawn before them on leaving.
* keepalived's start hint `state BACKUP` keeps even the address owner from taking over
  at once: it listens for Master_Down_Interval first (`InstanceParams.initial_state`).
* preempt_delay, exactly as implemented here (keepalived's documented intent,
  "seconds after startup or seeing a lower priority master until preemption",
  made exact): a preempting backup that hears a live lower-priority master
  takes over `preempt_delay` seconds later than it would without the delay.
  Without the delay RFC 5798 §6.4.2 (470) discards that master's adverts and
  the Master_Down_Timer pending at the first such advert (time D) runs out:
  takeover at D. With the delay we take over at D + preempt_delay instead
  (the "preempt-delay timer"). Meanwhile the lower master's adverts are
  accepted as from any master (§6.4.2 (450)-(460): interval learnt, timer
  reset), as keepalived does, so if it falls silent we still take over
  Master_Down_Interval after its last advert (Reason.MASTER_DOWN), possibly
  before the delay ends. The hold is cancelled when a master we would not
  preempt speaks, when the master resigns (priority 0), when our own priority
  drops so that we no longer outrank it, and when we leave BACKUP. The address
  owner (priority 255) always preempts and ignores preempt_delay (§6.1).
"""

from __future__ import annotations

from vrrp.types import (
    Action,
    AddAddresses,
    Advertisement,
    ApplyRoutes,
    AuthType,
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

OWNER_PRIORITY = 255  # RFC 5798 §5.2.4: the router that owns the virtual addresses
_CENTISECONDS = 100
_V3_MAX_ADVER_INT = 4095  # RFC 5798 §5.2.7: a 12-bit field of centiseconds
_V2_MAX_ADVER_INT = 255 * _CENTISECONDS  # RFC 3768 §5.3.7: an 8-bit field of seconds


class InstanceUsageError(RuntimeError):
    """Our own code called an `Instance` in a way its contract forbids."""


def _check_params(params: InstanceParams) -> None:
    """Reject parameters the config layer should never have let through."""
    problems: list[str] = []
    if params.version not in (2, 3):
        problems.append(f"version must be 2 or 3, not {params.version}")
    if not 1 <= params.vrid <= 255:
        problems.append(f"vrid must be 1..255, not {params.vrid}")
    if not 1 <= params.priority <= OWNER_PRIORITY:
        problems.append(f"priority must be 1..255, not {params.priority}")
    if params.version == 3 and not 1 <= params.advert_int <= _V3_MAX_ADVER_INT:
        problems.append(f"v3 advert_int must be 1..4095 centiseconds, not {params.advert_int}")
    if params.version == 2 and (
        not _CENTISECONDS <= params.advert_int <= _V2_MAX_ADVER_INT
        or params.advert_int % _CENTISECONDS
    ):
        problems.append(f"v2 advert_int must be whole seconds 1..255, not {params.advert_int} cs")
    if not 1 <= params.max_advert_addresses <= 255:
        problems.append(f"max_advert_addresses must be 1..255, not {params.max_advert_addresses}")
    if params.preempt_delay < 0:
        problems.append(f"preempt_delay must be >= 0, not {params.preempt_delay}")
    garp = params.garp
    if min(garp.master_repeat, garp.master_refresh_repeat, garp.lower_prio_repeat) < 0:
        problems.append("garp repeat counts must be >= 0")
    if garp.master_delay < 0 or garp.master_refresh < 0:
        problems.append("garp delays must be >= 0")
    if problems:
        raise ValueError(f"instance {params.name!r}: " + "; ".join(problems))


def advert_due_after(now: float, advert_int: int) -> float:
    """When a master's next periodic advert is due after one sent at `now`: the first
    multiple of advert_int (centiseconds) on the clock after `now`, so never more than one
    Advertisement_Interval later.

    Every instance of the same interval keeps this one schedule, whenever it took over:
    a master's adverts go out together, one wake-up for all of them, and a backup hears
    them in one burst (keepalived's instances line up only when they start together).
    An instance joining the schedule sends one advert early, never one late. Computed as
    an integer product and one correctly rounded division, not by adding intervals, so
    equal intervals give the same float however long the run.
    """
    k = int(now * _CENTISECONDS // advert_int) + 1
    due = k * advert_int / _CENTISECONDS
    while due <= now:  # the product above may round down to `now` itself
        k += 1
        due = k * advert_int / _CENTISECONDS
    return due


class Instance:
    """One VRRP virtual router as seen by this host: RFC 5798 §6.4 plus keepalived's extras."""

    def __init__(self, params: InstanceParams) -> None:
        _check_params(params)
        self._params = params
        self._set_addresses(params)
        self._state = State.INITIALIZE
        self._started = False
        self._faults: set[str] = set()
        self._held = False  # the operator's step-down
        self._gated = False  # a sync-group member: takes over only when promoted
        self._wants_master: Reason | None = None  # gated and due to take over, with why
        self._primary: IPAddress = params.primary_address
        self._effective_priority = params.priority
        self._master_adver_interval = params.advert_int  # centiseconds
        # Deadlines (float seconds) or None; which ones may be set depends on the state.
        self._adver_timer: float | None = None  # MASTER
        self._kept_advert: (
            tuple[int, InstanceParams, tuple[IPAddress, ...], Advertisement] | None
        ) = None
        self._master_down_timer: float | None = None  # BACKUP
        self._preempt_timer: float | None = None  # BACKUP, preempt_delay hold
        self._garp_delayed_timer: float | None = None  # MASTER
        self._garp_refresh_timer: float | None = None  # MASTER
        # Why the Master_Down_Timer will have fired, decided when it was (re)set.
        self._master_down_reason = Reason.MASTER_DOWN
        # The priority of the master a backup last heard (for the preempt_delay hold).
        self._heard_priority: int | None = None
        # When a master last answered a lower-priority master (the answer rate limit).
        self._last_answer: float | None = None
        self._master_since = float("-inf")  # when this instance last became MASTER
        self._suppressed_answers = 0
        self._intervals_missed = 0

    # ---- read-only view ------------------------------------------------------

    @property
    def params(self) -> InstanceParams:
        return self._params

    @property
    def advert_addresses(self) -> tuple[IPAddress, ...]:
        """The addresses our adverts carry (`InstanceParams.advert_addresses`, kept)."""
        return self._advert_addresses

    @property
    def state(self) -> State:
        return self._state

    @property
    def faults(self) -> tuple[str, ...]:
        """What holds the instance in FAULT (empty: nothing), sorted."""
        return tuple(sorted(self._faults))

    @property
    def held(self) -> bool:
        """Whether the operator's step-down holds this instance in BACKUP."""
        return self._held

    @property
    def gated(self) -> bool:
        """Whether this is a sync-group member (it takes over only when promoted)."""
        return self._gated

    @property
    def wants_master(self) -> bool:
        """A gated BACKUP whose takeover is due, waiting for its sync group."""
        return self._wants_master is not None and self._state is State.BACKUP

    @property
    def primary_address(self) -> IPAddress:
        """Our address on the interface: the advert source and the tie-break key."""
        return self._primary

    @property
    def effective_priority(self) -> int:
        return self._effective_priority

    @property
    def accept_mode(self) -> bool:
        """RFC 5798 §6.1 Accept_Mode: whether the adapter lets a master accept packets to VIPs."""
        return self._params.accept_mode

    @property
    def preempt_mode(self) -> bool:
        """RFC 5798 §6.1 Preempt_Mode as it applies: the owner always preempts."""
        return self._params.preempt or self._is_owner

    @property
    def suppressed_answers(self) -> int:
        """How many lower-priority adverts a master left unanswered (rate limit); only grows."""
        return self._suppressed_answers

    @property
    def intervals_missed(self) -> int:
        """How many Advertisement_Intervals a master let pass without an advert because its
        timer fired that late (a stall); only grows."""
        return self._intervals_missed

    @property
    def master_adver_interval(self) -> int:
        """RFC 5798 §6.1 Master_Adver_Interval, centiseconds (v2: always our own interval)."""
        return self._master_adver_interval

    @property
    def skew_time(self) -> float:
        """Seconds. v3: RFC 5798 §6.1 ((256 - Priority) * Master_Adver_Interval) / 256.

        v2: RFC 3768 §6.1 (256 - Priority) / 256 seconds. One division of integers, so
        the result is the correctly rounded float of the exact value.
        """
        weight = 256 - self._effective_priority
        if self._params.version == 3:
            return (weight * self._master_adver_interval) / (256 * _CENTISECONDS)
        return weight / 256

    @property
    def master_down_interval(self) -> float:
        """Seconds: 3 * Master_Adver_Interval + Skew_Time (RFC 5798 §6.1; RFC 3768 §6.1 uses
        our own Advertisement_Interval), as one correctly rounded division."""
        weight = 256 - self._effective_priority
        if self._params.version == 3:
            return ((3 * 256 + weight) * self._master_adver_interval) / (256 * _CENTISECONDS)
        return (3 * 256 * self._params.advert_int + weight * _CENTISECONDS) / (256 * _CENTISECONDS)

    @property
    def _advertisement_interval(self) -> float:
        return self._params.advert_int / _CENTISECONDS

    @property
    def _is_owner(self) -> bool:
        return self._effective_priority == OWNER_PRIORITY

    @property
    def _starts_as_master(self) -> bool:
        """§6.4.1's owner rule with keepalived's start hint: an owner configured with
        `state BACKUP` listens for Master_Down_Interval first, as any backup does."""
        return self._is_owner and self._params.initial_state is not State.BACKUP

    def get_timer(self) -> float | None:
        deadlines = [
            t
            for t in (
                self._adver_timer,
                self._master_down_timer,
                self._preempt_timer,
                self._garp_delayed_timer,
                self._garp_refresh_timer,
            )
            if t is not None
        ]
        return min(deadlines) if deadlines else None

    # ---- events from the daemon ----------------------------------------------

    def start(self, now: float, *, resume: bool = False) -> list[Action]:
        """RFC 5798 §6.4.1: the Startup event.

        `resume`: this instance was MASTER in a VRRP process that died a moment ago and
        its VIPs are still on the interface; it goes straight back to MASTER (advert,
        VIPs, GARP: all idempotent) instead of dropping them and waiting a whole
        Master_Down_Interval, which would be a failover for nothing.
        """
        if self._state is not State.INITIALIZE:
            raise InstanceUsageError(f"{self._params.name}: start() while {self._state.name}")
        self._started = True
        if self._faults:
            return self._change_state(State.FAULT, self._fault_reason(), now)
        if resume and not self._held:
            return self._change_state(State.MASTER, Reason.RESUME, now)
        if self._starts_as_master and not self._held:
            # §6.4.1: the address owner goes straight to Master.
            return self._owner_takes_over(Reason.ADDRESS_OWNER, Reason.STARTUP, now)
        return self._change_state(State.BACKUP, Reason.STARTUP, now)

    def stop(self, now: float) -> list[Action]:
        """RFC 5798 §6.4.2 (350) / §6.4.3 (660): the Shutdown event. Stopping twice is harmless."""
        if self._state is State.INITIALIZE:
            return []
        return self._change_state(State.INITIALIZE, Reason.SHUTDOWN, now)

    def set_fault(self, fault: str, active: bool, now: float) -> list[Action]:
        """A fault (`link_down`, `no_such_interface`, `no_source_address`, ...) began or
        ended. Before start() this is remembered: start() then goes to FAULT."""
        had = bool(self._faults)
        if active:
            self._faults.add(fault)
        else:
            self._faults.discard(fault)
        if self._state is State.INITIALIZE:
            return []
        if self._faults and not had:
            return self._change_state(State.FAULT, self._fault_reason(), now)
        if had and not self._faults and self._state is State.FAULT:
            # Like §6.4.1: the owner becomes Master at once, anyone else listens first.
            reason = _cleared_reason(fault)
            if self._starts_as_master and not self._held:
                return self._owner_takes_over(reason, reason, now)
            return self._change_state(State.BACKUP, reason, now)
        return []

    def _fault_reason(self) -> Reason:
        for fault, reason in _FAULT_REASONS.items():
            if fault in self._faults:
                return reason
        if any(f.startswith(TRACK_FAULT_PREFIX) for f in self._faults):
            return Reason.TRACKED_DOWN
        if SYNC_GROUP_FAULT in self._faults:
            return Reason.SYNC_GROUP
        return Reason.INTERFACE_DOWN

    # ---- sync groups (vrrp/syncgroup.py decides; these carry it out) ------------------

    def set_gated(self, gated: bool) -> None:
        """Make this instance a sync-group member (or no longer one)."""
        self._gated = gated
        if not gated:
            self._wants_master = None

    def promote(self, now: float) -> list[Action]:
        """The sync group lets a member that wants MASTER take over."""
        reason = self._wants_master
        if reason is None or self._state is not State.BACKUP or self._held:
            return []
        return self._change_state(State.MASTER, reason, now)

    def sync_to_backup(self, now: float) -> list[Action]:
        """The sync group steps a MASTER member down (another member stepped down)."""
        if self._state is not State.MASTER:
            return []
        return self._change_state(State.BACKUP, Reason.SYNC_GROUP, now)

    def _take_over(self, reason: Reason, now: float) -> list[Action]:
        """A BACKUP's takeover is due: MASTER now, or, in a sync group, wanting it."""
        if not self._gated:
            return self._change_state(State.MASTER, reason, now)
        self._wants_master = reason
        self._preempt_timer = None
        # keepalived (vrrp_sync_can_goto_master) keeps listening meanwhile: a master heard
        # before the group is ready is followed again, and the want lapses.
        self._master_down_timer = now + self.master_down_interval
        self._master_down_reason = Reason.MASTER_DOWN
        return []

    def _owner_takes_over(self, reason: Reason, backup_reason: Reason, now: float) -> list[Action]:
        if not self._gated:
            return self._change_state(State.MASTER, reason, now)
        actions: list[Action] = []
        if self._state is not State.BACKUP:
            actions = self._change_state(State.BACKUP, backup_reason, now)
        actions.extend(self._take_over(reason, now))
        return actions

    def interface_down(self, now: float) -> list[Action]:
        """keepalived's FAULT: without the link we can neither hear nor be heard."""
        return self.set_fault(LINK_DOWN, True, now)

    def interface_up(self, now: float) -> list[Action]:
        return self.set_fault(LINK_DOWN, False, now)

    def set_primary_address(self, address: IPAddress) -> None:
        """Our address on the interface changed (the adapter follows it live)."""
        self._primary = address

    def set_hold(self, held: bool, now: float) -> list[Action]:
        """The operator's step-down (held) or its release."""
        if held == self._held:
            return []
        self._held = held
        if held:
            if self._state is State.MASTER:
                return self._change_state(State.BACKUP, Reason.STEP_DOWN, now)
            self._master_down_timer = self._preempt_timer = None
            self._wants_master = None
            return []
        if self._state is not State.BACKUP:
            return []
        if self._is_owner:
            return self._owner_takes_over(Reason.RELEASED, Reason.RELEASED, now)
        # Listen for a whole Master_Down_Interval, as at start-up, before taking over.
        self._master_down_timer = now + self.master_down_interval
        self._master_down_reason = Reason.MASTER_DOWN
        return []

    def update(self, params: InstanceParams, now: float) -> list[Action]:
        """New parameters for this same virtual router (a reload), applied in place.

        The caller keeps the identity (VRID, family); everything else may change.
        """
        _check_params(params)
        if params.vrid != self._params.vrid or (
            params.primary_address.version != self._params.primary_address.version
        ):
            raise InstanceUsageError(f"{self._params.name}: update() cannot change VRID or family")
        old = self._params
        old_advert = self._advertisement(self._effective_priority)
        old_vips = set(old.held_addresses)
        offset = self._effective_priority - old.priority
        self._params = params
        self._set_addresses(params)
        self._effective_priority = self._clamp(params.priority + offset)
        if self._state is State.MASTER:
            actions: list[Action] = []
            new_vips = set(params.held_addresses)
            removed = tuple(v for v in old.held_addresses if v not in new_vips)
            added = tuple(v for v in params.held_addresses if v not in old_vips)
            if removed:
                actions.append(RemoveAddresses(removed))
            if added:
                actions.append(AddAddresses(added))
                if params.garp.master_repeat > 0:
                    actions.append(
                        SendGratuitousArp(tuple(v.ip for v in added), params.garp.master_repeat)
                    )
            self._master_adver_interval = params.advert_int
            if self._advertisement(self._effective_priority) != old_advert:
                # Tell the backups now: a lower priority lets a higher backup preempt,
                # a new interval re-times their Master_Down_Timer.
                actions.extend(self._send_advertisement(now))
            if params.garp.master_refresh != old.garp.master_refresh:
                refresh = params.garp.master_refresh
                self._garp_refresh_timer = now + refresh if refresh > 0 else None
            return actions
        if self._state is State.BACKUP:
            if self._preempt_timer is not None and not self._would_preempt_heard_master():
                self._preempt_timer = None
            if self._starts_as_master and not self._held and self._wants_master is None:
                # A new address owner (priority 255) takes over at once (§6.4.1).
                return self._owner_takes_over(Reason.ADDRESS_OWNER, Reason.ADDRESS_OWNER, now)
        return []

    def _set_addresses(self, params: InstanceParams) -> None:
        # RFC 5798 §5.2.9: an advert lists the virtual addresses of its own family only,
        # and at most max_advert_addresses of them (255 fit the Count field). The rest,
        # and keepalived's excluded VIPs, are held and announced but not advertised.
        self._advert_addresses: tuple[IPAddress, ...] = params.advert_addresses
        self._held_addresses: tuple[IPInterface, ...] = params.held_addresses
        self._vip_addresses: tuple[IPAddress, ...] = tuple(a.ip for a in self._held_addresses)

    def _clamp(self, priority: int) -> int:
        if self._params.priority == OWNER_PRIORITY:
            return OWNER_PRIORITY
        return max(1, min(OWNER_PRIORITY - 1, priority))

    def set_priority(self, priority: int, now: float) -> list[Action]:
        """Set the effective priority (base + tracking weights), clamped as keepalived does.

        Only the address owner may advertise 255 (RFC 5798 §5.2.4) and 0 means
        "resigning", so anyone else is held to 1..254; the owner stays at 255.
        """
        new = self._clamp(priority)
        if new == self._effective_priority:
            return []
        self._effective_priority = new
        if self._state is State.MASTER:
            # Tell the backups now rather than an Advertisement_Interval later: a
            # master whose priority recovered stops a backup that was about to
            # preempt it (its adverts were being discarded), and a backup that now
            # outranks us starts its preempt clock sooner. RFC 5798 does not
            # forbid an extra advert; the Adver_Timer restarts from it.
            return self._send_advertisement(now)
        if (
            self._state is State.BACKUP
            and self._preempt_timer is not None
            and not self._would_preempt_heard_master()
        ):
            self._preempt_timer = None
        return []

    def receive(self, adv: Advertisement, source: IPAddress, now: float) -> list[Action]:
        """An advertisement for this virtual router, already validated by the adapter."""
        if self._state is State.INITIALIZE:
            if not self._started:
                raise InstanceUsageError(f"{self._params.name}: receive() before start()")
            return []  # in flight when we stopped
        if self._state is State.FAULT:
            return []
        if adv.version != self._params.version or adv.vrid != self._params.vrid:
            return []
        if source == self._primary:
            # Our own advert looped back, or someone using our address: neither is a
            # master we could follow or fight, and the tie-break cannot order them.
            return []
        if self._state is State.BACKUP:
            return self._backup_receive(adv, source, now)
        return self._master_receive(adv, source, now)

    def handle_timer(self, now: float) -> list[Action]:
        """Fire every deadline that is due at `now`; one that is not yet due does nothing."""
        if self._state is State.BACKUP:
            return self._backup_timers(now)
        if self._state is State.MASTER:
            return self._master_timers(now)
        return []

    # ---- BACKUP: RFC 5798 §6.4.2 ---------------------------------------------

    def _backup_receive(self, adv: Advertisement, source: IPAddress, now: float) -> list[Action]:
        if adv.priority == 0:
            # (425)-(430): the master resigned; take over after Skew_Time only, so the
            # highest-priority backup (smallest skew) wins.
            self._master_down_timer = now + self.skew_time
            self._master_down_reason = Reason.PRIORITY_ZERO
            self._preempt_timer = None
            self._heard_priority = None
            return []
        self._heard_priority = adv.priority
        if self._wins_simultaneous_takeover(adv.priority, source, now):
            # Our Master_Down_Timer runs out at this very instant, as the other's did
            # a moment ago: two masters at once, which §6.4.3 (735) settles by the
            # higher primary address. We win it, so we do not follow: our timer fires
            # now and the other steps down on our first advert.
            return []
        if not self._would_preempt(adv.priority):
            # (440)-(460): follow this master.
            self._preempt_timer = None
            self._accept_master(adv, now)
            return []
        if self._params.preempt_delay > 0 and not self._is_owner:
            # keepalived's preempt_delay (module docstring): postpone the takeover we
            # would have made when the pending Master_Down_Timer ran out, and follow
            # the lower master in the meantime.
            if self._preempt_timer is None:
                pending = self._master_down_timer  # always armed in BACKUP
                if pending is None:
                    pending = now + self.master_down_interval
                self._preempt_timer = pending + self._params.preempt_delay
            self._accept_master(adv, now)
            return []
        # (465)-(470): discard; the Master_Down_Timer runs out and we preempt.
        self._master_down_reason = Reason.PREEMPT
        return []

    def _accept_master(self, adv: Advertisement, now: float) -> None:
        self._wants_master = None  # following a master again (sync group: the want lapses)
        if self._params.version == 3 and adv.max_advert_int > 0:
            # (450)-(455): v3 backups time the master by its interval, not ours.
            # RFC 3768 has no such step: v2 intervals must match (the adapter checks).
            self._master_adver_interval = adv.max_advert_int
        self._master_down_timer = now + self.master_down_interval  # (460)
        self._master_down_reason = Reason.MASTER_DOWN

    def _would_preempt(self, priority: int) -> bool:
        """Whether Preempt_Mode lets us take over from a master advertising `priority`.

        RFC 5798 §6.4.2 (440)-(460): a backup follows a master whose priority is
        greater than or equal to its own (keepalived: `hd->priority >=
        effective_priority`; FRR's vrrpd alike). The primary-address tie-break
        of §6.4.3 (735) is between two masters only, so a backup with the
        higher address does not take over from a live master of equal
        priority: operators give both directors one priority precisely so
        that a returning director leaves the VIPs where they are.
        """
        # Stepped down by the operator: follow whoever is master, never take over.
        return not self._held and self.preempt_mode and priority < self._effective_priority

    def _wins_simultaneous_takeover(self, priority: int, source: IPAddress, now: float) -> bool:
        if priority != self._effective_priority:
            return False
        if self._master_down_timer is None or now < self._master_down_timer:
            return False
        ours = self._primary
        return source.version == ours.version and int(source) < int(ours)

    def _would_preempt_heard_master(self) -> bool:
        if self._heard_priority is None:
            return False
        return self._would_preempt(self._heard_priority)

    def _backup_timers(self, now: float) -> list[Action]:
        if self._held:
            # Stepped down: never take over. Timers that adverts armed are let go as
            # they come due (a BACKUP that follows nobody simply waits).
            if self._master_down_timer is not None and now >= self._master_down_timer:
                self._master_down_timer = None
            if self._preempt_timer is not None and now >= self._preempt_timer:
                self._preempt_timer = None
            return []
        if self._master_down_timer is not None and now >= self._master_down_timer:
            # (365)-(410): Master_Down_Timer fired.
            return self._take_over(self._master_down_reason, now)
        if self._preempt_timer is not None and now >= self._preempt_timer:
            self._preempt_timer = None
            if self._would_preempt_heard_master():
                return self._take_over(Reason.PREEMPT, now)
        return []

    # ---- MASTER: RFC 5798 §6.4.3 ---------------------------------------------

    def _master_receive(self, adv: Advertisement, source: IPAddress, now: float) -> list[Action]:
        if adv.priority == 0:
            # (705)-(715): another master resigned; answer at once so backups that
            # started their Skew_Time countdown hear that a master is still here.
            actions = self._send_advertisement(now)
            # It was master while we were: a split brain healing, where its sync group
            # resigned this instance on another member's step-down. Hosts may have
            # learnt its MAC for our VIPs, so re-announce them, as for a lower master
            # below (and as rarely: once per interval, not right after our takeover).
            if now >= self._master_since + self._advertisement_interval and (
                self._last_answer is None or now >= self._last_answer + self._advertisement_interval
            ):
                self._last_answer = now
                actions.extend(self._garp(self._params.garp.lower_prio_repeat))
            return actions
        ours = self._primary
        if adv.priority > self._effective_priority or (
            adv.priority == self._effective_priority
            and source.version == ours.version
            and int(source) > int(ours)
        ):
            # (725)-(765): step down.
            if self._params.version == 3 and adv.max_advert_int > 0:
                self._master_adver_interval = adv.max_advert_int  # (745)
            # One last advert of ours, at our (lower) priority, after stepping down: the
            # RFC sends nothing here. When a split brain heals, the higher master's
            # advert may reach us before ours reaches it, so it never hears a lower
            # master and never re-announces the VIPs, and hosts that learnt our MAC for
            # them (a NAT site's real servers for the gateway VIP: every packet they get
            # confirms the entry) keep sending to us. Hearing this advert it answers with
            # its GARP burst (below: garp_lower_prio_repeat). RFC 5798 routers discard a
            # lower-priority advert, and a backup it reaches follows the higher master's
            # next advert; one frame per step-down.
            actions = self._change_state(State.BACKUP, Reason.HIGHER_PRIORITY, now)
            actions.append(SendAdvertisement(self._advertisement(self._effective_priority)))
            self._heard_priority = adv.priority
            return actions
        # (770)-(775) say discard. keepalived instead answers a lower (split-brain)
        # master at once so it steps down now, and re-announces the VIPs, because
        # switches may have learnt the other master's MAC for them. Once per
        # Advertisement_Interval is enough for that: a real lower master that did
        # not step down on our answer hears our next periodic advert anyway.
        if self._last_answer is not None and now < self._last_answer + self._advertisement_interval:
            self._suppressed_answers += 1
            return []
        self._last_answer = now
        actions = self._send_advertisement(now)
        if now >= self._master_since + self._advertisement_interval:
            # Not when we took over within the last interval: our takeover burst has
            # just told everyone (a preempted master's parting advert lands here).
            actions.extend(self._garp(self._params.garp.lower_prio_repeat))
        return actions

    def _master_timers(self, now: float) -> list[Action]:
        actions: list[Action] = []
        if self._adver_timer is not None and now >= self._adver_timer:
            # (680)-(690): an advert every Advertisement_Interval. The next one is due at
            # the next multiple of the interval (advert_due_after), not one interval after
            # this one went out: a timer that fires a little late each time (it always
            # does) must not slow the cadence down for good (10 ms adverts timed from
            # their sending came out 7.5% slow), and every instance of this interval
            # advertises at the same moments. After a stall of a whole interval or more
            # the next one is the next due, without a burst of catch-up adverts. The
            # RFC's other resets (takeover, answering a lower priority) restart the
            # timer from now; the periodic advert after them joins the schedule again.
            # The deadlines that passed before `now`, after the one this advert is for,
            # had none of their own: counted, since a backup sees the same gap.
            # (1e-9: a stall of exactly whole intervals is not lost to float rounding.)
            missed = int((now - self._adver_timer) / self._advertisement_interval + 1e-9)
            if missed > 0:
                self._intervals_missed += missed
            actions.extend(self._send_advertisement(now))
            self._adver_timer = advert_due_after(now, self._params.advert_int)
        garp = self._params.garp
        if self._garp_delayed_timer is not None and now >= self._garp_delayed_timer:
            self._garp_delayed_timer = None
            actions.extend(self._garp(garp.master_repeat))
        if self._garp_refresh_timer is not None and now >= self._garp_refresh_timer:
            self._garp_refresh_timer = now + garp.master_refresh
            actions.extend(self._garp(garp.master_refresh_repeat))
        return actions

    def _advertisement(self, priority: int) -> Advertisement:
        # A master sends the same advert every interval: it is built again only when
        # what it says may have changed (the priority; the params or the addresses,
        # which are replaced, never changed in place), so the adapter can tell a repeat
        # by identity and send the bytes it encoded last time.
        kept = self._kept_advert
        if (
            kept is not None
            and kept[0] == priority
            and kept[1] is self._params
            and kept[2] is self._advert_addresses
        ):
            return kept[3]
        v2 = self._params.version == 2
        advert = Advertisement(
            version=self._params.version,
            vrid=self._params.vrid,
            priority=priority,
            max_advert_int=self._params.advert_int,
            addresses=self._advert_addresses,
            auth_type=self._params.auth_type if v2 else AuthType.NONE,
            auth_data=self._params.auth_data if v2 else b"",
        )
        self._kept_advert = (priority, self._params, self._advert_addresses, advert)
        return advert

    def _send_advertisement(self, now: float) -> list[Action]:
        self._adver_timer = now + self._advertisement_interval
        return [SendAdvertisement(self._advertisement(self._effective_priority))]

    def _garp(self, count: int) -> list[Action]:
        if count <= 0 or not self._vip_addresses:
            return []
        return [SendGratuitousArp(self._vip_addresses, count)]

    # ---- the one place where the state changes -------------------------------

    def _change_state(self, new: State, reason: Reason, now: float) -> list[Action]:
        """Leave the current state and enter `new`; StateChanged always comes first.

        StateChanged leads so that the adapter logs, counts and notifies in the
        order things happen, and so that `state` already reads `new` while the
        adapter performs the remaining actions.
        """
        old = self._state
        actions: list[Action] = [StateChanged(old, new, reason)]
        self._adver_timer = self._master_down_timer = self._preempt_timer = None
        self._garp_delayed_timer = self._garp_refresh_timer = None
        self._heard_priority = None
        self._last_answer = None
        self._wants_master = None
        self._state = new

        if old is State.MASTER:
            resigns = new is State.INITIALIZE or reason in (Reason.STEP_DOWN, Reason.SYNC_GROUP)
            if new is State.FAULT and not self._faults & _LINK_FAULTS:
                # keepalived (vrrp_state_leave_master): a master entering FAULT sends
                # priority 0. Only when its link can carry it: tracking or the sync group
                # put it there, not the interface.
                resigns = True
            if resigns:
                # §6.4.3 (660)-(670): priority 0 lets the backups take over after
                # Skew_Time instead of Master_Down_Interval. Sent before the VIPs go
                # so that the gap with nobody holding them is as short as possible.
                actions.append(SendAdvertisement(self._advertisement(0)))
            # On a FAULT of the interface no advert could leave; stepping down to a
            # higher priority, the new master already speaks. A sync group's step-down
            # resigns (the other members' peers take over after Skew_Time rather than
            # Master_Down_Interval, where keepalived stops advertising silently).
            # Routes and rules go before the VIPs they may use (keepalived: rules, routes,
            # then VIPs).
            actions.append(ApplyRoutes(False))
            actions.append(RemoveAddresses(self._held_addresses))

        if new is State.MASTER:
            self._master_since = now
            # Our own interval is the master's interval now (v3 backups learn it from us).
            self._master_adver_interval = self._params.advert_int
            # RFC 5798 §6.4.2 (370)-(395) order, as keepalived does: the advert
            # first, so the old master (split brain) and the other backups hear us
            # as soon as possible; then the VIPs; then GARP, which moves the
            # switches' traffic to us and so must follow the addresses. The advert
            # itself attracts no traffic, so sending it before the netlink address
            # add (a few ms) costs nothing and shortens the failover.
            actions.extend(self._send_advertisement(now))
            actions.append(AddAddresses(self._held_addresses))
            # Routes may name a VIP as source or reach their gateway through one, and the
            # traffic GARP draws may need them (keepalived: VIPs, routes, rules, GARP).
            actions.append(ApplyRoutes(True))
            garp = self._params.garp
            actions.extend(self._garp(garp.master_repeat))
            if garp.master_delay > 0:
                self._garp_delayed_timer = now + garp.master_delay
            if garp.master_refresh > 0:
                self._garp_refresh_timer = now + garp.master_refresh
        elif new is State.BACKUP:
            if old is not State.MASTER:
                # §6.4.1: start from our own interval until a master tells us its
                # own. On step-down the caller has already learnt it (§6.4.3 (745)).
                self._master_adver_interval = self._params.advert_int
            if not self._held:
                self._master_down_timer = now + self.master_down_interval  # §6.4.1 / (760)
            self._master_down_reason = Reason.MASTER_DOWN
        return actions


LINK_DOWN = "link_down"
NO_SUCH_INTERFACE = "no_such_interface"
NO_SOURCE_ADDRESS = "no_source_address"
SYNC_GROUP_FAULT = "sync_group"  # held in FAULT by its sync group
TRACK_FAULT_PREFIX = "track_"  # a tracked item down: `track_script:chk_web` (vrrp/track.py)
# Faults with which no advert can leave the interface.
_LINK_FAULTS = frozenset({LINK_DOWN, NO_SUCH_INTERFACE, NO_SOURCE_ADDRESS})
# The reason a state change into FAULT reports, most fundamental first.
_FAULT_REASONS = {
    NO_SUCH_INTERFACE: Reason.NO_SUCH_INTERFACE,
    LINK_DOWN: Reason.INTERFACE_DOWN,
    NO_SOURCE_ADDRESS: Reason.NO_SOURCE_ADDRESS,
}
# ... and out of it, by the fault that cleared last.
_CLEARED = {
    NO_SUCH_INTERFACE: Reason.INTERFACE_UP,
    LINK_DOWN: Reason.INTERFACE_UP,
    NO_SOURCE_ADDRESS: Reason.SOURCE_ADDRESS,
    SYNC_GROUP_FAULT: Reason.SYNC_GROUP,
}


def _cleared_reason(fault: str) -> Reason:
    if fault.startswith(TRACK_FAULT_PREFIX):
        return Reason.TRACKED_UP
    return _CLEARED.get(fault, Reason.INTERFACE_UP)
