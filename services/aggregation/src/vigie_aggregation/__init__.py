"""Vigie aggregation: anonymous window reports in, disclosure-controlled statistics out.

- :mod:`.reports` checks an EVENTS message and places it in its publication window;
- :mod:`.buckets` merges parts (sums, maxima, unions) and :mod:`.storage` stores them exactly once;
- :mod:`.disclosure` (pure) decides what may be published: suppression with certificates, noise, budget;
- :mod:`.families` and :mod:`.publication` say what is published; :mod:`.release` publishes closed windows
  and days, once and for good;
- :mod:`.api` serves the released figures (JSON, CSV) and :mod:`.metrics` the latest window to Prometheus;
- :mod:`.consumer`, :mod:`.retention` and :mod:`.service` are the edges and the lifecycle.
"""
