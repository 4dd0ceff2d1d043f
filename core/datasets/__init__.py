"""Datasets: typed tables Conveyor owns, filled by streaming ingest jobs, read, aggregated and exported."""
