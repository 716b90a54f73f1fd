"""Data sets, registered by name: a loader `load(**params) -> DataSet` with fixed splits."""
from . import digits  # noqa: F401  (registers)
