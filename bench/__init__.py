"""nowcastkit's benchmarks: ``python -m bench`` (speed) and ``bench/robustness.py`` (kills)."""
