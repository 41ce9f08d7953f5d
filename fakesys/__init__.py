"""fakesys: a fake /sys and /dev over FUSE, backed by a simulation of the driver core.

Layers, each a package: :mod:`fakesys.kernfs` (the tree), :mod:`fakesys.kernel` (the lifetime
engine, which builds sysfs on kernfs), :mod:`fakesys.fuse` (serves the tree), and the command
line in :mod:`fakesys.cli`.
"""

__version__ = "0.1.0"
