"""``python -m vigie_aggregation [--config FILE]``: run the aggregation service."""

from vigie_aggregation.service import serve
from vigie_aggregation.settings import AggregationSettings
from vigie_core.lifecycle import service_main

if __name__ == "__main__":
    service_main("aggregation", AggregationSettings, serve)
