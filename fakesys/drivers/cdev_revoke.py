"""cdev_revoke: detach that revokes the open files and drains the operations in flight (the
NetBSD audio design, "closing pad(4) before audio(4) causes panic", tech-kern, February 2020).

Every open file is on the softc's list. Detach (remove()) first sets ``sc_dying`` and takes
every file off the list, making it invalid (a) so that no new operation can start: they fail
with ENXIO. It wakes the readers that wait for data, which give up with EIO, because
``sc_dying`` must prevent long waits; then it waits for the operations still in flight (their
passive references) to drain (b), and only then frees the softc (c). A read that is past its
wait, copying data out, holds the detach until it is done. Close always succeeds: a file
still on the list is taken off it, a revoked one has nothing left to release.
"""

from __future__ import annotations

from fakesys.drivers.lifetime import (
    POLLERR,
    POLLHUP,
    LifetimeRx,
    lifetime_class,
    lifetime_device_add,
    lifetime_device_del,
    lifetime_rx_copy,
    lifetime_rx_poll,
    lifetime_rx_wait,
)
from fakesys.linux import (
    EIO,
    ENXIO,
    Cdev,
    Completion,
    Device,
    ErrnoError,
    File,
    FileOperations,
    Inode,
    PlatformDevice,
    PlatformDriver,
    Struct,
    complete,
    container_of,
    init_completion,
    kernel_function,
    kfree,
    kzalloc,
    module_platform_driver,
    platform_get_drvdata,
    platform_set_drvdata,
    this_module,
    wait_for_completion,
    wake_up,
)

THIS_MODULE = this_module()
revoke_nodes = lifetime_class("revoke")


class RevokeSoftc(Struct, name="revoke_softc", var="sc"):
    """struct revoke_softc: one attached device."""

    cdev: Cdev
    rx: LifetimeRx
    dev: Device
    files: list[File]  # sc_files
    dying: bool  # sc_dying
    users: int  # passive references of the operations in flight
    drained: Completion


@kernel_function
def psref_acquire(file: File) -> RevokeSoftc:
    """The softc of a file that is still valid, referenced; ENXIO for a revoked one."""
    sc = file.private_data  # NULL once detach revoked the file
    if sc is None:
        raise ErrnoError(ENXIO)
    assert isinstance(sc, RevokeSoftc)
    sc.users += 1
    return sc


@kernel_function
def psref_release(sc: RevokeSoftc) -> None:
    sc.users -= 1
    if sc.dying and not sc.users:
        complete(sc.drained)


async def revoke_open(inode: Inode, file: File) -> None:
    sc = container_of(inode.i_cdev, RevokeSoftc, "cdev")
    sc.files.append(file)
    file.private_data = sc


async def revoke_read(file: File, count: int) -> bytes:
    sc = psref_acquire(file)
    try:
        await lifetime_rx_wait(sc.rx, file, lambda: sc.dying)
        if sc.dying:
            raise ErrnoError(EIO)
        return await lifetime_rx_copy(sc.rx, count)
    finally:
        psref_release(sc)


async def revoke_write(file: File, data: bytes) -> int:
    sc = psref_acquire(file)
    try:
        if sc.dying:
            raise ErrnoError(EIO)
        return len(data)
    finally:
        psref_release(sc)


def revoke_poll(file: File) -> int:
    sc = file.private_data
    if sc is None:
        return POLLERR | POLLHUP
    assert isinstance(sc, RevokeSoftc)
    return lifetime_rx_poll(sc.rx, file)


async def revoke_close(inode: Inode, file: File) -> None:
    sc = file.private_data
    if sc is not None:  # detach races to take it off the list too
        assert isinstance(sc, RevokeSoftc)
        sc.files.remove(file)
        file.private_data = None


revoke_fops = FileOperations(
    owner=THIS_MODULE,
    open=revoke_open,
    read=revoke_read,
    write=revoke_write,
    poll=revoke_poll,
    release=revoke_close,
)


async def revoke_attach(pdev: PlatformDevice) -> None:
    sc = kzalloc(RevokeSoftc)
    init_completion(sc.drained)
    try:
        sc.dev = await lifetime_device_add(revoke_nodes, pdev, sc.cdev, sc.rx, revoke_fops)
    except ErrnoError:
        kfree(sc)
        raise
    platform_set_drvdata(pdev, sc)


async def revoke_detach(pdev: PlatformDevice) -> None:
    sc = platform_get_drvdata(pdev)
    assert isinstance(sc, RevokeSoftc)
    await lifetime_device_del(revoke_nodes, pdev, sc.cdev, sc.rx, sc.dev)
    sc.dying = True
    for file in sc.files:  # (a) prevent new users
        file.private_data = None
    sc.files.clear()
    wake_up(sc.rx.wait)  # sc_dying ends the long waits
    if sc.users:  # (b) wait for existing users to drain
        await wait_for_completion(sc.drained)
    kfree(sc)  # (c) free it


revoke_driver = PlatformDriver(name="cdev_revoke", probe=revoke_attach, remove=revoke_detach)
module_platform_driver(revoke_driver)
