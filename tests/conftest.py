"""Root conftest: shared helpers live in tests/support.py (import as tests.support)."""
