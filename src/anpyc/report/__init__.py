"""Reports: markdown tables and matplotlib plots made from results on disk."""
