"""The FUSE adapter: serves a :class:`~fakesys.kernfs.KernfsRoot` through pyfuse3.

It is thin on purpose: it translates requests into kernfs calls and keeps the rules that make a
pyfuse3 file system survive its clients (see :mod:`._operations`). It knows nothing of devices.
"""

from ._invalidator import Invalidator as Invalidator
from ._operations import Operations as Operations
