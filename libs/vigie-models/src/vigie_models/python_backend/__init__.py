"""The python-backend ``model.py`` shipped into the Triton repository (package data, not imported)."""
