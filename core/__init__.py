"""Conveyor core: settings, database, models, the job ledger and the job-type contract."""
