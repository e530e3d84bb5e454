"""A loopback Hugging Face Hub server for tests (standard library only).

``LoopbackHub`` speaks the subset of the Hub HTTP API that the *real* ``huggingface_hub`` client uses to
create a repo, push files (regular files inline in the commit, binaries through the git-LFS "basic" transfer)
and read them back (``hf_hub_download`` / ``snapshot_download`` / ``from_pretrained``)::

    with LoopbackHub() as hub:                       # 127.0.0.1, free port, background thread
        api = HfApi(endpoint=hub.url, token=hub.token)
        api.create_repo("org/tiny")
        api.upload_folder(repo_id="org/tiny", folder_path=d)
        hub.commits[-1].paths, hub.token_seen

Endpoints (``{type}`` is ``models`` / ``datasets`` / ``spaces``; ``{repo}`` is ``ns/name``):

* ``GET  /api/whoami-v2``                                    (auth required)
* ``POST /api/repos/create``, ``DELETE /api/repos/delete``    (auth required)
* ``POST /api/validate-yaml``
* ``GET  /api/{type}/{repo}`` and ``/api/{type}/{repo}/revision/{rev}``  (repo info: ``sha`` + ``siblings``)
* ``GET  /api/{type}/{repo}/tree/{rev}[/{path}]``            (``?recursive=``, ``?expand=``)
* ``POST /api/{type}/{repo}/paths-info/{rev}``
* ``GET  /api/{type}/{repo}/refs``
* ``POST /api/{type}/{repo}/preupload/{rev}``                (auth required; decides ``lfs`` vs ``regular``)
* ``POST /api/{type}/{repo}/commit/{rev}``                   (auth required; NDJSON: header/file/lfsFile/
  deletedFile/deletedFolder; ``?create_pr=1`` opens ``refs/pr/N``)
* ``POST /[{type}/]{repo}.git/info/lfs/objects/batch``      (auth required; hands out upload/verify hrefs
  that point back to this server: ``PUT /__lfs__/upload/{oid}``, ``POST /__lfs__/verify``)
* ``HEAD|GET /[{type}/]{repo}/resolve/{rev}/{path}``         (``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag``,
  ``X-Linked-Size``, ``Content-Length``, ``Range`` support; errors carry ``X-Error-Code`` =
  ``RepoNotFound`` / ``RevisionNotFound`` / ``EntryNotFound`` like the Hub so the client raises the right class)

Xet is never advertised (no ``X-Xet-*`` headers, no xet transfer). Note however that the *upload* side of
``huggingface_hub`` picks Xet purely client-side (``hf_xet`` installed and not ``HF_HUB_DISABLE_XET``), so the
client must run with ``HF_HUB_DISABLE_XET=1`` / ``huggingface_hub.constants.HF_HUB_DISABLE_XET = True``; the
``loopback_hub`` fixture in ``tests/hub_fixtures.py`` does that.

Auth: write endpoints need ``Authorization: Bearer <token>`` with a token in ``valid_tokens``; otherwise 401 +
JSON ``{"error": ...}`` (and ``X-Error-Message``), which the client turns into a plain ``HfHubHTTPError``
with ``response.status_code == 401``. Reads of public repos need no token; private repos answer 401
``RepoNotFound`` to anonymous / bad-token readers, like the Hub.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import re
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["LoopbackHub", "RecordedCommit", "DEFAULT_TOKEN"]

DEFAULT_TOKEN = "hf_test_xyz"

_TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_PLURAL_TO_TYPE = {"models": "model", "datasets": "dataset", "spaces": "space"}
_REPO_SUBROUTES = {"revision", "tree", "paths-info", "preupload", "commit", "refs"}

# What the Hub puts in the `.gitattributes` of a new repo (abridged): files matching these go through LFS.
_DEFAULT_LFS_PATTERNS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack *.npy *.npz "
    "*.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors saved_model/**/* *.tar.* *.tar "
    "*.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents*"
).split()
_DEFAULT_GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in _DEFAULT_LFS_PATTERNS).encode()
_LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # the Hub sends files >10MB to LFS regardless of their name


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class _Entry:
    """One file in one snapshot. `lfs_sha256` is set for LFS files (content lives in the LFS store)."""

    data: bytes
    lfs_sha256: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def blob_id(self) -> str:  # git oid of what git stores: the pointer for LFS files
        return _git_blob_sha1(self.pointer if self.lfs_sha256 else self.data)

    @property
    def pointer(self) -> bytes:
        assert self.lfs_sha256 is not None
        return _lfs_pointer(self.lfs_sha256, self.size)

    @property
    def etag(self) -> str:
        return self.lfs_sha256 or _git_blob_sha1(self.data)


@dataclass
class _CommitObj:
    oid: str
    parent: str | None
    title: str
    date: str
    files: dict[str, _Entry]


@dataclass
class _Repo:
    repo_id: str
    repo_type: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit oid (includes refs/pr/N)
    commits: dict[str, _CommitObj] = field(default_factory=dict)
    n_prs: int = 0


@dataclass(frozen=True)
class RecordedCommit:
    """A commit received on the commit endpoint (the repo's initial `.gitattributes` commit is not recorded)."""

    repo_id: str
    repo_type: str
    revision: str  # branch the commit landed on ("main", or "refs/pr/N" with create_pr)
    oid: str
    summary: str
    description: str
    paths: tuple[str, ...]  # every added/updated path, in payload order
    lfs_paths: tuple[str, ...]  # the subset committed as LFS pointers (`lfsFile` lines)
    deleted_paths: tuple[str, ...]
    parent_commit: str | None  # the `parentCommit` the client sent, if any
    url: str  # the commitUrl returned to the client
    token: str | None


class _HttpError(Exception):
    def __init__(
        self, status: int, message: str, *, code: str | None = None, headers: dict | None = None, extra: dict | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.extra = extra or {}  # additional keys of the JSON error body


class LoopbackHub:
    """In-memory Hub on 127.0.0.1 serving the real ``huggingface_hub`` client. Context manager.

    Args:
        valid_tokens: bearer tokens accepted for writes (``None`` = any non-empty token). Default ``{DEFAULT_TOKEN}``.
        user: username returned by ``whoami`` and used as namespace for ``create_repo("name")``.
        lfs_redirect_host: if set (e.g. ``"localhost"``), ``resolve`` answers LFS files with a 302 to
            ``http://{lfs_redirect_host}:{port}/__lfs__/objects/{sha256}`` like the Hub's CDN redirect (a
            different origin, so the client keeps the HEAD metadata and drops its auth header). Default: serve
            the bytes directly.

    Attributes: ``url``, ``token`` (a valid token), ``commits`` (list of :class:`RecordedCommit`),
    ``token_seen`` (every bearer token received, in order), ``requests`` (``(method, path, status)`` log).
    """

    def __init__(
        self,
        valid_tokens: Iterable[str] | None = (DEFAULT_TOKEN,),
        *,
        user: str = "test-user",
        lfs_redirect_host: str | None = None,
    ) -> None:
        self.valid_tokens = None if valid_tokens is None else set(valid_tokens)
        self.token = next(iter(self.valid_tokens), DEFAULT_TOKEN) if self.valid_tokens else DEFAULT_TOKEN
        self.user = user
        self.lfs_redirect_host = lfs_redirect_host
        self.commits: list[RecordedCommit] = []
        self.token_seen: list[str] = []
        self.requests: list[tuple[str, str, int]] = []
        self.repos: dict[tuple[str, str], _Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content (uploaded through the LFS basic transfer)
        self._lfs_pending: set[str] = set()  # oids handed out by the batch endpoint, not yet uploaded
        self._lock = threading.RLock()
        self._counter = itertools.count()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self.url = ""
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LoopbackHub":
        if self._server is not None:
            return self
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:  # wake handler threads parked on idle keep-alive connections
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "LoopbackHub":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers for tests
    def repo_files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """Content of every file of `repo_id` at `revision` (LFS files resolved to their content)."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            commit = self._resolve_rev(repo, revision)
            return {path: entry.data for path, entry in commit.files.items()}

    def head(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        """Commit oid of `revision`."""
        with self._lock:
            return self._resolve_rev(self._get_repo(repo_type, repo_id), revision).oid

    # ------------------------------------------------------------------ state (call with self._lock held)
    def _new_oid(self, *parts: Any) -> str:
        return hashlib.sha1(json.dumps([next(self._counter), *map(str, parts)]).encode()).hexdigest()

    def _get_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise _HttpError(404, f"Repository Not Found for {repo_type} '{repo_id}'.", code="RepoNotFound")
        return repo

    def _resolve_rev(self, repo: _Repo, revision: str) -> _CommitObj:
        oid = repo.branches.get(revision)
        if oid is None and re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [c for c in repo.commits if c.startswith(revision)]
            oid = matches[0] if len(matches) == 1 else None
        if oid is None:
            raise _HttpError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return repo.commits[oid]

    def _add_commit(self, repo: _Repo, branch: str, title: str, files: dict[str, _Entry]) -> _CommitObj:
        parent = repo.branches.get(branch)
        commit = _CommitObj(self._new_oid(repo.repo_id, parent, title), parent, title, _now_iso(), files)
        repo.commits[commit.oid] = commit
        repo.branches[branch] = commit.oid
        return commit

    def _is_lfs_path(self, files: dict[str, _Entry], path: str, size: int, sample: bytes) -> bool:
        patterns = list(_DEFAULT_LFS_PATTERNS)
        attrs = files.get(".gitattributes")
        if attrs is not None:
            patterns += [ln.split()[0] for ln in attrs.data.decode(errors="replace").splitlines()
                         if "filter=lfs" in ln and ln.split()]
        name = path.rsplit("/", 1)[-1]
        for pat in patterns:
            target = path if "/" in pat else name
            if fnmatch.fnmatch(target, pat.replace("**/", "*")):
                return True
        return size >= _LFS_SIZE_THRESHOLD or b"\0" in sample

    def _repo_url(self, repo: _Repo) -> str:
        return f"{self.url}/{_TYPE_PREFIX[repo.repo_type]}{repo.repo_id}"


class _Handler(BaseHTTPRequestHandler):
    hub: LoopbackHub
    protocol_version = "HTTP/1.1"
    server_version = "LoopbackHub/1.0"
    timeout = 60  # idle keep-alive connections are dropped after this

    # ------------------------------------------------------------------ plumbing
    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._conns.add(self.connection)

    def finish(self) -> None:
        with self.hub._lock:
            self.hub._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        if getattr(self, "_body", None) is not None:
            return self._body
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self._body = b"".join(chunks)
        else:
            self._body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return self._body

    def _json_body(self) -> Any:
        try:
            return json.loads(self._read_body() or b"{}")
        except ValueError:
            raise _HttpError(400, "Invalid JSON body")

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, *, content_length: int | None = None):
        self._status = status
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json")
        for key, value in headers.items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(body) if content_length is None else content_length))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _send_json(self, data: Any, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _bearer(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        if not auth.lower().startswith("bearer "):
            return None
        return auth[7:].strip() or None

    def _token_ok(self, token: str | None) -> bool:
        valid = self.hub.valid_tokens
        return token is not None and (valid is None or token in valid)

    def _require_auth(self) -> str:
        token = self._bearer()
        if token is None:
            raise _HttpError(401, "Authorization header is required for this endpoint (Bearer token).")
        if not self._token_ok(token):
            raise _HttpError(401, "Invalid credentials in Authorization header")
        return token

    def _check_read(self, repo: _Repo) -> None:
        if repo.private and not self._token_ok(self._bearer()):
            raise _HttpError(401, "Repository not found", code="RepoNotFound")

    # ------------------------------------------------------------------ routing
    def _dispatch(self, method: str) -> None:
        self._status = 0
        self._body = None
        split = urlsplit(self.path)
        self._query = parse_qs(split.query)
        raw_segments = [s for s in split.path.split("/") if s != ""]
        segs = [unquote(s) for s in raw_segments]
        token = self._bearer()
        if token is not None:
            with self.hub._lock:
                self.hub.token_seen.append(token)
        try:
            if method in ("POST", "PUT", "DELETE"):
                self._read_body()  # read the whole request body up front (keeps keep-alive in sync on errors)
            self._route(method, segs)
        except _HttpError as err:
            headers = dict(err.headers)
            headers["X-Error-Message"] = err.message
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send_json({"error": err.message, **err.extra}, err.status, headers)
        except Exception as err:  # pragma: no cover - surfaced to the client as a 500
            self._send_json({"error": f"LoopbackHub internal error: {type(err).__name__}: {err}"}, 500)
        finally:
            with self.hub._lock:
                self.hub.requests.append((method, self.path, self._status))

    def _route(self, method: str, segs: list[str]) -> None:
        hub = self.hub
        if segs[:1] == ["__lfs__"]:
            return self._lfs_storage(method, segs[1:])
        if segs[:1] == ["api"]:
            rest = segs[1:]
            if rest == ["whoami-v2"] and method == "GET":
                return self._whoami()
            if rest == ["repos", "create"] and method == "POST":
                return self._create_repo()
            if rest == ["repos", "delete"] and method == "DELETE":
                return self._delete_repo()
            if rest == ["validate-yaml"] and method == "POST":
                return self._send_json({"errors": [], "warnings": []})
            if rest and rest[0] in _PLURAL_TO_TYPE:
                repo_type = _PLURAL_TO_TYPE[rest[0]]
                repo_id, sub = self._split_repo(repo_type, rest[1:], lambda r: not r or r[0] in _REPO_SUBROUTES)
                return self._repo_api(method, repo_type, repo_id, sub)
            raise _HttpError(404, f"LoopbackHub: unsupported API route {method} {self.path}")
        # /[{type}/]{repo}.git/info/lfs/objects/batch  and  /[{type}/]{repo}/resolve/{rev}/{path}
        repo_type = "model"
        if segs and segs[0] in ("datasets", "spaces"):
            repo_type, segs = _PLURAL_TO_TYPE[segs[0]], segs[1:]
        if segs[-4:] == ["info", "lfs", "objects", "batch"] and method == "POST" and len(segs) >= 5:
            repo_id = "/".join(segs[:-4])
            if not repo_id.endswith(".git"):
                raise _HttpError(404, "Not a git LFS endpoint")
            return self._lfs_batch(repo_type, repo_id[: -len(".git")])
        if method in ("GET", "HEAD"):
            for n in (2, 1):
                if len(segs) >= n + 3 and segs[n] == "resolve":
                    repo_id = "/".join(segs[:n])
                    with hub._lock:
                        known = (repo_type, repo_id) in hub.repos
                    if known or n == 1:
                        return self._resolve(repo_type, repo_id, segs[n + 1], "/".join(segs[n + 2 :]))
        raise _HttpError(404, f"LoopbackHub: unsupported route {method} {self.path}")

    def _split_repo(self, repo_type: str, segs: list[str], ok) -> tuple[str, list[str]]:
        """Split `ns/name/<subroute...>` (or `name/<subroute...>`) into repo id and the rest."""
        candidates = [("/".join(segs[:n]), segs[n:]) for n in (2, 1) if len(segs) >= n and ok(segs[n:])]
        with self.hub._lock:
            for repo_id, rest in candidates:
                if (repo_type, repo_id) in self.hub.repos:
                    return repo_id, rest
        if not candidates:
            raise _HttpError(404, f"LoopbackHub: unsupported route {self.command} {self.path}")
        return candidates[0]

    # ------------------------------------------------------------------ account / repo management
    def _whoami(self) -> None:
        token = self._require_auth()
        self._send_json(
            {
                "type": "user",
                "id": hashlib.sha1(self.hub.user.encode()).hexdigest()[:24],
                "name": self.hub.user,
                "fullname": self.hub.user,
                "email": None,
                "emailVerified": False,
                "isPro": False,
                "canPay": False,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "loopback", "role": "write",
                                                                 "createdAt": _now_iso()}},
                "_token_tail": token[-4:],
            }
        )

    def _create_repo(self) -> None:
        self._require_auth()
        payload = self._json_body()
        name, org = payload.get("name"), payload.get("organization")
        repo_type = payload.get("type") or "model"
        if not name or repo_type not in _TYPE_PREFIX:
            raise _HttpError(400, "Invalid repo name or type")
        repo_id = f"{org or self.hub.user}/{name}"
        private = bool(payload.get("private")) or payload.get("visibility") == "private"
        hub = self.hub
        with hub._lock:
            if (repo_type, repo_id) in hub.repos:
                url = hub._repo_url(hub.repos[(repo_type, repo_id)])  # the Hub sends it; exist_ok=True reads it
                raise _HttpError(409, f"You already created this {repo_type} repo: {repo_id}", extra={"url": url})
            repo = _Repo(repo_id, repo_type, private, _now_iso())
            hub.repos[(repo_type, repo_id)] = repo
            hub._add_commit(repo, "main", "initial commit", {".gitattributes": _Entry(_DEFAULT_GITATTRIBUTES)})
            url = hub._repo_url(repo)
        self._send_json({"url": url, "name": repo_id, "id": uuid.uuid4().hex[:24]})

    def _delete_repo(self) -> None:
        self._require_auth()
        payload = self._json_body()
        repo_id = f"{payload.get('organization') or self.hub.user}/{payload.get('name')}"
        with self.hub._lock:
            self.hub._get_repo(payload.get("type") or "model", repo_id)
            del self.hub.repos[(payload.get("type") or "model", repo_id)]
        self._send(200, b"", {"Content-Type": "text/plain"})

    # ------------------------------------------------------------------ /api/{type}s/{repo}/...
    def _repo_api(self, method: str, repo_type: str, repo_id: str, sub: list[str]) -> None:
        hub = self.hub
        token = None
        if method in ("POST", "PUT", "DELETE") and sub[:1] in (["preupload"], ["commit"]):
            token = self._require_auth()
        with hub._lock:
            repo = hub._get_repo(repo_type, repo_id)
            if method == "GET" and not sub:
                self._check_read(repo)
                return self._repo_info(repo, "main")
            if method == "GET" and sub[:1] == ["revision"] and len(sub) >= 2:
                self._check_read(repo)
                return self._repo_info(repo, "/".join(sub[1:]))
            if method == "GET" and sub == ["refs"]:
                self._check_read(repo)
                branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid}
                            for b, oid in repo.branches.items() if not b.startswith("refs/pr/")]
                prs = [{"name": b, "ref": b, "targetCommit": oid}
                       for b, oid in repo.branches.items() if b.startswith("refs/pr/")]
                data: dict = {"branches": branches, "converts": [], "tags": []}
                if self._query.get("include_prs", ["0"])[0] in ("1", "true", "True"):
                    data["pullRequests"] = prs
                return self._send_json(data)
            if method == "GET" and sub[:1] == ["tree"] and len(sub) >= 2:
                self._check_read(repo)
                return self._tree(repo, sub[1], "/".join(sub[2:]))
            if method == "POST" and sub[:1] == ["paths-info"] and len(sub) >= 2:
                self._check_read(repo)
                return self._paths_info(repo, "/".join(sub[1:]))
            if method == "POST" and sub[:1] == ["preupload"] and len(sub) >= 2:
                return self._preupload(repo, "/".join(sub[1:]))
            if method == "POST" and sub[:1] == ["commit"] and len(sub) >= 2:
                return self._commit(repo, "/".join(sub[1:]), token)
        raise _HttpError(404, f"LoopbackHub: unsupported route {method} {self.path}")

    def _repo_info(self, repo: _Repo, revision: str) -> None:
        commit = self.hub._resolve_rev(repo, revision)
        blobs = self._query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.blob_id)
                if entry.lfs_sha256:
                    sibling["lfs"] = {"size": entry.size, "sha256": entry.lfs_sha256,
                                      "pointerSize": len(entry.pointer)}
            siblings.append(sibling)
        author = repo.repo_id.split("/")[0]
        self._send_json(
            {
                "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "author": author,
                "sha": commit.oid,
                "lastModified": commit.date,
                "createdAt": repo.created_at,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
                "usedStorage": sum(e.size for e in commit.files.values()),
            }
        )

    def _file_json(self, path: str, entry: _Entry, commit: _CommitObj, expand: bool) -> dict:
        data: dict[str, Any] = {"type": "file", "oid": entry.blob_id, "size": entry.size, "path": path}
        if entry.lfs_sha256:
            data["lfs"] = {"oid": entry.lfs_sha256, "size": entry.size, "pointerSize": len(entry.pointer)}
        if expand:
            data["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
        return data

    def _folder_json(self, path: str, commit: _CommitObj, expand: bool) -> dict:
        data: dict[str, Any] = {"type": "directory", "oid": hashlib.sha1(f"{commit.oid}:{path}".encode()).hexdigest(),
                                "size": 0, "path": path}
        if expand:
            data["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
        return data

    def _tree(self, repo: _Repo, revision: str, path: str) -> None:
        commit = self.hub._resolve_rev(repo, revision)
        recursive = self._query.get("recursive", ["false"])[0].lower() in ("1", "true")
        expand = self._query.get("expand", ["false"])[0].lower() in ("1", "true")
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in commit.files):
            raise _HttpError(404, f"Entry not found: {path}", code="EntryNotFound",
                             headers={"X-Repo-Commit": commit.oid})
        files, folders = [], set()
        for p, entry in sorted(commit.files.items()):
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix):].split("/")
            dirs = [prefix + "/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
            if recursive:
                folders.update(dirs)
                files.append((p, entry))
            elif dirs:
                folders.add(dirs[0])
            else:
                files.append((p, entry))
        out = [self._folder_json(d, commit, expand) for d in sorted(folders)]
        out += [self._file_json(p, e, commit, expand) for p, e in files]
        self._send_json(out)

    def _paths_info(self, repo: _Repo, revision: str) -> None:
        commit = self.hub._resolve_rev(repo, revision)
        body = self._read_body()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            payload = json.loads(body or b"{}")
            paths, expand = payload.get("paths", []), bool(payload.get("expand"))
        else:
            form = parse_qs(body.decode())
            paths = form.get("paths", [])
            expand = form.get("expand", ["False"])[0].lower() in ("1", "true")
        out = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                out.append(self._file_json(path, commit.files[path], commit, expand))
            elif any(p.startswith(path + "/") for p in commit.files):
                out.append(self._folder_json(path, commit, expand))
        self._send_json(out)

    # ------------------------------------------------------------------ upload
    def _preupload(self, repo: _Repo, revision: str) -> None:
        payload = self._json_body()
        branch_oid = repo.branches.get(revision)
        files = repo.commits[branch_oid].files if branch_oid else {}
        out = []
        for f in payload.get("files", []):
            path, size = f["path"], int(f.get("size", 0))
            sample = base64.b64decode(f.get("sample") or b"")
            lfs = self.hub._is_lfs_path(files, path, size, sample)
            existing = files.get(path)
            oid = None
            if existing is not None:
                oid = existing.lfs_sha256 if lfs else (None if existing.lfs_sha256 else existing.blob_id)
            out.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._send_json({"files": out, "commitOid": branch_oid})

    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        self._require_auth()
        payload = self._json_body()
        hub = self.hub
        with hub._lock:
            hub._get_repo(repo_type, repo_id)
            if payload.get("operation") != "upload":
                raise _HttpError(400, "LoopbackHub only supports LFS uploads through the batch API")
            objects = []
            for obj in payload.get("objects", []):
                oid, size = obj["oid"], int(obj["size"])
                entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
                if oid not in hub.lfs_objects:
                    hub._lfs_pending.add(oid)
                    entry["actions"] = {
                        "upload": {"href": f"{hub.url}/__lfs__/upload/{oid}?size={size}", "header": {}},
                        "verify": {"href": f"{hub.url}/__lfs__/verify", "header": {}},
                    }
                objects.append(entry)
        self._send_json({"transfer": "basic", "objects": objects}, headers={"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_storage(self, method: str, segs: list[str]) -> None:
        hub = self.hub
        if method == "PUT" and len(segs) == 2 and segs[0] == "upload":  # like a presigned S3 PUT: no auth header
            oid, data = segs[1], self._read_body()
            with hub._lock:
                if oid not in hub._lfs_pending and oid not in hub.lfs_objects:
                    raise _HttpError(403, "No pending LFS upload for this oid")
            if hashlib.sha256(data).hexdigest() != oid:
                raise _HttpError(400, "LFS upload content does not match its sha256 oid")
            with hub._lock:
                hub.lfs_objects[oid] = data
                hub._lfs_pending.discard(oid)
            return self._send(200, b"", {"ETag": f'"{hashlib.md5(data).hexdigest()}"', "Content-Type": "text/plain"})
        if method == "POST" and segs == ["verify"]:
            self._require_auth()
            payload = self._json_body()
            with hub._lock:
                data = hub.lfs_objects.get(payload.get("oid"))
            if data is None or len(data) != int(payload.get("size", -1)):
                raise _HttpError(404, "LFS object not found or size mismatch")
            return self._send_json({"success": True})
        if method in ("GET", "HEAD") and len(segs) == 2 and segs[0] == "objects":  # "CDN" for lfs_redirect_host
            with hub._lock:
                data = hub.lfs_objects.get(segs[1])
            if data is None:
                raise _HttpError(404, "LFS object not found")
            return self._send_bytes(data, {"ETag": f'"{segs[1]}"'})
        raise _HttpError(404, f"LoopbackHub: unsupported LFS route {method} {self.path}")

    def _commit(self, repo: _Repo, revision: str, token: str | None) -> None:
        hub = self.hub
        create_pr = self._query.get("create_pr", ["0"])[0] in ("1", "true", "True")
        lines = [json.loads(ln) for ln in self._read_body().splitlines() if ln.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _HttpError(400, "Commit payload must start with a header line")
        header = lines[0]["value"]
        summary, description = header.get("summary") or "", header.get("description") or ""
        if not summary:
            raise _HttpError(400, "Commit summary is required")
        base_oid = repo.branches.get(revision)
        if base_oid is None:
            raise _HttpError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        parent = header.get("parentCommit")
        if parent is not None and parent != base_oid:
            raise _HttpError(412, f"A commit has happened since. Please refresh and try again. ({parent} != {base_oid})")
        files = dict(repo.commits[base_oid].files)
        paths, lfs_paths, deleted = [], [], []
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = value.get("path", "")
            if key == "file":
                content = value.get("content", "")
                data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                files[path] = _Entry(data)
                paths.append(path)
            elif key == "lfsFile":
                data = hub.lfs_objects.get(value.get("oid"))
                if data is None:
                    raise _HttpError(422, f"LFS object {value.get('oid')} for '{path}' was never uploaded")
                files[path] = _Entry(data, lfs_sha256=value["oid"])
                paths.append(path)
                lfs_paths.append(path)
            elif key == "deletedFile":
                if path not in files:
                    raise _HttpError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
                del files[path]
                deleted.append(path)
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                gone = [p for p in files if p.startswith(prefix)]
                if not gone:
                    raise _HttpError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
                for p in gone:
                    del files[p]
                deleted.append(path)
            else:
                raise _HttpError(400, f"Unsupported commit operation {key!r}")
        branch = revision
        if create_pr:
            repo.n_prs += 1
            branch = f"refs/pr/{repo.n_prs}"
            repo.branches[branch] = base_oid
        commit = hub._add_commit(repo, branch, summary, files)
        repo_url = hub._repo_url(repo)
        commit_url = f"{repo_url}/commit/{commit.oid}"
        hub.commits.append(
            RecordedCommit(repo.repo_id, repo.repo_type, branch, commit.oid, summary, description, tuple(paths),
                           tuple(lfs_paths), tuple(deleted), parent, commit_url, token)
        )
        self._send_json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": commit_url,
                "hookOutput": "",
                "pullRequestUrl": f"{repo_url}/discussions/{repo.n_prs}" if create_pr else None,
            }
        )

    # ------------------------------------------------------------------ download
    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        hub = self.hub
        with hub._lock:
            repo = hub._get_repo(repo_type, repo_id)
            self._check_read(repo)
            commit = hub._resolve_rev(repo, revision)
            entry = commit.files.get(path)
        headers = {"X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes"}
        if entry is None:
            raise _HttpError(404, "Entry not found", code="EntryNotFound", headers=headers)
        headers["ETag"] = f'"{entry.etag}"'
        if entry.lfs_sha256:
            headers["X-Linked-Etag"] = f'"{entry.lfs_sha256}"'
            headers["X-Linked-Size"] = str(entry.size)
            if hub.lfs_redirect_host:
                location = f"http://{hub.lfs_redirect_host}:{hub.port}/__lfs__/objects/{entry.lfs_sha256}"
                headers.update({"Location": location, "Content-Type": "text/plain"})
                return self._send(302, b"", headers)
        self._send_bytes(entry.data, headers)

    def _send_bytes(self, data: bytes, headers: dict) -> None:
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes", **headers}
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip()) if rng else None
        if m and (m.group(1) or m.group(2)):
            total = len(data)
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), total - 1) if m.group(2) else total - 1
            else:  # suffix range: last N bytes
                start, end = max(total - int(m.group(2)), 0), total - 1
            if start >= total or start > end:
                headers["Content-Range"] = f"bytes */{total}"
                return self._send(416, b"", headers)
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
            return self._send(206, data[start : end + 1], headers)
        self._send(200, data, headers)


if __name__ == "__main__":  # manual use: python tests/hub_server.py
    import time

    with LoopbackHub() as _hub:
        print(f"LoopbackHub on {_hub.url} (token {_hub.token}); Ctrl-C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
