"""The sweep language: YAML read safely, validated into a typed, frozen SweepSpec with every problem at once.

The bottom layer of hpsweep: it imports nothing of ours but `hpsweep.errors` and `hpsweep.compat`.
"""

from hpsweep.spec.sweep_spec import SweepSpec, load_spec, validate_data

__all__ = ["SweepSpec", "load_spec", "validate_data"]
