"""``python -m vigie_registry [--config FILE]``: run the registry service.

``python -m vigie_registry keygen`` prints a new key for ``source_key`` (Fernet).

``python -m vigie_registry console-link [--config FILE] [--operator ID] [--base-url URL]`` prints a one-time
sign-in link to the operator console (:func:`vigie_registry.console.signin.console_link`).
"""

import argparse
import sys
from pathlib import Path

from vigie_core.lifecycle import service_main
from vigie_registry.service import serve
from vigie_registry.settings import RegistrySettings

if __name__ == "__main__":
    if sys.argv[1:] == ["keygen"]:
        from cryptography.fernet import Fernet

        print(Fernet.generate_key().decode())
    elif sys.argv[1:2] == ["console-link"]:
        from vigie_registry.console.signin import console_link

        parser = argparse.ArgumentParser(
            prog="vigie-registry console-link", description="Print a one-time sign-in link to the console."
        )
        parser.add_argument("--config", type=Path, help="TOML settings file (the environment overrides it)")
        parser.add_argument("--operator", default="operator", help="your operator id (recorded as the actor)")
        parser.add_argument("--base-url", help="where the registry is reached, e.g. http://127.0.0.1:8080")
        args = parser.parse_args(sys.argv[2:])
        try:
            settings = RegistrySettings.load(args.config)
            print(console_link(settings, operator=args.operator, base_url=args.base_url))
        except ValueError as error:
            print(f"vigie-registry console-link: {error}", file=sys.stderr)
            raise SystemExit(2) from None
    else:
        service_main("registry", RegistrySettings, serve)
