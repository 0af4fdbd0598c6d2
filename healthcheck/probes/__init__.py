"""Probes: each a small async function returning a ProbeResult; none ever raises."""
