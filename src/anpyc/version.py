"""The package version (one place; the root package and the provenance of every run read it)."""

__version__ = "0.1.0"
