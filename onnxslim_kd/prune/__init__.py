"""Structured channel pruning with dependency propagation (see docs/prune.md)."""
