"""XIP: the block-device contract (direct_access) and, later, the XIP filesystem."""
