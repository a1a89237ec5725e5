"""Orchestration above the runner: comparisons, named suites, tuning, protocols and presets,
parallel jobs, reproduction."""
