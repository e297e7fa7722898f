"""The journal's domain (tree, proofs, signed heads, verification, export format) stays pure."""

import subprocess
import sys

DOMAIN = ("merkle", "tree_head", "journal", "verification", "export_format")


def test_the_domain_imports_no_database_network_or_web_code() -> None:
    # A fresh interpreter: this test process has everything imported already.
    code = (
        "import sys\n"
        + "".join(f"import vigie_audit.{module}\n" for module in DOMAIN)
        + "loaded = {m.split('.')[0] for m in sys.modules}\n"
        + "print(sorted(loaded & {'nats', 'fastapi', 'starlette', 'sqlalchemy'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
