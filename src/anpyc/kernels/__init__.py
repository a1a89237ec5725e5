"""Shared kernels that know no method: importance estimators, update masking and ownership,
task inference."""
