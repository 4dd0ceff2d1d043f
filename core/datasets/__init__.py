"""Datasets: typed tables Conveyor owns, filled by streaming ingest jobs, read, aggregated and exported."""

import os

import pyarrow as pa

# Arrow's default allocator (mimalloc) keeps the pages each thread freed for its own reuse: an ingest's peak RSS was
# ~30 MB higher with it than with the C library's, at the same speed (bench/ingest.py). An explicit
# ARROW_DEFAULT_MEMORY_POOL still wins.
if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
    pa.set_memory_pool(pa.system_memory_pool())
