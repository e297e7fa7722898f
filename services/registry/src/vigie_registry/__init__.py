"""Vigie registry: the cameras, their purposes and legal grounds, and the right to object.

- :mod:`.declaration` (what an administrator declares), :mod:`.purposes` (the closed list) and
  :mod:`.rules` (the privacy rules, each refusal naming its rule) are pure;
- :mod:`.camera` builds each camera's effective policy (``vigie.v1.CameraPolicy``) and
  :mod:`.publication` keeps the NATS KV bucket ``vigie-policy`` equal to the database;
- :mod:`.objections` (receipts, abuse limits) and :mod:`.register` (GDPR art. 30 register, DPIA document);
- :mod:`.storage` (SQLite or PostgreSQL, Alembic), :mod:`.api` (FastAPI) and :mod:`.service` are the edges.
"""
