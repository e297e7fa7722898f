"""``python -m vigie_registry [--config FILE]``: run the registry service.

``python -m vigie_registry keygen`` prints a new key for ``source_key`` (Fernet).
"""

import sys

from vigie_core.lifecycle import service_main
from vigie_registry.service import serve
from vigie_registry.settings import RegistrySettings

if __name__ == "__main__":
    if sys.argv[1:] == ["keygen"]:
        from cryptography.fernet import Fernet

        print(Fernet.generate_key().decode())
    else:
        service_main("registry", RegistrySettings, serve)
