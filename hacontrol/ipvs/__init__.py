"""Kernel IPVS: desired-table model, pure planner, netlink executor, reconciler, sync daemon."""
