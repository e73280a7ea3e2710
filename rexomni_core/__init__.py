"""Rex-Omni toolkit core: detect anything by next point prediction."""
