"""What the x86 XIP driver models share: errnos the core lacks, parameter parsing, names.

Every check here runs before a model changes anything, so a refused ``create`` leaves the
machine exactly as it was.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mixedmap import EEXIST, EINVAL, KernelErrno, parse_size

if TYPE_CHECKING:
    from mixedmap import Machine


class EOPNOTSUPP(KernelErrno):
    """``-EOPNOTSUPP``: what ``dax_direct_access`` returns for a device without DAX."""

    errno = errno.EOPNOTSUPP


class ENODEV(KernelErrno):
    """``-ENODEV``: the device was torn down (brd_direct_access's ``!brd`` case)."""

    errno = errno.ENODEV


def reject_unknown(driver: str, extra: Mapping[str, object], accepted: tuple[str, ...]) -> None:
    """A parameter the driver does not have is refused, naming the ones it does."""
    if extra:
        raise EINVAL(
            f"{driver}: unknown parameter(s) {', '.join(sorted(extra))}; it takes {', '.join(accepted)}"
        )


def size_param(driver: str, what: str, value: object) -> int:
    """Bytes from an int or a string such as "64M" (``mixedmap.parse_size``); never negative."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise EINVAL(f"{driver}: {what}={value!r} is not a size (use bytes or e.g. 64M, 1G)")
    size = parse_size(value)
    if size < 0:
        raise EINVAL(f"{driver}: {what}={value!r} is negative")
    return size


_TRUE = ("1", "true", "yes", "on", "y")
_FALSE = ("0", "false", "no", "off", "n")


def bool_param(driver: str, what: str, value: object) -> bool:
    """A boolean parameter: bool, 0/1, or the words the kernel's ``kstrtobool`` takes."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise EINVAL(f"{driver}: {what}={value!r} is not a boolean (true/false, yes/no, 1/0)")


def _taken(machine: Machine, name: str) -> bool:
    return name in machine.devices or name in machine.regions


def device_name(machine: Machine, driver: str, prefix: str, name: object) -> str:
    """The kernel's ``<prefix><N>`` disk name: the lowest free one, or the caller's, checked."""
    if name is None:
        n = 0
        while _taken(machine, f"{prefix}{n}"):
            n += 1
        return f"{prefix}{n}"
    if not isinstance(name, str) or not re.fullmatch(rf"{re.escape(prefix)}\d+", name):
        raise EINVAL(f"{driver}: name {name!r} is not a {driver} disk name ({prefix}0, {prefix}1, ...)")
    if _taken(machine, name):
        raise EEXIST(f"{driver}: a device or region named {name!r} already exists")
    return name
