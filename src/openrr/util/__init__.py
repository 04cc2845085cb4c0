"""Small helpers with no openrr dependencies (a leaf of the layering)."""
