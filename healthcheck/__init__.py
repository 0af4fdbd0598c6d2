"""Health checkers: probes, rise/fall state, scheduling and the real-server policy."""
