"""The fuzz suite reuses the fault suite's stack helpers (tests/faults/conftest.py)."""
