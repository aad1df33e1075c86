"""Oracles that are not versions of a kernel: the stdlib email package."""
