"""The operator console, served by the registry at ``/console``: sign in with a one-time link, see the
cameras, ask for a camera's scene view and draw its counting lines and zones over it."""
