"""The lifetime engine: a simulation of the Linux driver core.

It mirrors the kernel's own split, one module per concept: :mod:`.core` (devices), :mod:`.bus`,
:mod:`.dd` (binding), :mod:`.driver`, :mod:`.devres`, :mod:`.class_`, :mod:`.module`,
:mod:`.platform`, :mod:`.pci`, :mod:`.printk` (the log and /dev/kmsg), :mod:`.panic` (taint),
:mod:`.slab` and :mod:`.kasan` (freed state and its reports); :mod:`.replay` builds a
recorded machine of a real ``/sys`` out of them. It builds sysfs with
:mod:`fakesys.kernfs` and never imports the FUSE layer, so it is tested without a mount.
"""

from .core import Device as Device
from .driver import Driver as Driver
from .kernel import Kernel as Kernel
from .module import Module as Module
