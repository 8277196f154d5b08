"""Cython kernels (built from cython/sla_planner/_cy). Import through sla_planner.kernels."""
