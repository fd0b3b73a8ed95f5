"""Backends that run jobs somewhere (inline, ray, slurm), and the dev-cluster scripts."""
