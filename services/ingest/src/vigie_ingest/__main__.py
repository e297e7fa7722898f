"""``python -m vigie_ingest [--config FILE]``: run the ingest service."""

from vigie_core.lifecycle import service_main
from vigie_ingest.service import serve
from vigie_ingest.settings import IngestSettings

if __name__ == "__main__":
    service_main("ingest", IngestSettings, serve)
