"""The registry HTTP API (FastAPI), mounted under /v1 by the service."""
