"""Heap memory with an allocation state, so that a use after free is seen, not suffered.

Two levels:

* An :class:`Object` is one allocation: a kernel-looking address in the kmalloc cache of its
  size, and who allocated and who freed it. :meth:`Object.access` touches bytes of it; after
  kfree() that is reported by :mod:`.kasan` exactly where a KASAN kernel would report it, and
  the caller goes on as the buggy kernel would (a read sees what was left, a write lands in
  freed memory). Addresses are never reused, so a report always names one object.
* A :class:`Struct` is a C structure laid over an Object. Its fields are declared as class
  annotations and laid out with C's sizes and alignment; every read and write of a field is
  checked by itself, so ``priv->open_count++`` on freed memory (``priv.open_count += 1``) is
  a report at that field's offset in the function that did it, with nothing marked by the
  author. Kernel objects embedded in a struct (a mutex, a wait queue head, a kref: the
  :class:`Embedded` types) are not read by naming them, as ``&priv->lock`` reads nothing in
  C; the functions that operate on them check the bytes they touch.

Limitations: sizes follow x86-64 (pointers and longs are 8 bytes); a field's Python value is
kept as the value, not as bytes, so freed memory never reads back as a KASAN poison pattern
or as a later allocation's data, and an out-of-bounds access cannot be expressed.
"""

from __future__ import annotations

import inspect
import itertools
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar

from . import stacktrace
from .sched import Task, current

if TYPE_CHECKING:
    from .kasan import Kasan

KMALLOC_SIZES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)
_SLAB_BASE = 0xFFFF888100000000


@dataclass(frozen=True)
class Track:
    """Who allocated or freed an object, and from where (``struct kasan_track``)."""

    task: Task
    stack: tuple[str, ...]


class Object:
    """One allocation. ``what`` names it for people (``struct foo_priv``)."""

    def __init__(self, slab: Slab, addr: int, size: int, cache: str, what: str, alloc: Track):
        self.slab = slab
        self.addr = addr
        self.size = size
        self.cache = cache
        self.what = what
        self.alloc_track = alloc
        self.free_track: Track | None = None

    @property
    def freed(self) -> bool:
        return self.free_track is not None

    @property
    def cache_size(self) -> int:
        return int(self.cache.removeprefix("kmalloc-").removesuffix("k")) * (
            1024 if self.cache.endswith("k") else 1
        )

    def access(self, offset: int, size: int, *, write: bool) -> bool:
        """Touch ``size`` bytes at ``offset`` from the current stack (taken only when there is
        something to report); returns False, after a KASAN report, if the object was freed."""
        if not self.freed:
            return True
        self.slab.kasan.report_use_after_free(
            self, offset, size, write=write, stack=stacktrace.stack()
        )
        return False


def kmalloc_cache(size: int) -> tuple[str, int]:
    """The kmalloc cache an allocation of ``size`` bytes comes from, and its object size."""
    cache_size = next((s for s in KMALLOC_SIZES if s >= size), size)
    name = f"kmalloc-{cache_size // 1024}k" if cache_size >= 1024 else f"kmalloc-{cache_size}"
    return name, cache_size


class Slab:
    def __init__(self, kasan: Kasan) -> None:
        self.kasan = kasan
        self._next_addr = itertools.count()

    def kmalloc(self, size: int, what: str, stack: tuple[str, ...]) -> Object:
        cache, _ = kmalloc_cache(size)
        addr = _SLAB_BASE + next(self._next_addr) * 0x2000
        return Object(self, addr, size, cache, what, Track(current(), stack))

    def kfree(self, obj: Object, stack: tuple[str, ...]) -> None:
        if obj.freed:
            self.kasan.report_double_free(obj, stack)
            return
        obj.free_track = Track(current(), stack)


# -- C types of struct fields --


@dataclass(frozen=True)
class CType:
    """The size and alignment of a field, for ``Annotated[int, CType(...)]``."""

    size: int
    align: int


u8 = Annotated[int, CType(1, 1)]
u16 = Annotated[int, CType(2, 2)]
u32 = Annotated[int, CType(4, 4)]
u64 = Annotated[int, CType(8, 8)]
s32 = Annotated[int, CType(4, 4)]
long = Annotated[int, CType(8, 8)]
atomic_t = Annotated[int, CType(4, 4)]

POINTER = CType(8, 8)
LIST_HEAD = CType(16, 8)
_T = TypeVar("_T")
#: ``res: Ptr[FooResources]``: a pointer to a struct (a bare struct type is embedded).
Ptr = Annotated[_T, POINTER]
# A plain Python type in an annotation stands for the C type a driver would write.
_BUILTIN_CTYPES: dict[type, CType] = {
    int: CType(4, 4),
    bool: CType(1, 1),
    str: POINTER,  # const char *
    bytes: POINTER,  # u8 *, with its length
    bytearray: POINTER,
    tuple: POINTER,  # a pointer to a constant table (an id table)
    list: LIST_HEAD,  # struct list_head
    set: LIST_HEAD,
    dict: LIST_HEAD,
}
_ZERO: dict[type, Callable[[], object]] = {
    int: int,
    bool: bool,
    str: str,
    bytes: bytes,
    bytearray: bytearray,
    tuple: tuple,
    list: list,
    set: set,
    dict: dict,
}


class Embedded:
    """A kernel object that lives inside a struct's memory (``struct mutex lock;``).

    Its operations call :meth:`touch` for the bytes they read or write, so that using it after
    its container was freed is reported in the function that uses it (``mutex_lock``,
    ``__wake_up``), at the container's offset. Standing alone (a static object, a test's), it
    has no memory to check.
    """

    C_SIZE: ClassVar[int] = 8
    C_ALIGN: ClassVar[int] = 8

    _container: Struct | None = None
    _offset: int = 0
    _field: str = ""

    def _embed(self, container: Struct, offset: int, field: str) -> None:
        self._container = container
        self._offset = offset
        self._field = field

    def touch(self, offset: int, size: int, *, write: bool) -> bool:
        """Access ``size`` bytes at ``offset`` inside this object; False if freed."""
        container = self._container
        if container is None:
            return True
        return container._touch(self._offset + offset, size, write=write)

    @property
    def address(self) -> int:
        """Where this object is, for lockdep and reports."""
        container = self._container
        if container is None or container._memory is None:
            return 0xFFFFFFFF84000000 + (id(self) & 0xFFFFF0)
        return container._memory.addr + container._base + self._offset

    def lock_class_name(self) -> str:
        """``&priv->lock``: the expression lockdep names a lock class after."""
        if self._container is None:
            return type(self).__name__.lower()
        return f"&{type(self._container).__c_var__}->{self._field}"


@dataclass(frozen=True)
class Field:
    name: str
    offset: int
    size: int
    zero: Callable[[], object] | None  # None: an embedded object, made per instance
    embedded: type[Embedded] | type[Struct] | None


class _FieldAccess:
    """The descriptor of a scalar or pointer field: every get and set is checked."""

    __slots__ = ("field", "name")

    def __init__(self, field: Field) -> None:
        self.field = field
        self.name = field.name

    def __get__(self, obj: Struct | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        if obj._memory is not None and obj._memory.freed:
            obj._touch(self.field.offset, self.field.size, write=False)
        return obj.__dict__[self.name]

    def __set__(self, obj: Struct, value: object) -> None:
        if obj._memory is not None and obj._memory.freed:
            obj._touch(self.field.offset, self.field.size, write=True)
        obj.__dict__[self.name] = value


class _EmbeddedAccess(_FieldAccess):
    """An embedded object: taking its address reads nothing."""

    __slots__ = ()

    def __get__(self, obj: Struct | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj.__dict__[self.name]

    def __set__(self, obj: Struct, value: object) -> None:
        raise AttributeError(f"{self.name} is embedded in the struct: it cannot be replaced")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _resolve(cls: type, annotation: object) -> object:
    """An annotation's value. A name that cannot be resolved here (one imported only for the
    type checker) is taken for a class, and a field of that type for a pointer to it."""
    if not isinstance(annotation, str):
        return annotation
    module = sys.modules.get(cls.__module__)
    namespace = dict(vars(module)) if module is not None else {}
    namespace.setdefault(cls.__name__, cls)
    try:
        return eval(annotation, namespace)
    except NameError:
        return object


def _ctype(hint: object, where: str) -> tuple[CType, Callable[[], object] | None, type | None]:
    """The C type of an annotation, its zero value, and the embedded class if it is one."""
    if typing.get_origin(hint) is Annotated:
        base, *extras = typing.get_args(hint)
        ctype = next(x for x in extras if isinstance(x, CType))
        return ctype, _ZERO.get(typing.get_origin(base) or base, lambda: None), None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        # X | None is a pointer (NULL after kzalloc); so is a union of pointers.
        return POINTER, lambda: None, None
    if origin is not None:
        if origin in _BUILTIN_CTYPES:
            return _BUILTIN_CTYPES[origin], _ZERO[origin], None
        if origin in (Callable, typing.Callable) or str(origin) == "collections.abc.Callable":
            return POINTER, lambda: None, None
        raise TypeError(f"{where}: no C type for {hint!r}")
    if isinstance(hint, type):
        if issubclass(hint, Embedded):
            return CType(hint.C_SIZE, hint.C_ALIGN), None, hint
        if issubclass(hint, Struct):
            return CType(hint.__c_size__, hint.__c_align__), None, hint
        if hint in _BUILTIN_CTYPES:
            return _BUILTIN_CTYPES[hint], _ZERO[hint], None
        # Any other class is a pointer to one: NULL until the driver sets it.
        return POINTER, lambda: None, None
    raise TypeError(f"{where}: no C type for {hint!r}")


S = TypeVar("S", bound="Struct")


class Struct:
    """A C struct: declare fields as annotations, allocate with kzalloc()/devm_kzalloc().

    ::

        class FooPriv(Struct):            # struct foo_priv
            lock: Mutex                   # embedded: struct mutex lock;
            wait: WaitQueueHead
            dev: Device                   # a pointer: NULL (None) until set
            open_count: int               # int
            bytes_read: u64

    Class keywords: ``name`` is the C name (default: the class name in snake case), ``var``
    the usual variable name, which lock classes are named after (``&priv->lock``; default:
    the C name). Fields are zeroed on allocation: numbers 0, pointers None, embedded objects
    fresh. Attributes that are not declared fields are plain Python, never checked: engine
    classes that are also C structs keep their bookkeeping there.
    """

    __c_name__: ClassVar[str] = "struct"
    __c_var__: ClassVar[str] = "struct"
    __c_size__: ClassVar[int] = 0
    __c_align__: ClassVar[int] = 1
    __c_fields__: ClassVar[tuple[Field, ...]] = ()

    _memory: Object | None = None
    _base: int = 0

    def __init_subclass__(cls, name: str | None = None, var: str | None = None) -> None:
        super().__init_subclass__()
        cls.__c_name__ = name or _snake(cls.__name__)
        cls.__c_var__ = var or cls.__c_name__
        own = inspect.get_annotations(cls)
        fields = list(cls.__c_fields__)
        offset = cls.__c_size__
        align = cls.__c_align__
        for attr, annotation in own.items():
            hint = _resolve(cls, annotation)
            if typing.get_origin(hint) is ClassVar or hint is ClassVar:
                continue
            ctype, zero, embedded = _ctype(hint, f"{cls.__qualname__}.{attr}")
            offset = -(-offset // ctype.align) * ctype.align
            field = Field(attr, offset, ctype.size, zero, embedded)
            fields.append(field)
            access = _EmbeddedAccess(field) if embedded else _FieldAccess(field)
            setattr(cls, attr, access)
            offset += ctype.size
            align = max(align, ctype.align)
        cls.__c_fields__ = tuple(fields)
        cls.__c_align__ = align
        cls.__c_size__ = max(-(-offset // align) * align, 1)

    def _zero(self, memory: Object | None, base: int = 0) -> None:
        """Zero every field, as kzalloc() does, in ``memory`` at ``base``."""
        self._memory = memory
        self._base = base
        values = self.__dict__
        for field in self.__c_fields__:
            if field.embedded is None:
                assert field.zero is not None
                values[field.name] = field.zero()
            elif issubclass(field.embedded, Struct):
                inner = object.__new__(field.embedded)
                inner._zero(memory, base + field.offset)
                values[field.name] = inner
            else:
                obj = field.embedded()
                obj._embed(self, field.offset, field.name)
                values[field.name] = obj

    @classmethod
    def allocate(cls: type[S], memory: Object | None) -> S:
        """A zeroed instance in ``memory`` (kzalloc's half that is not the allocator's)."""
        obj = object.__new__(cls)
        obj._zero(memory)
        return obj

    def _touch(self, offset: int, size: int, *, write: bool) -> bool:
        memory = self._memory
        if memory is None:
            return True
        return memory.access(self._base + offset, size, write=write)

    @property
    def freed(self) -> bool:
        """Whether the memory under this struct has been freed."""
        return self._memory is not None and self._memory.freed

    def __repr__(self) -> str:
        state = " (freed)" if self.freed else ""
        return f"<struct {self.__c_name__}{state}>"


def field_offset(cls: type[Struct], name: str) -> int:
    """offsetof(): where field ``name`` starts."""
    return next(f.offset for f in cls.__c_fields__ if f.name == name)


# -- the driver API --


def kzalloc(cls: type[S]) -> S:
    """kzalloc(sizeof(struct ...), GFP_KERNEL): a zeroed struct on the heap."""
    from .calls import current_kernel  # noqa: PLC0415 (calls is above this module)

    slab = current_kernel().slab
    memory = slab.kmalloc(cls.__c_size__, f"struct {cls.__c_name__}",
                          stacktrace.stack("__kmalloc_cache_noprof"))  # fmt: skip
    return cls.allocate(memory)


kmalloc = kzalloc


def kfree(obj: Struct | None) -> None:
    """kfree(): NULL is fine; freeing twice is a KASAN double-free report."""
    if obj is None or obj._memory is None:
        return
    obj._memory.slab.kfree(obj._memory, stacktrace.stack("kfree"))
