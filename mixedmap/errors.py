"""The error hierarchy.

Every error names its culprit (arch, plugin, address, value) because users of a model
mostly debug their own input; a kernel ``BUG_ON`` becomes :class:`VMBug`, an errno result a
:class:`KernelErrno` subclass carrying the errno, so tests can assert the kernel's outcome.
"""

from __future__ import annotations

import errno as _errno


class MixedmapError(Exception):
    """Base of every error mixedmap raises on purpose."""


class PluginError(MixedmapError):
    """An arch plugin could not be loaded, validated or found."""


class ArchSpecError(PluginError):
    """An arch plugin's ArchSpec is inconsistent (geometry, bits, capabilities)."""


class UnknownArchError(PluginError):
    """The requested arch is not installed (or was disabled)."""


class UnsupportedOperation(MixedmapError):
    """The arch or kernel profile lacks what the operation needs (e.g. no special bit)."""


class ProfileError(MixedmapError):
    """Unknown kernel profile, or an arch mode that does not exist in that profile."""


class AddressError(MixedmapError, ValueError):
    """A virtual or physical address, PFN or size that the arch cannot accept."""


class PageTableError(MixedmapError):
    """A page-table operation that conflicts with the tables' current state."""


class OutOfMemory(MixedmapError):
    """The simulated machine has no free RAM frame left for the request."""


class VMBug(MixedmapError):
    """A kernel ``BUG_ON`` condition: the caller broke a precondition the kernel asserts."""


class KernelErrno(MixedmapError):
    """A kernel function returned ``-errno``; ``errno`` holds the positive value."""

    errno: int = 0
    #: get_user_pages_fast: why the lockless walk handed over before the slow path failed
    fallback_reason: str = ""

    @property
    def errname(self) -> str:
        return _errno.errorcode.get(self.errno, str(self.errno))


class EFAULT(KernelErrno):
    errno = _errno.EFAULT


class EBUSY(KernelErrno):
    errno = _errno.EBUSY


class EINVAL(KernelErrno):
    errno = _errno.EINVAL


class ENOMEM(KernelErrno):
    errno = _errno.ENOMEM


class ERANGE(KernelErrno):
    errno = _errno.ERANGE


class ENOENT(KernelErrno):
    errno = _errno.ENOENT


class EPERM(KernelErrno):
    errno = _errno.EPERM


class ENOSPC(KernelErrno):
    errno = _errno.ENOSPC


class EROFS(KernelErrno):
    errno = _errno.EROFS


class EEXIST(KernelErrno):
    errno = _errno.EEXIST


class EIO(KernelErrno):
    errno = _errno.EIO


class ENOSYS(KernelErrno):
    errno = _errno.ENOSYS


class EACCES(KernelErrno):
    errno = _errno.EACCES


class FaultError(MixedmapError):
    """A user access that the kernel answers with a signal; ``va`` is the address."""

    signal: str = ""

    def __init__(self, message: str, va: int) -> None:
        super().__init__(message)
        self.va = va


class SIGSEGV(FaultError):
    signal = "SIGSEGV"


class SIGBUS(FaultError):
    signal = "SIGBUS"


class OOMError(FaultError):
    """VM_FAULT_OOM: the fault could not get memory (the OOM killer's business)."""

    signal = "OOM"


class ENODEV(KernelErrno):
    errno = _errno.ENODEV


class EOPNOTSUPP(KernelErrno):
    errno = _errno.EOPNOTSUPP


class ENODATA(KernelErrno):
    """``get_xip_mem`` on a hole without create (fs/ext2/xip.c)."""

    errno = _errno.ENODATA
