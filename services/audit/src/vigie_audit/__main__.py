"""``python -m vigie_audit``: see :mod:`vigie_audit.commands`."""

import sys

from vigie_audit.commands import main

if __name__ == "__main__":
    sys.exit(main())
