"""The event bus: ordered delivery, isolated subscribers, selection by class."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from hacontrol.runtime.bus import Bus


@dataclass(frozen=True)
class A:
    n: int


@dataclass(frozen=True)
class B:
    n: int


@dataclass(frozen=True)
class SubA(A):
    pass


def test_delivers_by_class_and_subclass() -> None:
    bus = Bus()
    got_a: list[object] = []
    got_b: list[object] = []
    got_both: list[object] = []
    bus.subscribe(A, got_a.append)
    bus.subscribe(B, got_b.append)
    bus.subscribe((A, B), got_both.append)
    bus.publish(A(1))
    bus.publish(B(2))
    bus.publish(SubA(3))
    bus.publish("not subscribed by anyone")
    assert got_a == [A(1), SubA(3)]
    assert got_b == [B(2)]
    assert got_both == [A(1), B(2), SubA(3)]
    assert bus.published == 4


def test_raising_subscriber_is_counted_and_others_still_get_the_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = Bus()
    before: list[object] = []
    after: list[object] = []

    def broken(event: object) -> None:
        raise RuntimeError("bug in a subscriber")

    bus.subscribe(A, before.append, name="before")
    bus.subscribe(A, broken, name="broken")
    bus.subscribe(A, after.append, name="after")
    bus.publish(A(1))  # must not raise
    bus.publish(A(2))
    assert before == [A(1), A(2)]
    assert after == [A(1), A(2)]
    assert bus.errors == {"before": 0, "broken": 2, "after": 0}
    assert "bus.subscriber_error subscriber=broken event=A" in caplog.text


def test_events_published_by_a_subscriber_arrive_after_the_current_one_everywhere() -> None:
    # Subscriber 1 reacts to A by publishing B. Subscriber 2 must still see A before B:
    # naive recursive delivery would hand it B first.
    bus = Bus()
    seen_by_2: list[object] = []

    def react(event: object) -> None:
        if isinstance(event, A):
            bus.publish(B(event.n))

    bus.subscribe((A, B), react, name="1")
    bus.subscribe((A, B), seen_by_2.append, name="2")
    bus.publish(A(1))
    assert seen_by_2 == [A(1), B(1)]


def test_unsubscribe_stops_delivery_even_during_delivery() -> None:
    bus = Bus()
    got: list[object] = []

    def first(event: object) -> None:
        unsub()  # a subscriber that removes another while an event is delivered

    bus.subscribe(A, first)
    unsub = bus.subscribe(A, got.append)
    bus.publish(A(1))  # the copy taken before delivery still includes `got`
    bus.publish(A(2))
    assert got == [A(1)]


def test_a_subscriber_error_does_not_lose_queued_events() -> None:
    bus = Bus()
    got: list[object] = []

    def reacts_then_fails(event: object) -> None:
        if isinstance(event, A):
            bus.publish(B(event.n))
            raise ValueError("after queueing B")

    bus.subscribe(A, reacts_then_fails, name="x")
    bus.subscribe((A, B), got.append, name="y")
    bus.publish(A(7))
    assert got == [A(7), B(7)]
    assert bus.errors["x"] == 1
