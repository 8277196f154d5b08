"""Simulated engines and cluster, trace readers, frontend metrics emulator."""
