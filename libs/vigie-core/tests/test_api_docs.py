"""vigie_core.api_docs: Swagger UI served by the API itself, behind the prefix it is mounted at,
loading nothing from another origin."""

import httpx
import pytest
from fastapi import FastAPI

from vigie_core.api_docs import install_docs
from vigie_embedded.testing import offline_docs_problems


def _api() -> FastAPI:
    app = FastAPI(title="Example API", docs_url=None, redoc_url=None)

    @app.get("/things")
    async def things() -> list[str]:
        return ["a"]

    install_docs(app)
    return app


@pytest.mark.parametrize("prefix", ["", "/api/example/v1"])
async def test_the_docs_load_only_files_of_the_app_itself(prefix: str) -> None:
    root = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    root.mount(prefix or "/", _api())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=root), base_url="http://api") as client:
        assert await offline_docs_problems(client, prefix) == []
        page = (await client.get(f"{prefix}/docs")).text
        # Swagger UI reads the app's own OpenAPI document, behind the prefix, and validates nothing online.
        assert f"url: '{prefix}/openapi.json'" in page
        assert '"validatorUrl": null' in page
        assert f'src="{prefix}/docs/assets/swagger-ui-bundle.js"' in page
        script = await client.get(f"{prefix}/docs/assets/swagger-ui-bundle.js")
        assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
        assert len(script.content) > 100_000
        # The OpenAPI document still works, and the pages are not in it.
        document = (await client.get(f"{prefix}/openapi.json")).json()
        assert set(document["paths"]) == {"/things"}
        assert (await client.get(f"{prefix}/docs/assets/nothing.js")).status_code == 404
        assert (await client.get(f"{prefix}/redoc")).status_code == 404  # FastAPI's, from a CDN


def test_an_app_with_fastapi_s_own_docs_or_no_openapi_is_refused() -> None:
    with pytest.raises(ValueError, match="docs_url=None"):
        install_docs(FastAPI())
    with pytest.raises(ValueError, match="openapi_url=None"):
        install_docs(FastAPI(openapi_url=None, docs_url=None, redoc_url=None))


async def test_fastapi_s_own_docs_would_load_a_cdn() -> None:
    """What the check above guards against: FastAPI's /docs loads its files from another origin."""
    transport = httpx.ASGITransport(app=FastAPI())
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        problems = await offline_docs_problems(client, "")
    assert any("cdn.jsdelivr.net" in problem for problem in problems), problems
    assert any("Content-Security-Policy" in problem for problem in problems), problems
