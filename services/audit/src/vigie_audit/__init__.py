"""The Vigie audit service: a tamper-evident journal (RFC 9162 Merkle tree) of every access."""
