"""mixedmap: an executable, bit-exact model of Linux's special-mapping machinery.

Public API for users (``Machine``) and for arch plugin authors (``hookimpl`` and the value
types). Plugins import only from here.
"""

from __future__ import annotations

from mixedmap import bits
from mixedmap.arch import (
    ENTRY_BAD,
    ENTRY_LEAF,
    ENTRY_NONE,
    ENTRY_TABLE,
    VM_EXEC,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
    ArchMode,
    ArchSpec,
    BitField,
    Capabilities,
    Level,
    MemoryModel,
    PageTableFormat,
    PteOps,
    ReservedRange,
    Support,
    Unsupported,
    XipDriverModel,
)
from mixedmap.errors import (
    EBUSY,
    EEXIST,
    EFAULT,
    EINVAL,
    EIO,
    ENOENT,
    ENOMEM,
    ENOSPC,
    ENOSYS,
    EPERM,
    ERANGE,
    EROFS,
    AddressError,
    ArchSpecError,
    KernelErrno,
    MixedmapError,
    OutOfMemory,
    PageTableError,
    PluginError,
    ProfileError,
    UnknownArchError,
    UnsupportedOperation,
    VMBug,
)
from mixedmap.machine import Machine, PageInfo, parse_size
from mixedmap.mm.file import DeviceFile
from mixedmap.mm.mm import MM, Access
from mixedmap.mm.vma import VM, VMA, FaultResult
from mixedmap.pgtable import Leaf, PageTable, WalkStep
from mixedmap.phys.memmap import PG
from mixedmap.phys.regions import Region
from mixedmap.plugin import API_VERSION, hookimpl
from mixedmap.plugin.registry import ArchRegistry, default_registry
from mixedmap.profiles import DEFAULT_PROFILE, PROFILES, Profile, get_profile
from mixedmap.xip.device import SECTOR_SIZE, RangeDevice, XipDevice
from mixedmap.xip.fs import XipFS

__version__ = "0.1.0"

__all__ = [
    "API_VERSION",
    "DEFAULT_PROFILE",
    "EBUSY",
    "EEXIST",
    "EFAULT",
    "EINVAL",
    "EIO",
    "ENOENT",
    "ENOMEM",
    "ENOSPC",
    "ENOSYS",
    "ENTRY_BAD",
    "ENTRY_LEAF",
    "ENTRY_NONE",
    "ENTRY_TABLE",
    "EPERM",
    "ERANGE",
    "EROFS",
    "MM",
    "PG",
    "PROFILES",
    "SECTOR_SIZE",
    "VM",
    "VMA",
    "VM_EXEC",
    "VM_READ",
    "VM_SHARED",
    "VM_WRITE",
    "Access",
    "AddressError",
    "ArchMode",
    "ArchRegistry",
    "ArchSpec",
    "ArchSpecError",
    "BitField",
    "Capabilities",
    "DeviceFile",
    "FaultResult",
    "KernelErrno",
    "Leaf",
    "Level",
    "Machine",
    "MemoryModel",
    "MixedmapError",
    "OutOfMemory",
    "PageInfo",
    "PageTable",
    "PageTableError",
    "PageTableFormat",
    "PluginError",
    "Profile",
    "ProfileError",
    "PteOps",
    "RangeDevice",
    "Region",
    "ReservedRange",
    "Support",
    "UnknownArchError",
    "Unsupported",
    "UnsupportedOperation",
    "VMBug",
    "WalkStep",
    "XipDevice",
    "XipDriverModel",
    "XipFS",
    "bits",
    "default_registry",
    "get_profile",
    "hookimpl",
    "parse_size",
]
