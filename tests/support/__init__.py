"""Test support: backends (databases and brokers the tests own) and the process harness for end-to-end tests."""
