"""The garbage collector of a web process."""

import gc


def collector_tune() -> None:
    """Python's cyclic garbage collector, tuned for a web process (measured in benchmarks/nba.py).

    What loading the project made (modules, URL patterns, translations, settings) lives as long as
    the process, yet every full collection walked it again: 40 to 140 ms pauses a few times a
    minute under load, each one stalling every thread of the process (the decision's p99 at 300
    a second was 144 ms with them). Frozen, the collector leaves it alone; collecting the young
    generation every 7,000 allocations instead of 700 (a request makes about 90 objects in
    reference cycles, Django's and DRF's request and response) and the older ones less often
    cost less time in all."""
    gc.freeze()
    gc.set_threshold(7_000, 10, 10)
