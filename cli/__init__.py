"""The `conveyor` command: run the process group, migrate, and talk to the API."""
