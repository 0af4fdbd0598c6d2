"""Kernel tier (runs inside the VM: scripts/vm-pytest)."""
