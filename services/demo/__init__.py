"""`make demo`: the whole learning loop on a real benchmark, measured."""
