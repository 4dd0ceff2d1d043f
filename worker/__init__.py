"""Conveyor's Celery side: the app factory, the generic executor, signals and the maintenance tasks."""
