"""Interaction filtering: integer encoding, dedupe, rating threshold, iterative k-core, dense id remap."""
