"""Protobuf messages that cross NATS. Generated from ``proto/`` by ``make proto``; do not edit ``v1/``."""
