"""The docs work with the network unplugged: Swagger UI and ReDoc come from the installed package, the
pages name no other host, and every asset they load answers from the service itself. ``GET /`` leads a
newcomer to ``/docs``."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest
from fastapi import FastAPI

DOC_PAGES = ("/docs", "/redoc", "/docs/oauth2-redirect")


class _Links(HTMLParser):
    """Every ``src`` and ``href`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [value for name, value in attrs if name in {"src", "href"} and value]


@pytest.fixture
async def site(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sidan.local")


@pytest.mark.parametrize("page", DOC_PAGES)
async def test_docs_pages_name_no_other_host_and_load_every_asset(site: httpx.AsyncClient, page: str) -> None:
    async with site:
        response = await site.get(page)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        html = response.text
        # No absolute or protocol-relative URL anywhere in the page: not in a tag, not in its script.
        assert not re.search(r"(https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}", html), re.findall(r"\S*//\S+", html)
        parser = _Links()
        parser.feed(html)
        if page != "/docs/oauth2-redirect":
            assert len(parser.links) >= 2, parser.links  # the script and the icon at least
        for link in parser.links:
            assert link.startswith("/") and not link.startswith("//"), link
            asset = await site.get(link)
            assert asset.status_code == 200, link
            assert len(asset.content) > 1000, link
        # What the page's script fetches: the OpenAPI document, from here.
        for url in re.findall(r"""(?:url|spec-url)\s*[:=]\s*['"]([^'"]+)['"]""", html):
            assert url.startswith("/"), url
            assert (await site.get(url)).status_code == 200, url


async def test_docs_assets_are_the_installed_packages(site: httpx.AsyncClient) -> None:
    async with site:
        swagger = await site.get("/static/docs/swagger-ui-bundle.js")
        redoc = await site.get("/static/docs/redoc.standalone.js")
        css = await site.get("/static/docs/swagger-ui.css")
    assert b"SwaggerUIBundle" in swagger.content and swagger.headers["content-type"].startswith("text/javascript")
    assert b"Redoc" in redoc.content
    assert css.headers["content-type"].startswith("text/css")
    # Swagger UI 5: it renders OpenAPI 3.1, which the service writes (4.x refused it).
    version = re.search(rb'PACKAGE_VERSION:"(\d+)\.\d+\.\d+"', swagger.content)
    assert version is not None and int(version[1]) >= 5


async def test_root_leads_to_the_docs(site: httpx.AsyncClient) -> None:
    async with site:
        response = await site.get("/")
    assert response.status_code in {302, 307} and response.headers["location"] == "/docs"
