"""Fixtures of the mm-layer tests: one :class:`Env` per representative (arch, 2008 profile).

``env`` runs a test on every one of them; ``env_a``/``env_b`` only on those of scheme A
(the profile has a special bit) or scheme B (pfn_valid and the linearity rule decide).
"""

from __future__ import annotations

import pytest

from .helpers import REPS, Env

_A = [c for c in REPS if c.mode.fmt.special_mask is not None]
_B = [c for c in REPS if c.mode.fmt.special_mask is None]


@pytest.fixture(params=REPS, ids=[c.id for c in REPS])
def env(request: pytest.FixtureRequest) -> Env:
    return Env(request.param)


@pytest.fixture(params=_A, ids=[c.id for c in _A])
def env_a(request: pytest.FixtureRequest) -> Env:
    return Env(request.param)


@pytest.fixture(params=_B, ids=[c.id for c in _B])
def env_b(request: pytest.FixtureRequest) -> Env:
    return Env(request.param)
