"""Pieces of bench/performance.py: each section runs in its own process (see worker.py)."""
