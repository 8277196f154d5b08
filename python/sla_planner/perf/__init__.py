"""Profiling data and performance models."""
