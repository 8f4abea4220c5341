"""The compute engine: a FastAPI service and its job pipeline."""

# registry_client pins a safe recursion limit at import (see registry_client/_stack.py);
# importing it first makes every engine entry point run with that limit.
import registry_client  # noqa: F401
