"""Plumbing every Vigie service shares: settings, NATS and JetStream, telemetry, health, lifecycle."""

from vigie_core.nats_transport import close_abandoned_sockets

# nats-py leaves a failed reconnection attempt's socket open (vigie_core.nats_transport).
close_abandoned_sockets()
