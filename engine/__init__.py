"""The compute engine: a FastAPI service and its job pipeline."""
