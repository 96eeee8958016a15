"""Shared test setup: torch's OpenMP threads wait passively (see cascadekit.cli.main)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
