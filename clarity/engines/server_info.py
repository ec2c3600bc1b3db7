"""What a session says about its Qdrant server, and which collection a project uses there.

Light on purpose (httpx only, never qdrant-client): `clarity status` imports it.

- `redact(url)`: the URL as shown in messages and status: scheme, host, port and path, never userinfo
  or a query (an API key never appears; it travels in the `api-key` header only).
- `insecure_key(url, api_key)`: the warning when an API key would travel over plain HTTP to a host
  that is not the loopback (None otherwise).
- `collection_for(settings)`: the collection of this project on the server. CLARITY_QDRANT_COLLECTION
  (or a config.json `engine.collection` other than the default `memories`) names it; otherwise it is
  `clarity_<project folder>_<8 hex>` where the hex digits hash the project's git remote `origin`
  (so every clone of one repository, on any machine, shares one collection) or, with no remote, the
  project root's absolute path (one machine). The project root is the one the embedded store's home
  was chosen from (`clarity.project`). One collection per project keeps projects apart without any
  filter to forget (see README "A Qdrant server").
- `probe(url, api_key, collection, timeout_s)`: the server's version and the collection's points
  count, each None when the server did not say within `timeout_s` (status never waits longer).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from clarity.config import Settings

DEFAULT_COLLECTION = "memories"
COLLECTION_VAR = "CLARITY_QDRANT_COLLECTION"


def redact(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "(an unparsable URL)"


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls(url: str) -> bool:
    return urlsplit(url).scheme.lower() == "https"


def insecure_key(url: str, api_key: str | None) -> str | None:
    if not api_key or tls(url) or is_loopback(url):
        return None
    return (f"the Qdrant API key is sent over plain HTTP to {redact(url)}: anyone on the network path can read "
            "it. Use an https:// URL (Qdrant's TLS, or a TLS proxy in front of it).")


def _project_root(home: Path) -> Path:
    parts = home.parts
    return Path(*parts[:-2]) if len(parts) > 2 and parts[-2:] == (".claude", "alunai-clarity") else home


def _origin_url(root: Path) -> str | None:
    """The `origin` remote's URL from the checkout's git config (a plain read; None when absent)."""
    from clarity.project import _common_dir, _gitdir_of

    dot_git = root / ".git"
    gitdir = _gitdir_of(dot_git) if dot_git.exists() else None
    if gitdir is None:
        return None
    try:
        text = (_common_dir(gitdir) / "config").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    m = re.search(r'\[remote "origin"\][^\[]*?^\s*url\s*=\s*(\S+)', text, re.MULTILINE)
    return m.group(1) if m else None


def _normalized_remote(url: str) -> str:
    """git@host:a/b.git, https://user@host/a/b, ssh://git@host/a/b.git -> host/a/b."""
    u = url.strip()
    m = re.match(r"^[\w.-]+@([\w.-]+):(.*)$", u)
    if m:
        host, path = m.group(1), m.group(2)
    else:
        parts = urlsplit(u)
        host, path = parts.hostname or "", parts.path
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[:-4]
    return f"{host.lower()}/{path}"


def derived_collection(home: Path) -> str:
    root = _project_root(home)
    remote = _origin_url(root)
    identity = f"git:{_normalized_remote(remote)}" if remote else f"path:{root}"
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", root.name).strip("-").lower()[:40] or "project"
    return f"clarity_{slug}_{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


def collection_for(settings: Settings) -> str:
    from clarity.config.environment import environment_value

    if environment_value(COLLECTION_VAR) or settings.engine.collection != DEFAULT_COLLECTION:
        return settings.engine.collection
    return derived_collection(settings.home)


def probe(url: str, api_key: str | None, collection: str, timeout_s: float = 2.0) -> dict[str, Any]:
    import httpx

    headers = {"api-key": api_key} if api_key else {}
    out: dict[str, Any] = {"server_version": None, "points": None, "reachable": False, "error": None}
    base = url.rstrip("/")
    try:
        with httpx.Client(timeout=timeout_s, headers=headers) as c:
            r = c.get(base + "/")
            out["reachable"] = True
            if r.status_code == 200:
                out["server_version"] = r.json().get("version")
            r = c.get(f"{base}/collections/{collection}")
            if r.status_code == 200:
                out["points"] = (r.json().get("result") or {}).get("points_count")
            elif r.status_code == 404:
                out["points"] = 0
                out["error"] = "the collection does not exist yet (the first session creates it)"
            else:
                out["error"] = f"HTTP {r.status_code} reading the collection"
    except (httpx.HTTPError, ValueError) as e:
        out["error"] = f"not reachable: {type(e).__name__}"
    return out


def describe(settings: Settings, timeout_s: float = 2.0) -> dict[str, Any]:
    """The server part of `clarity status`: URL (no key), TLS, collection, the probe's figures."""
    e = settings.engine
    assert e.url is not None
    collection = collection_for(settings)
    return {"url": redact(e.url), "tls": tls(e.url), "api_key": bool(e.api_key), "collection": collection,
            "warning": insecure_key(e.url, e.api_key), **probe(e.url, e.api_key, collection, timeout_s)}
