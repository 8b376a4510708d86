"""Asset hrefs any client can open, and the store's files served over HTTP.

The static catalogue keeps the store's own locations (a local path on the embedded
default, ``s3://`` on an object store), which only work on the server. The API answers
with URLs instead: a local path under the store becomes ``{api}/data/{path in the
store}``, served read-only by :func:`data_routes` (HEAD and GET with ranges, so
``xarray.open_zarr("{api}/data/.../forcing.zarr")`` reads only the chunks it needs);
``s3://`` and ``http(s)://`` hrefs stay as they are.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

__all__ = ["DATA_PREFIX", "local_root", "public_href", "publish_assets", "data_routes"]

#: Where the API serves the store's files.
DATA_PREFIX = "data"


def local_root(store_url: str) -> Path | None:
    """The store's directory when it is on the local file system, else None."""
    parts = urlsplit(store_url)
    if parts.scheme in ("", "file"):
        path = unquote(parts.path) if parts.scheme == "file" else store_url
        return Path(path).resolve()
    return None


def public_href(href: str, base: str, root: Path | None) -> str:
    """``href`` as a URL a remote client can open (see the module's docstring)."""
    if root is None or not isinstance(href, str):
        return href
    parts = urlsplit(href)
    if parts.scheme not in ("", "file") or not (parts.path or href).startswith("/"):
        return href
    path = Path(unquote(parts.path) if parts.scheme == "file" else href)
    try:
        relative = path.resolve().relative_to(root)
    except ValueError:
        return href
    return f"{base.rstrip('/')}/{DATA_PREFIX}/{quote(relative.as_posix())}"


def publish_assets(document: dict[str, Any], base: str, root: Path | None) -> dict[str, Any]:
    """Rewrite the hrefs of ``document``'s assets (an item or a collection) in place."""
    if root is None:
        return document
    for key in ("assets", "item_assets"):
        assets = document.get(key)
        if isinstance(assets, dict):
            for asset in assets.values():
                if isinstance(asset, dict) and "href" in asset:
                    asset["href"] = public_href(asset["href"], base, root)
    return document


def data_routes(root: Path | None) -> list[Route]:
    """``GET/HEAD /data/{path}``: a file of the local store, read-only, with ranges;
    a directory answers a page of links to its members (how HTTP file systems list)."""

    async def serve(request: Request) -> Response:
        if root is None:
            return _not_found("the store is not on this server's file system")
        relative = request.path_params["path"]
        target = (root / relative).resolve()
        if not target.is_relative_to(root) or ".." in Path(relative).parts:
            return _not_found(f"no file {relative!r} in the store")
        if target.is_dir():
            # A Zarr group without consolidated metadata is read by listing its
            # members; fsspec's HTTP file system lists by reading a page's links.
            return _listing(request, target)
        if not target.is_file():
            return _not_found(f"no file {relative!r} in the store")
        return FileResponse(
            target,
            headers={"Cache-Control": "public, max-age=60"},
            media_type=_media_type(target),
        )

    return [Route(f"/{DATA_PREFIX}/{{path:path}}", serve, methods=["GET", "HEAD"])]


def _listing(request: Request, directory: Path) -> Response:
    names = sorted(
        child.name + ("/" if child.is_dir() else "")
        for child in directory.iterdir()
        if not child.name.startswith(".") and not child.is_symlink()
    )
    base = request.url.path.rstrip("/") + "/"
    links = "\n".join(
        f'<li><a href="{html.escape(base + quote(name))}">{html.escape(name)}</a></li>'
        for name in names
    )
    return HTMLResponse(f"<!doctype html><title>{html.escape(base)}</title><ul>\n{links}\n</ul>")


def _media_type(path: Path) -> str:
    if path.name.endswith(".json") or path.name in ("zarr.json", ".zarray", ".zattrs", ".zgroup"):
        return "application/json"
    if path.suffix == ".nc":
        return "application/x-netcdf"
    if path.suffix in (".tif", ".tiff"):
        return "image/tiff; application=geotiff"
    return "application/octet-stream"


def _not_found(description: str) -> JSONResponse:
    return JSONResponse({"code": "NotFoundError", "description": description}, status_code=404)
