"""Kernel semantics profiles.

A profile names the Linux release whose rules and encodings a Machine follows. The default is
2.6.27, the kernel of the 2008 VM_MIXEDMAP / pte_special series; 2.6.26 is one release
earlier (x86 and ppc64 without the special bit); 6.18 gives today's PTE encodings and mm rules.
"""

from __future__ import annotations

import attrs

from mixedmap.errors import ProfileError


@attrs.frozen(order=True)
class Profile:
    """One kernel release; ordered by version so rules can say ``profile >= V2_6_27``."""

    version: tuple[int, ...]
    name: str = attrs.field(eq=False, order=False)
    summary: str = attrs.field(eq=False, order=False, default="")

    def __str__(self) -> str:
        return self.name


V2_6_26 = Profile((2, 6, 26), "2.6.26", "special bit on s390 only; x86/ppc64 use pfn_valid")
V2_6_27 = Profile((2, 6, 27), "2.6.27", "the series' kernel: special bit on x86, ppc64, s390")
V6_18 = Profile(
    (6, 18), "6.18", "today's PTE encodings and mm rules (zero page, vmf_insert_*, pin_user_pages, DAX)"
)

PROFILES: dict[str, Profile] = {p.name: p for p in (V2_6_26, V2_6_27, V6_18)}
DEFAULT_PROFILE = V2_6_27


def get_profile(name: str | Profile | None) -> Profile:
    """Return the profile called ``name`` (None gives the default, 2.6.27)."""
    if name is None:
        return DEFAULT_PROFILE
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[str(name)]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ProfileError(f"unknown kernel profile {name!r}; known profiles: {known}") from None
