"""The errno results extmem.c and dcssblk.c return that the core has no class for.

Each is a :class:`mixedmap.KernelErrno`, so callers catch them like the core's own.
"""

from __future__ import annotations

import errno as _errno

from mixedmap import KernelErrno


class ENAMETOOLONG(KernelErrno):
    """dcssblk ``add``/``remove``: a segment name that is empty or longer than 8 characters."""

    errno = _errno.ENAMETOOLONG


class EAGAIN(KernelErrno):
    """``segment_modify_shared``: the segment has other users (``ref_count != 1``)."""

    errno = _errno.EAGAIN


class EOPNOTSUPP(KernelErrno):
    """6.18 dcssblk without DAX: the device has no ``direct_access`` at all."""

    errno = _errno.EOPNOTSUPP


class ENODEV(KernelErrno):
    """dcssblk ``remove`` of a device that is not there."""

    errno = _errno.ENODEV
