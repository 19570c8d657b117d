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
    Support,
    Unsupported,
    XipDriverModel,
)
from mixedmap.errors import (
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
from mixedmap.machine import Machine, parse_size
from mixedmap.pgtable import Leaf, PageTable, WalkStep
from mixedmap.plugin import API_VERSION, hookimpl
from mixedmap.plugin.registry import ArchRegistry, default_registry
from mixedmap.profiles import DEFAULT_PROFILE, PROFILES, Profile, get_profile

__version__ = "0.1.0"

__all__ = [
    "API_VERSION",
    "DEFAULT_PROFILE",
    "ENTRY_BAD",
    "ENTRY_LEAF",
    "ENTRY_NONE",
    "ENTRY_TABLE",
    "PROFILES",
    "VM_EXEC",
    "VM_READ",
    "VM_SHARED",
    "VM_WRITE",
    "AddressError",
    "ArchMode",
    "ArchRegistry",
    "ArchSpec",
    "ArchSpecError",
    "BitField",
    "Capabilities",
    "KernelErrno",
    "Leaf",
    "Level",
    "Machine",
    "MemoryModel",
    "MixedmapError",
    "OutOfMemory",
    "PageTable",
    "PageTableError",
    "PageTableFormat",
    "PluginError",
    "Profile",
    "ProfileError",
    "PteOps",
    "Support",
    "UnknownArchError",
    "Unsupported",
    "UnsupportedOperation",
    "VMBug",
    "WalkStep",
    "XipDriverModel",
    "bits",
    "default_registry",
    "get_profile",
    "hookimpl",
    "parse_size",
]
