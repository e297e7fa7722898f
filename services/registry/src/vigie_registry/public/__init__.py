"""The public side of the registry: the transparency page (server-rendered, French and English, no
script) and the cameras' printable signs. See :mod:`vigie_registry.public.site`."""
