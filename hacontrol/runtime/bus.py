"""The daemon's one event bus: engines publish typed events, features subscribe.

Everything that happens in the daemon (a VRRP transition, a real server going down, a
reconcile pass, a reload) is published here as a frozen value, and every consumer
(metrics, logs, notify hooks, the read model behind `hacontrol status`) is a subscriber.
An engine never knows who listens, so a new feature is a new subscriber, not an edit to
the engines.

Rules the tests hold the bus to:

- Delivery is synchronous and in publish order, for every subscriber. An event published
  by a subscriber while another is being delivered is queued and delivered after it, so
  no subscriber ever sees B before A when A was published first.
- A subscriber that raises is logged with its name and counted (`errors`), and the event
  still reaches every other subscriber; the publisher never sees the exception.
- Subscribers pick events by class (or tuple of classes); subclasses match, as with
  isinstance.

No asyncio here: the bus is called from the event loop, and subscribers must not block
(they schedule work instead of doing it).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("hacontrol.bus")

Handler = Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class _Subscription:
    name: str
    kinds: tuple[type, ...]
    handler: Handler


class Bus:
    """In-process publish/subscribe with ordered delivery and isolated subscribers."""

    def __init__(self) -> None:
        self._subscriptions: list[_Subscription] = []
        self._queue: deque[object] = deque()
        self._delivering = False
        self.published = 0
        # subscriber name -> exceptions raised by it (exported as a metric)
        self.errors: dict[str, int] = {}

    def subscribe(
        self, kinds: type | tuple[type, ...], handler: Handler, *, name: str | None = None
    ) -> Callable[[], None]:
        """Deliver events of `kinds` to `handler`; returns a function that unsubscribes."""
        kinds_tuple = kinds if isinstance(kinds, tuple) else (kinds,)
        label = name or str(getattr(handler, "__qualname__", None) or repr(handler))
        sub = _Subscription(label, kinds_tuple, handler)
        self._subscriptions.append(sub)
        self.errors.setdefault(label, 0)

        def unsubscribe() -> None:
            if sub in self._subscriptions:
                self._subscriptions.remove(sub)

        return unsubscribe

    def publish(self, event: object) -> None:
        """Deliver `event` to every subscriber that wants it, after any queued before it."""
        self._queue.append(event)
        if self._delivering:
            return  # the outer publish() delivers it, in order
        self._delivering = True
        try:
            while self._queue:
                self._deliver(self._queue.popleft())
        finally:
            self._delivering = False

    def _deliver(self, event: object) -> None:
        self.published += 1
        # A copy: a subscriber may unsubscribe (or subscribe) while we iterate.
        for sub in tuple(self._subscriptions):
            if not isinstance(event, sub.kinds):
                continue
            try:
                sub.handler(event)
            except Exception:
                self.errors[sub.name] = self.errors.get(sub.name, 0) + 1
                log.exception(
                    "bus.subscriber_error subscriber=%s event=%s", sub.name, type(event).__name__
                )
