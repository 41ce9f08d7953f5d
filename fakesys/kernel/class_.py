"""Device classes (drivers/base/class.c): ``/sys/class/<class>/<dev>`` links."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..kernfs import KernfsNode
from .sysfs import SysfsAttr, SysfsBinAttr, create_bin_file, create_group

if TYPE_CHECKING:
    from .core import Device
    from .kernel import Kernel


class Class:
    """``struct class``. ``dev_attrs`` and ``dev_bin_attrs`` are its dev_groups, given to
    every device of the class; ``class_attrs`` its class_groups, in ``/sys/class/<name>``."""

    dev_attrs: Sequence[SysfsAttr[Device]] = ()
    dev_bin_attrs: Sequence[SysfsBinAttr[Device]] = ()
    class_attrs: Sequence[SysfsAttr[Class]] = ()

    def __init__(self, kernel: Kernel, name: str) -> None:
        self.kernel = kernel
        self.name = name
        self.devices: list[Device] = []
        self.kn: KernfsNode | None = None

    def register(self) -> None:
        """class_register(): the ``/sys/class/<name>`` directory and class attributes."""
        self.kn = self.kernel.kernfs.create_dir(self.kernel.class_kn, self.name)
        create_group(self.kernel.kernfs, self.kn, self, self.class_attrs)
        self.kernel.classes[self.name] = self

    def add_device_attrs(self, dev: Device) -> None:
        assert dev.kn is not None
        root = self.kernel.kernfs
        create_group(root, dev.kn, dev, self.dev_attrs)
        for attr in self.dev_bin_attrs:
            create_bin_file(root, dev.kn, dev, attr)

    def add_device_links(self, dev: Device) -> None:
        """device_add_class_symlinks(): ``subsystem``, ``device`` (to the parent, unless it
        is a partition) and the class directory's link to the device."""
        root = self.kernel.kernfs
        assert self.kn is not None and dev.kn is not None
        root.create_link(dev.kn, "subsystem", self.kn)
        # A partition has no "device" link (device_is_not_partition()).
        if dev.parent is not None and dev.parent.kn is not None and dev.devtype != "partition":
            root.create_link(dev.kn, "device", dev.parent.kn)
        root.create_link(self.kn, dev.name, dev.kn)
        self.devices.append(dev)

    async def remove_device_links(self, dev: Device) -> None:
        root = self.kernel.kernfs
        assert self.kn is not None and dev.kn is not None
        for kn in (self.kn.lookup(dev.name), dev.kn.lookup("device"), dev.kn.lookup("subsystem")):
            if kn is not None:
                await root.remove(kn)
        self.devices.remove(dev)


def class_get(name: str) -> Class:
    """The class ``name``: the one a subsystem registered, or, for a subsystem fakesys does
    not simulate (whose core would have registered it at boot), registered now, the first
    time a driver asks for it. Drivers of one subsystem share its class."""
    from .calls import current_kernel  # noqa: PLC0415 (calls is above this module)

    kernel = current_kernel()
    cls = kernel.classes.get(name)
    if cls is None:
        cls = Class(kernel, name)
        cls.register()
    return cls
