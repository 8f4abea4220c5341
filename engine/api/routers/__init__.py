"""One APIRouter per resource: jobs (and their artifacts, logs) and health."""
