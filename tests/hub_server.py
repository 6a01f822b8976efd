"""A small Hugging Face Hub stand-in on 127.0.0.1 for tests.

It implements the part of the Hub HTTP API that ``huggingface_hub`` (HfApi, HfFileSystem,
hf_hub_download) and ``datasets`` (push_to_hub, load_dataset) call for a dataset repo:
repo info (also at a revision), create_repo, preupload, the git-LFS batch/upload/verify
protocol, commit (ndjson), tree listing, paths-info and file download (``resolve``, with HTTP
Range). Every commit is a full snapshot, so a commit sha works as a revision. Xet is not
implemented: clients must run with ``HF_HUB_DISABLE_XET=1``.

Requests it does not know are answered 404 and recorded in ``HubServer.unknown`` so a test can
show what a new client version started calling.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

_REPO = r"(?P<kind>model|dataset|space)s/(?P<repo>[^/]+/[^/]+)"
_PREFIX = {"dataset": "datasets/", "space": "spaces/", "model": ""}
# Binary-looking or data files go through LFS, as on the Hub (its default .gitattributes).
_LFS_SUFFIXES = (".parquet", ".arrow", ".jpg", ".jpeg", ".png", ".zip", ".tar", ".bin")


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class _File:
    data: bytes
    lfs: bool

    def entry(self, path: str) -> dict:
        out = {
            "type": "file",
            "path": path,
            "size": len(self.data),
            "oid": _git_blob_oid(self.data),
        }
        if self.lfs:
            out["lfs"] = {
                "oid": hashlib.sha256(self.data).hexdigest(),
                "size": len(self.data),
                "pointerSize": 134,
            }
        return out


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    head: str
    snapshots: dict[str, dict[str, _File]] = field(default_factory=dict)

    def files(self, revision: str) -> dict[str, _File] | None:
        sha = self.head if revision in ("main", "refs/heads/main") else revision
        return self.snapshots.get(sha)

    def sha(self, revision: str) -> str | None:
        sha = self.head if revision in ("main", "refs/heads/main") else revision
        return sha if sha in self.snapshots else None


class HubServer:
    """A threaded local Hub. ``url`` is the endpoint to put in ``HF_ENDPOINT``.

    ``token``: when set, write requests must carry ``Authorization: Bearer <token>``.
    ``requests`` records (method, path) of every request; ``auth_headers`` every Authorization.
    """

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.repos: dict[tuple[str, str], _Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.unknown: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.auth_headers: set[str] = set()
        self.lock = threading.Lock()
        self._counter = 0
        handler = type("_Handler", (_Handler,), {"hub": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:  # noqa: PYI034 - py3.10 has no typing.Self
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- state changes (called with the lock held) ------------------------------------------
    def new_sha(self) -> str:
        self._counter += 1
        return hashlib.sha1(f"commit-{self._counter}".encode()).hexdigest()

    def create(self, repo_type: str, repo_id: str, private: bool) -> _Repo:
        sha = self.new_sha()
        files = {".gitattributes": _File(b"*.parquet filter=lfs diff=lfs merge=lfs -text\n", False)}
        repo = _Repo(repo_type, repo_id, private, sha, {sha: files})
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def put(self, repo_type: str, repo_id: str, files: dict[str, bytes]) -> str:
        """A commit made by someone else (tests): add or replace ``files``; returns its sha."""
        with self.lock:
            repo = self.repos[(repo_type, repo_id)]
            snapshot = dict(repo.snapshots[repo.head])
            for path, data in files.items():
                snapshot[path] = _File(data, path.lower().endswith(_LFS_SUFFIXES))
            sha = self.new_sha()
            repo.snapshots[sha] = snapshot
            repo.head = sha
        return sha

    def repo_files(self, repo_type: str, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of a repo at ``revision`` (for assertions in tests)."""
        files = self.repos[(repo_type, repo_id)].files(revision) or {}
        return {path: f.data for path, f in files.items()}


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: tests read hub.requests instead

    # -- plumbing -----------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, status: int, code: str, message: str) -> None:
        self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization")
        if auth:
            self.hub.auth_headers.add(auth)
        return self.hub.token is None or auth == f"Bearer {self.hub.token}"

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        with self.hub.lock:
            self.hub.requests.append((self.command, path))
        routes = _ROUTES.get(self.command if self.command != "HEAD" else "GET", [])
        for pattern, name in routes:
            match = re.fullmatch(pattern, path)
            if match:
                try:
                    getattr(self, name)(query=query, **match.groupdict())
                except Exception as err:  # noqa: BLE001 - a server bug must fail the test, not hang it
                    with self.hub.lock:
                        self.hub.errors.append(f"{self.command} {path}: {err!r}")
                    self._error(400, "BadRequest", f"test hub error: {err!r}")
                return
        with self.hub.lock:
            self.hub.unknown.append((self.command, self.path))
        self._error(404, "NotFound", f"not implemented by the test hub: {self.command} {path}")

    do_GET = do_HEAD = do_POST = do_PUT = _dispatch

    def _repo(self, kind: str, repo: str) -> _Repo | None:
        found = self.hub.repos.get((kind, repo))
        if found is None:
            self._error(404, "RepoNotFound", f"Repository not found: {repo}")
        elif found.private and not self._authorized():
            self._error(401, "RepoNotFound", "Invalid credentials")
            return None
        return found

    # -- API ----------------------------------------------------------------------------------
    def whoami(self, query: dict) -> None:
        if not self._authorized() or not self.headers.get("Authorization"):
            self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            return
        self._json(200, {"type": "user", "name": "tester", "orgs": [], "auth": {}})

    def root(self, query: dict) -> None:
        self._send(200, b"test hub", content_type="text/plain")  # reachability probes

    def agent_harnesses(self, query: dict) -> None:
        self._json(200, {"standardEnvVars": [], "harnesses": {}})

    def validate_yaml(self, query: dict) -> None:
        import yaml

        content = json.loads(self._body())["content"]
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.DOTALL)
        try:
            meta = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as err:
            self._json(400, {"errors": [{"message": str(err)}]})
            return
        if meta is not None and not isinstance(meta, dict):
            self._json(400, {"errors": [{"message": "metadata must be a mapping"}]})
            return
        self._json(200, {"warnings": []})

    def repo_info(self, query: dict, kind: str, repo: str, rev: str = "main") -> None:
        found = self._repo(kind, repo)
        if found is None:
            return
        sha = found.sha(rev)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return
        files = found.snapshots[sha]
        now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        self._json(
            200,
            {
                "_id": hashlib.md5(repo.encode()).hexdigest()[:24],
                "id": repo,
                "author": repo.split("/")[0],
                "sha": sha,
                "private": found.private,
                "gated": False,
                "disabled": False,
                "lastModified": now,
                "createdAt": now,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "cardData": {},
                "siblings": [
                    {"rfilename": p, "size": len(f.data)} for p, f in sorted(files.items())
                ],
            },
        )

    def create_repo(self, query: dict) -> None:
        if not self._authorized():
            self._error(401, "Unauthorized", "Invalid credentials")
            return
        payload = json.loads(self._body() or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or 'tester'}/{payload['name']}"
        with self.hub.lock:
            if (repo_type, repo_id) in self.hub.repos:  # the Hub's 409 names the repo's url too
                message = f"You already created this {repo_type} repo"
                self._json(409, {"error": message,
                                 "url": f"{self.hub.url}/{_PREFIX[repo_type]}{repo_id}"},
                           {"X-Error-Code": "Conflict", "X-Error-Message": message})
                return
            self.hub.create(repo_type, repo_id, payload.get("visibility") == "private")
        self._json(200, {"url": f"{self.hub.url}/{_PREFIX[repo_type]}{repo_id}", "name": repo_id})

    def preupload(self, query: dict, kind: str, repo: str, rev: str) -> None:
        body = json.loads(self._body())
        if not self._authorized():
            self._error(401, "Unauthorized", "Invalid credentials")
            return
        if self._repo(kind, repo) is None:
            return
        files = []
        for item in body["files"]:
            sample = base64.b64decode(item["sample"])
            lfs = item["path"].lower().endswith(_LFS_SUFFIXES) or b"\0" in sample
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": None,
                }
            )
        self._json(200, {"files": files, "commitOid": None})

    def lfs_batch(self, query: dict, prefix: str, repo: str) -> None:
        body = json.loads(self._body())
        if not self._authorized():
            self._error(401, "Unauthorized", "Invalid credentials")
            return
        objects = []
        for obj in body["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.hub.lfs:
                entry["actions"] = {
                    "upload": {"href": f"{self.hub.url}/lfs-upload/{obj['oid']}"},
                    "verify": {"href": f"{self.hub.url}/lfs-verify"},
                }
            objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects})

    def lfs_upload(self, query: dict, oid: str) -> None:
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            self._error(400, "BadRequest", "sha256 of the uploaded content does not match its oid")
            return
        with self.hub.lock:
            self.hub.lfs[oid] = data
        self._send(200)

    def lfs_verify(self, query: dict) -> None:
        body = json.loads(self._body())
        ok = len(self.hub.lfs.get(body["oid"], b"")) == body["size"] and body["oid"] in self.hub.lfs
        self._json(200 if ok else 404, {"ok": ok})

    def commit(self, query: dict, kind: str, repo: str, rev: str) -> None:
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        if not self._authorized():
            self._error(401, "Unauthorized", "Invalid credentials")
            return
        with self.hub.lock:
            found = self._repo(kind, repo)
            if found is None:
                return
            header = next((ln["value"] for ln in lines if ln["key"] == "header"), {})
            if header.get("parentCommit") not in (None, found.head):
                self._error(412, "PreconditionFailed", "parentCommit is not the head of the branch")
                return
            files = dict(found.snapshots[found.head])
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "file":
                    files[value["path"]] = _File(base64.b64decode(value["content"]), False)
                elif key == "lfsFile":
                    if value["oid"] not in self.hub.lfs:
                        self._error(
                            422, "BadRequest", f"LFS object {value['oid']} was never uploaded"
                        )
                        return
                    files[value["path"]] = _File(self.hub.lfs[value["oid"]], True)
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: f for p, f in files.items() if not p.startswith(prefix)}
            sha = self.hub.new_sha()
            found.snapshots[sha] = files
            found.head = sha
        url = f"{self.hub.url}/{_PREFIX[kind]}{repo}/commit/{sha}"
        self._json(
            200, {"commitUrl": url, "commitOid": sha, "pullRequestUrl": None, "success": True}
        )

    def _snapshot(self, kind: str, repo: str, rev: str) -> tuple[_Repo, dict[str, _File]] | None:
        found = self._repo(kind, repo)
        if found is None:
            return None
        files = found.files(rev)
        if files is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return None
        return found, files

    def tree(self, query: dict, kind: str, repo: str, rev: str, path: str | None) -> None:
        got = self._snapshot(kind, repo, rev)
        if got is None:
            return
        _, files = got
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        base = (path or "").strip("/")
        prefix = base + "/" if base else ""
        entries: dict[str, dict] = {}
        for file_path, f in sorted(files.items()):
            if not file_path.startswith(prefix):
                continue
            rest = file_path[len(prefix) :].split("/")
            for depth in range(1, len(rest)):  # the folders on the way
                folder = prefix + "/".join(rest[:depth])
                if recursive or depth == 1:
                    entries.setdefault(
                        folder,
                        {
                            "type": "directory",
                            "path": folder,
                            "oid": _git_blob_oid(folder.encode()),
                        },
                    )
            if recursive or len(rest) == 1:
                entries[file_path] = f.entry(file_path)
        if base and not entries:
            self._error(404, "EntryNotFound", f"{path} does not exist on {rev}")
            return
        self._json(200, list(entries.values()))

    def paths_info(self, query: dict, kind: str, repo: str, rev: str) -> None:
        form = parse_qs(self._body().decode())
        got = self._snapshot(kind, repo, rev)
        if got is None:
            return
        _, files = got
        out = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in files:
                out.append(files[path].entry(path))
            elif any(p.startswith(path + "/") for p in files):
                out.append({"type": "directory", "path": path, "oid": _git_blob_oid(path.encode())})
        self._json(200, out)

    def resolve(self, query: dict, prefix: str, repo: str, rev: str, path: str) -> None:
        repo_type = {"datasets/": "dataset", "spaces/": "space", "": "model"}[prefix]
        got = self._snapshot(repo_type, repo, rev)
        if got is None:
            return
        found, files = got
        if path not in files:
            self._error(404, "EntryNotFound", f"{path} does not exist on {rev}")
            return
        f = files[path]
        etag = hashlib.sha256(f.data).hexdigest() if f.lfs else _git_blob_oid(f.data)
        headers = {
            "ETag": f'"{etag}"',
            "X-Repo-Commit": found.sha(rev) or "",
            "Accept-Ranges": "bytes",
        }
        data, status = f.data, 200
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if match and data:
            start = (
                int(match.group(1)) if match.group(1) else max(0, len(data) - int(match.group(2)))
            )
            end = int(match.group(2)) if match.group(1) and match.group(2) else len(data) - 1
            end = min(end, len(data) - 1)
            if start >= len(data):
                self._send(416, headers={"Content-Range": f"bytes */{len(data)}"})
                return
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        self._send(status, data, headers, content_type="application/octet-stream")


_REV = r"(?P<rev>[^/]+)"
_ROUTES: dict[str, list[tuple[str, str]]] = {
    "GET": [
        (r"/", "root"),
        (r"/api/whoami-v2", "whoami"),
        (r"/api/agent-harnesses", "agent_harnesses"),
        (rf"/api/{_REPO}", "repo_info"),
        (rf"/api/{_REPO}/revision/{_REV}", "repo_info"),
        (rf"/api/{_REPO}/tree/{_REV}(?:/(?P<path>.*))?", "tree"),
        (
            rf"/(?P<prefix>datasets/|spaces/|)(?P<repo>[^/]+/[^/]+)/resolve/{_REV}/(?P<path>.+)",
            "resolve",
        ),
    ],
    "POST": [
        (r"/api/repos/create", "create_repo"),
        (r"/api/validate-yaml", "validate_yaml"),
        (rf"/api/{_REPO}/preupload/{_REV}", "preupload"),
        (rf"/api/{_REPO}/commit/{_REV}", "commit"),
        (rf"/api/{_REPO}/paths-info/{_REV}", "paths_info"),
        (
            r"/(?P<prefix>datasets/|spaces/|)(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch",
            "lfs_batch",
        ),
        (r"/lfs-verify", "lfs_verify"),
    ],
    "PUT": [(r"/lfs-upload/(?P<oid>[0-9a-f]{64})", "lfs_upload")],
}
