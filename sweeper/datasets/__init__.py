"""Data sets, registered by name: a loader `load(**params) -> DataSet` with fixed splits."""
from . import digits, digits_up  # noqa: F401  (registers)
