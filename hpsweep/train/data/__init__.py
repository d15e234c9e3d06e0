"""Data sources: each turns a spec's `data` section into tensors, decoded once (image files into a
memory-mapped cache on disk, the digits and tables in memory).

`prepare(spec)` checks the data before anything trains (a preflight): every problem it finds
is a DataError naming the file or the field, which the CLI reports on one line with exit 2.
"""

from hpsweep.train.data.base import DataError, PreparedData, Split
from hpsweep.train.data.prepare import prepare

__all__ = ["DataError", "PreparedData", "Split", "prepare"]
