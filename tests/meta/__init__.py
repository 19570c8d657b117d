"""Meta tests (not shipped): the conformance suite must fail deliberately broken arches."""
