"""The shipped simulated drivers, one file each, on the public driver API (:mod:`fakesys.linux`).

Each file is loaded as a module of the fake machine (executed afresh at every load, as insmod
does) when a scenario names it, by file name (``impl = "cdev_devm"``) or by the older
``policy``/``dump`` fields. Buggy and fixed twins are separate files, so that ``diff`` between
them reads like the fix:

================================  =============================================================
``foo``                           a correct driver that keeps no files open
``cdev_devm`` / ``cdev_refcounted``  the devres article: devm data behind an open file / the fix
``cdev_revoke``                   NetBSD audio detach: revoke the files, drain, then free
``cdev_unplug_rfc`` / ``cdev_unplug``  the V4L2 unplug RFC: enter/exit sections; as posted,
                                  unplug waits for a blocked read / solved, it wakes it first
                                  (also the camera of the ``camera`` scenario, as /dev/video0)
``cdev_irq_devm`` / ``cdev_irq_fixed``  the devres article's IRQ that outlives remove() / the fix
``cdev_modref_racy`` / ``cdev_modref_locked``  the 2002 driverfs module race / under a lock
``cdev_close_racy`` / ``cdev_close_held``  the 2002 close race: the count dropped inside the
                                  module's own close / held by the caller around it
``dump_legacy`` / ``dump_put``    a dumping driver that leaves its dump behind at unbind / that
                                  calls dev_coredump_put() from a devm action (as Xe does)
``dump_standalone``               a dump of standalone data (dev_coredumpv(), as iwlwifi's)
``fakegpu``                       a PCI GPU with a DRM node that dumps like Xe
``fakeserial``                    a USB-serial-like adapter on the hotplug bus
================================  =============================================================

:mod:`.lifetime`, :mod:`.v4l2_dev` and :mod:`.dumpdata` are not drivers: the first is the
small subsystem core the character-device drivers share (their class and numbers, like
misc's), the second the V4L2 RFC's enter/exit infrastructure, the third makes dump contents.
:mod:`.recorded` is not one a scenario names either: it is what the drivers of a recording
become.
"""
