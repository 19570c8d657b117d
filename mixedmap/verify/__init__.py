"""Check mixedmap's page tables against walkers nobody here wrote (issue 12).

:func:`mixedmap.verify.driver.run` builds random mappings per (arch, profile, mode) and asks
drgn's Linux walkers (:mod:`.drgn_walker`), volatility3's Intel32e (:mod:`.volatility_walker`)
and unicorn's x86_64 and s390x CPUs (:mod:`.unicorn_walker`, :mod:`.unicorn_s390x`) where
each VA goes; ``mixedmap verify`` is its command line. Which walkers an arch gets is its
:class:`~mixedmap.verify.targets.VerifyTarget` (a plugin declares one by entry point).
"""

from mixedmap.verify.base import Answer, Built, Walker
from mixedmap.verify.driver import Cell, Disagreement, Report, VerifyError, build, case_specs, run
from mixedmap.verify.targets import VerifyTarget

__all__ = [
    "Answer", "Built", "Cell", "Disagreement", "Report", "VerifyError", "VerifyTarget", "Walker", "build",
    "case_specs", "run",
]  # fmt: skip
