"""Plumbing every Vigie service shares: settings, NATS and JetStream, telemetry, health, lifecycle."""
