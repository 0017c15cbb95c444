"""The one Jinja2 environment of the bridge's pages (checkout and dashboard) and their vendored static files."""

from __future__ import annotations

import hashlib
from importlib import resources

import aiohttp_jinja2
import jinja2
from aiohttp import web

__all__ = ["STATIC", "add_static_route", "page_headers", "setup_templates", "static_url"]

STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
STATIC_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "public, max-age=86400",
}


def _static_files() -> dict[str, tuple[bytes, str, str]]:
    """name -> (content, content type, version): the vendored assets, read once."""
    out: dict[str, tuple[bytes, str, str]] = {}
    for entry in resources.files("bridge.web").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if suffix in STATIC_TYPES:
            data = entry.read_bytes()
            out[entry.name] = (data, STATIC_TYPES[suffix], hashlib.sha256(data).hexdigest()[:12])
    return out


STATIC = _static_files()


def page_headers(*, form_action: str) -> dict[str, str]:
    """The headers of every HTML page and its JSON: our own scripts and styles only, no framing, no
    referrer, never cached. `form_action` is the CSP's: "'none'" where a page has no form."""
    return {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
            f" form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
        "Cache-Control": "no-store",
    }


def static_url(name: str) -> str:
    """The asset's URL with its content hash (cached for a day, changed with every new version)."""
    return f"/static/{name}?v={STATIC[name][2]}"


def setup_templates(app: web.Application) -> jinja2.Environment:
    """Attach the shared environment (autoescaped, strict) once; later callers get the same one."""
    if aiohttp_jinja2.APP_KEY in app:
        return aiohttp_jinja2.get_env(app)
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("bridge.web", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # templates ship inside the package; no stat() per render
    )
    env.globals["static_url"] = static_url
    return env


async def static_file(request: web.Request) -> web.Response:
    entry = STATIC.get(request.match_info["name"])
    if entry is None:
        return web.Response(status=404, text="not found", headers={"X-Content-Type-Options": "nosniff"})
    data, kind, _ = entry
    return web.Response(body=data, headers={**STATIC_HEADERS, "Content-Type": kind})


def add_static_route(app: web.Application) -> None:
    app.router.add_get("/static/{name}", static_file)
