"""Values shared by probes, the rise/fall reducer, the scheduler and the policy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one check attempt. Probes return this; they never raise.

    `reason` is a short stable token for logs and metrics ("ok", "refused",
    "timeout", "status_500", "body_mismatch", "tls_error", "exit_1", ...).
    `weight` is set only by checks that scale the weight (script `dynamic`,
    file): None means "leave the configured weight".
    """

    ok: bool
    reason: str
    duration: float  # seconds, measured by the probe with the loop's clock
    weight: int | None = None
