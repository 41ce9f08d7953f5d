"""The tree that the file system shows: directories, attributes, binary attributes and
symlinks, with the lifetime rules of the kernel's kernfs.

This package knows nothing of devices. The driver core (:mod:`fakesys.kernel`) builds sysfs out
of it, as the kernel builds sysfs on kernfs; the FUSE adapter (:mod:`fakesys.fuse`) serves it.
"""

from ._errors import ErrnoError as ErrnoError
from ._file import (
    DEFAULT_POLLMASK as DEFAULT_POLLMASK,
)
from ._file import (
    PAGE_SIZE as PAGE_SIZE,
)
from ._file import (
    POLL_CHANGED as POLL_CHANGED,
)
from ._file import (
    Attribute as Attribute,
)
from ._file import (
    BinAttribute as BinAttribute,
)
from ._file import (
    Caller as Caller,
)
from ._file import (
    FileOps as FileOps,
)
from ._file import (
    OpenFile as OpenFile,
)
from ._file import (
    TextAttribute as TextAttribute,
)
from ._file import (
    current_caller as current_caller,
)
from ._file import (
    kernfs_generic_poll as kernfs_generic_poll,
)
from ._file import (
    open_file as open_file,
)
from ._node import (
    ROOT_INO as ROOT_INO,
)
from ._node import (
    KernfsNode as KernfsNode,
)
from ._node import (
    KernfsRoot as KernfsRoot,
)
from ._node import (
    NodeKind as NodeKind,
)
from ._node import (
    TreeListener as TreeListener,
)
from ._node import (
    run_active as run_active,
)
from ._node import (
    run_active_async as run_active_async,
)
