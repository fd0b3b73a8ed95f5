"""matrix: a user-given K x K target table, inline or from a CSV/YAML file."""

from __future__ import annotations

from jobs.strategies import catalogue
from jobs.strategies.base import register
from jobs.strategies.fixed import StaticStrategy


@register(catalogue.MATRIX)
class Matrix(StaticStrategy):
    """Row y of the table is the target of class y.

    A file is read when the strategy is bound (so when a spec is validated, and again in the
    job) and its content hash is kept in the canonical string as sha=...: editing the file makes
    a new job id, and a job whose file changed after it was made fails instead of training on
    other targets than its id says (jobs.strategies.catalogue.matrix_arguments).
    """
