"""Fixtures shared by every test folder: real components started on free ports."""

pytest_plugins = ["vigie_embedded.testing"]
