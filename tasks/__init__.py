"""Built-in job types: one module each, a plain typed handler and its JobSpec (registered by entry point)."""
