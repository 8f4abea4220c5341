"""Python client for the compute-to-data registries and the engine API."""
