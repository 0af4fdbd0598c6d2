"""Rise/fall state of health checks as a pure reducer, and the real-server verdict built on it.

One `CheckState` per (real server, check). `check_result(params, state, result, now)` folds one
probe attempt into it and says when the next attempt is due. A `RealServerHealth` holds the
check states of one real server; `apply_result` is the one place where a real server changes
state, and the only producer of `RealServerUp` / `RealServerDown` / `RealServerWeight` events.

keepalived's semantics, which this follows (keepalived/check/check_*.c, ipwrapper.c):

- `retry`: when a check of an alive server (or a check that has never run) fails, it is tried
  again `retry` more times, each after `delay_before_retry`, before the failure counts. A check
  that is already down is not retried: its next attempt comes after `delay_loop`.
- `alpha`: the check starts DOWN and must succeed before the server is used; without alpha it
  starts UP (keepalived adds the server at start-up and lets the first failure remove it).
- `omega`: on shutdown, run the down notifiers; `shutdown_events` produces them when the
  daemon asks.
- `rise` / `fall` (our addition, as in keepalived's vrrp_script): the number of consecutive
  counted successes to go up and counted failures to go down. rise=1 fall=1 is keepalived's
  behaviour for real-server checkers, where `retry` does the damping.
- A real server is up when every one of its checks is up (keepalived's num_failed_checkers).
- Dynamic weights (script `dynamic`, file): each check keeps the last weight it reported on a
  success (a success with no weight means "the configured weight"). The effective weight is the
  MINIMUM over the checks: a server is as strong as its weakest signal, and the result does not
  depend on which check happened to report last (keepalived lets the last report win, which
  makes the weight depend on timing when two checks report weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from healthcheck.types import ProbeResult

__all__ = [
    "CheckParams",
    "CheckState",
    "HealthEvent",
    "RealServerDown",
    "RealServerHealth",
    "RealServerId",
    "RealServerUp",
    "RealServerWeight",
    "apply_result",
    "check_result",
    "initial_check_state",
    "initial_health",
    "reconfigure",
    "shutdown_events",
]


@dataclass(frozen=True, slots=True)
class RealServerId:
    """A real server inside one virtual service (the same address:port in two virtual
    services is checked separately, as keepalived does)."""

    virtual_service: str
    address: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.virtual_service}/{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class CheckParams:
    """The timing and damping parameters of one check (the keepalived keywords)."""

    delay_loop: float = 60.0
    retry: int = 1
    delay_before_retry: float = 1.0
    rise: int = 1
    fall: int = 1
    alpha: bool = False
    warmup: float | None = None  # None: up to delay_loop (keepalived's default); 0 disables
    timeout: float = 5.0  # the probe's own timeout; the runner adds a guard above it
    name: str = "check"

    def __post_init__(self) -> None:
        if self.delay_loop <= 0:
            raise ValueError(f"delay_loop must be > 0, got {self.delay_loop}")
        if self.retry < 0:
            raise ValueError(f"retry must be >= 0, got {self.retry}")
        if self.delay_before_retry < 0:
            raise ValueError(f"delay_before_retry must be >= 0, got {self.delay_before_retry}")
        if self.rise < 1 or self.fall < 1:
            raise ValueError(f"rise and fall must be >= 1, got {self.rise}/{self.fall}")
        if self.warmup is not None and self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")

    @classmethod
    def from_check(
        cls, check: Any, *, alpha: bool | None = None, name: str | None = None
    ) -> CheckParams:
        """Read the common keywords from a check config model (any object with the
        attributes; missing ones take keepalived's defaults). `alpha` overrides the model's
        (keepalived lets the virtual server set it for all of its checkers)."""
        defaults = cls()

        def get(attr: str, default: Any) -> Any:
            value = getattr(check, attr, None)
            return default if value is None else value

        timeout = getattr(check, "connect_timeout", None)
        if timeout is None:
            timeout = getattr(check, "timeout", None)
        return cls(
            delay_loop=float(get("delay_loop", defaults.delay_loop)),
            retry=int(get("retry", defaults.retry)),
            delay_before_retry=float(get("delay_before_retry", defaults.delay_before_retry)),
            rise=int(get("rise", defaults.rise)),
            fall=int(get("fall", defaults.fall)),
            alpha=bool(get("alpha", defaults.alpha)) if alpha is None else alpha,
            warmup=_warmup_of(getattr(check, "warmup", None)),
            # Several urls (HTTP_GET url blocks) are one GET each, each within connect_timeout.
            timeout=(float(timeout) if timeout is not None else defaults.timeout)
            * max(1, len(getattr(check, "urls", None) or ())),
            name=name if name is not None else str(get("type", type(check).__name__.lower())),
        )


def _warmup_of(value: Any) -> float | None:
    # healthcheck.config has `warmup: bool` (true: spread over delay_loop, keepalived's
    # default); keepalived itself takes a time, which a float here also accepts.
    if value is None or value is True:
        return None
    if value is False:
        return 0.0
    return float(value)


@dataclass(frozen=True, slots=True)
class CheckState:
    """Where one check stands. `next_due` is when the scheduler should run it next."""

    up: bool
    has_run: bool
    retry_it: int  # retries already spent on the failure being retried
    successes: int  # consecutive counted successes while down (towards rise)
    failures: int  # consecutive counted failures while up (towards fall)
    weight: int | None  # last weight reported on a success; None = the configured weight
    next_due: float
    last_reason: str


def initial_check_state(params: CheckParams, first_due: float) -> CheckState:
    """A check before its first attempt: DOWN under alpha, UP otherwise (keepalived)."""
    return CheckState(
        up=not params.alpha,
        has_run=False,
        retry_it=0,
        successes=0,
        failures=0,
        weight=None,
        next_due=first_due,
        last_reason="alpha" if params.alpha else "init",
    )


def check_result(
    params: CheckParams, state: CheckState, result: ProbeResult, now: float
) -> CheckState:
    """Fold one probe attempt into the check's state; `next_due` says when to try again."""
    # Built positionally, in field order (up, has_run, retry_it, successes, failures, weight,
    # next_due, last_reason), rather than with dataclasses.replace() or keywords: this runs
    # for every attempt (thousands a second); replace() costs several times more and
    # keywords a third more.
    if result.ok:
        # keepalived resets retry_it on every success.
        if state.up:
            return CheckState(
                True, True, 0, 0, 0, result.weight, now + params.delay_loop, result.reason
            )
        successes = state.successes + 1
        risen = successes >= params.rise
        return CheckState(
            risen,
            True,
            0,
            0 if risen else successes,
            0,
            result.weight,
            now + params.delay_loop,
            result.reason,
        )
    # A failure is retried only while the check is up or has never run (keepalived retries
    # "if check of an alive server fails"); a down check waits for the next delay_loop.
    if (state.up or not state.has_run) and state.retry_it < params.retry:
        return CheckState(
            state.up,
            True,
            state.retry_it + 1,
            state.successes,
            state.failures,
            state.weight,
            now + params.delay_before_retry,
            result.reason,
        )
    if state.up:
        failures = state.failures + 1
        fallen = failures >= params.fall
        return CheckState(
            not fallen,
            True,
            0,
            0,
            0 if fallen else failures,
            state.weight,
            now + params.delay_loop,
            result.reason,
        )
    return CheckState(False, True, 0, 0, 0, state.weight, now + params.delay_loop, result.reason)


# --- the real-server verdict -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RealServerUp:
    server: RealServerId
    weight: int
    reason: str


@dataclass(frozen=True, slots=True)
class RealServerDown:
    server: RealServerId
    reason: str


@dataclass(frozen=True, slots=True)
class RealServerWeight:
    """The effective weight changed while the server stayed in the same up/down state."""

    server: RealServerId
    old: int
    new: int
    reason: str


HealthEvent = RealServerUp | RealServerDown | RealServerWeight

_NO_EVENTS: tuple[HealthEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class RealServerHealth:
    """The checks of one real server and the verdict drawn from them."""

    server: RealServerId
    configured_weight: int
    checks: tuple[CheckState, ...]
    up: bool
    weight: int  # effective weight (dynamic weights applied); meaningful while up

    @property
    def dynamic_weight(self) -> int | None:
        """The weight the checks report (the minimum), or None when no check reports one and
        the configured weight applies."""
        reported = [c.weight for c in self.checks if c.weight is not None]
        return max(min(reported), 0) if reported else None


def _verdict(configured_weight: int, checks: Sequence[CheckState]) -> tuple[bool, int]:
    # keepalived: a real server with no checker is always alive.
    up = all(c.up for c in checks)
    reported = [c.weight for c in checks if c.weight is not None]
    weight = min(reported) if reported else configured_weight
    return up, max(weight, 0)


def initial_health(
    server: RealServerId,
    configured_weight: int,
    params: Sequence[CheckParams],
    first_due: Sequence[float],
) -> RealServerHealth:
    """A real server before any check ran. No event: the policy reads `up` directly."""
    if len(params) != len(first_due):
        raise ValueError("one first_due per check")
    checks = tuple(initial_check_state(p, d) for p, d in zip(params, first_due, strict=True))
    up, weight = _verdict(configured_weight, checks)
    return RealServerHealth(server, configured_weight, checks, up, weight)


def apply_result(
    health: RealServerHealth,
    index: int,
    params: CheckParams,
    result: ProbeResult,
    now: float,
) -> tuple[RealServerHealth, tuple[HealthEvent, ...]]:
    """Fold one attempt of check `index` into the server; the ONE place that emits
    RealServerUp / RealServerDown / RealServerWeight."""
    old_check = health.checks[index]
    new_check = check_result(params, old_check, result, now)
    if len(health.checks) == 1:
        checks: tuple[CheckState, ...] = (new_check,)
    else:
        checks = (*health.checks[:index], new_check, *health.checks[index + 1 :])
    if new_check.up == old_check.up and new_check.weight == old_check.weight:
        # Nothing the verdict reads changed (the steady state: up stays up, down stays
        # down): no verdict to recompute, no event.
        return RealServerHealth(
            health.server, health.configured_weight, checks, health.up, health.weight
        ), _NO_EVENTS
    up, weight = _verdict(health.configured_weight, checks)
    new_health = RealServerHealth(health.server, health.configured_weight, checks, up, weight)

    events: tuple[HealthEvent, ...] = _NO_EVENTS
    if up != health.up:
        reason = f"{params.name}:{result.reason}"
        events = (
            (RealServerUp(health.server, weight, reason),)
            if up
            else (RealServerDown(health.server, reason),)
        )
    elif weight != health.weight:
        events = (RealServerWeight(health.server, health.weight, weight, f"{params.name}:dynamic"),)
    return new_health, events


def shutdown_events(health: RealServerHealth, *, omega: bool) -> tuple[HealthEvent, ...]:
    """keepalived runs the down notifiers of alive servers on shutdown only in omega mode."""
    if omega and health.up:
        return (RealServerDown(health.server, "shutdown"),)
    return ()


def reconfigure(
    health: RealServerHealth, configured_weight: int, checks: Sequence[CheckState]
) -> tuple[RealServerHealth, tuple[HealthEvent, ...]]:
    """A reload: the same real server with a new configured weight and check list (states
    carried over for unchanged checks, fresh ones for new checks, as keepalived's
    migrate_checkers does). Emits the transition the change causes, reason "reload"."""
    checks = tuple(checks)
    up, weight = _verdict(configured_weight, checks)
    new_health = RealServerHealth(health.server, configured_weight, checks, up, weight)
    events: tuple[HealthEvent, ...] = ()
    if up != health.up:
        events = (
            (RealServerUp(health.server, weight, "reload"),)
            if up
            else (RealServerDown(health.server, "reload"),)
        )
    elif weight != health.weight:
        events = (RealServerWeight(health.server, health.weight, weight, "reload"),)
    return new_health, events
