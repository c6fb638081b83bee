"""DIV2K download: official zips over HTTP(S) with a progress bar, resumed with HTTP Range after a broken
connection, verified, unpacked. urllib only.

Verification. tfsr does not ship the official sizes/checksums of the DIV2K zips (the DIV2K site publishes none,
and we do not copy unverified values). Every archive is verified by:
1. its size against the server's Content-Length;
2. the CRC-32 of every member (``zipfile.testzip``): a corrupted or truncated zip fails here;
3. the SHA-256 in the checksum manifest when it names the archive: ``<root>/checksums.json``
   (``{"DIV2K_train_HR.zip": {"size": ..., "sha256": ...}}``), which tfsr writes after the first verified
   download (later downloads must match it) and which a user may fill in from a trusted source.
A failed check deletes the file and fetches it again (up to ``attempts`` times).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from tfsr.errors import TfsrError

DIV2K_URL = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
URL_ENV = "TFSR_DIV2K_URL"  # a mirror (or a local test server)
MANIFEST = "checksums.json"
CHUNK = 1 << 20


class ChecksumError(Exception):
    pass


def div2k_archives(scale: int, splits: tuple[str, ...] = ("train",)) -> list[str]:
    """The official zip names holding the HR images and the bicubic LR images at ``scale``."""
    return [name for s in splits for name in (f"DIV2K_{s}_HR.zip", f"DIV2K_{s}_LR_bicubic_X{scale}.zip")]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_manifest(root: Path) -> dict:
    try:
        return json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def verify(path: Path, expected: dict, name: str | None = None) -> None:
    """Raise ChecksumError unless ``path`` matches ``expected`` (size, sha256 where given) and is a sound zip."""
    name = name or path.name
    size = path.stat().st_size
    if expected.get("size") is not None and size != expected["size"]:
        raise ChecksumError(f"{name} is {size} bytes, expected {expected['size']}")
    if expected.get("sha256") and sha256_of(path) != expected["sha256"]:
        raise ChecksumError(f"{name} has the wrong SHA-256 (expected {expected['sha256']})")
    with open(path, "rb") as f:  # zipfile reads from the end and accepts anything before the first member
        if f.read(4) != b"PK\x03\x04":
            raise ChecksumError(f"{name} does not start with a zip member")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ChecksumError(f"{name} is not a readable zip ({exc})") from None
    if bad is not None:
        raise ChecksumError(f"{name}: member {bad} fails its CRC-32")


def terminal_progress(name: str, done: int, total: int | None, started: float) -> None:
    rate = done / max(time.monotonic() - started, 1e-6)
    if total:
        eta = (total - done) / rate if rate > 0 else 0
        text = f"{name}: {100 * done / total:5.1f}% {done / 1e6:,.0f}/{total / 1e6:,.0f} MB {rate / 1e6:.1f} MB/s ETA {int(eta) // 60}:{int(eta) % 60:02d}"
    else:
        text = f"{name}: {done / 1e6:,.0f} MB {rate / 1e6:.1f} MB/s"
    print(f"\r{text}", end="\n" if total and done >= total else "", file=sys.stderr, flush=True)


def _fetch(url: str, partial: Path, progress: Callable, timeout: float) -> None:
    """Append the rest of ``url`` to ``partial`` (HTTP Range from its current size)."""
    start = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # nothing left to send: the file is complete
            return
        raise
    with response:
        if start and response.status != 206:  # the server ignored the Range: start over
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        started, done = time.monotonic(), start
        with open(partial, "ab" if start else "wb") as f:
            while block := response.read(CHUNK):
                f.write(block)
                done += len(block)
                progress(partial.name.removesuffix(".part"), done, total, started)
    if total is not None and done < total:
        raise http.client.IncompleteRead(b"", total - done)


def download(url: str, dest: Path, expected: dict, progress: Callable = terminal_progress,
             attempts: int = 4, timeout: float = 60.0) -> dict:  # fmt: skip
    """Download ``url`` to ``dest`` resuming broken transfers; verify; re-fetch on a failed check.

    Returns the verified {"size", "sha256"}. Raises TfsrError when every attempt fails.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    last_error = "no attempt"
    for _ in range(attempts):
        try:
            _fetch(url, partial, progress, timeout)
        except urllib.error.HTTPError as exc:
            raise TfsrError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            if not partial.exists():  # never reached the server: no network, or a wrong address
                raise TfsrError(f"cannot reach {url} ({exc.reason})") from None
            last_error = f"connection lost ({exc.reason}); resuming"
            continue
        except (OSError, http.client.HTTPException) as exc:  # a broken connection: resume from what we have
            last_error = f"connection lost ({type(exc).__name__}); resuming"
            continue
        try:
            verify(partial, expected, dest.name)
        except ChecksumError as exc:
            last_error = str(exc)
            print(f"warning: {exc}; fetching it again", file=sys.stderr)
            partial.unlink(missing_ok=True)
            continue
        os.replace(partial, dest)
        return {"size": dest.stat().st_size, "sha256": expected.get("sha256") or sha256_of(dest)}
    raise TfsrError(f"downloading {url} failed after {attempts} attempts: {last_error}")


def _unpack(archive: Path, root: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            target = (root / member).resolve()
            if not target.is_relative_to(root.resolve()):
                raise TfsrError(f"{archive} holds an entry outside the data folder ({member}); refusing to unpack")
        zf.extractall(root)


def ensure_div2k(root: str | Path, scale: int, base_url: str | None = None, splits: tuple[str, ...] = ("train",),
                 log: Callable[[str], None] = print, progress: Callable = terminal_progress) -> Path:  # fmt: skip
    """``root`` holding DIV2K in the official layout, downloading and unpacking the zips that are missing."""
    root = Path(root)
    base_url = base_url or os.environ.get(URL_ENV) or DIV2K_URL
    wanted = [(name, root / name.removesuffix(".zip").replace(f"_X{scale}", f"/X{scale}")) for name in div2k_archives(scale, splits)]
    missing = [(name, folder) for name, folder in wanted if not folder.is_dir()]
    if not missing:
        return root
    manifest = _load_manifest(root)
    log(f"DIV2K not found in {root}: downloading {', '.join(n for n, _ in missing)} from {base_url}")
    for name, folder in missing:
        archive = root / "downloads" / name
        try:
            if archive.is_file():
                verify(archive, manifest.get(name, {}))
                checked = manifest.get(name) or {"size": archive.stat().st_size, "sha256": sha256_of(archive)}
            else:
                checked = download(base_url.rstrip("/") + "/" + name, archive, manifest.get(name, {}), progress)
        except ChecksumError:
            archive.unlink()
            checked = download(base_url.rstrip("/") + "/" + name, archive, manifest.get(name, {}), progress)
        except TfsrError as exc:
            raise TfsrError(
                f"{exc}. Without network: download {name} from {DIV2K_URL} and unpack it into {root} "
                f"(giving {folder}), or train on any image folder with --data FOLDER"
            ) from None
        manifest[name] = checked
        (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        log(f"unpacking {name}")
        _unpack(archive, root)
        if not folder.is_dir():
            raise TfsrError(f"{archive} did not contain {folder.relative_to(root)}/ (not an official DIV2K zip?)")
        archive.unlink()
    shutil.rmtree(root / "downloads", ignore_errors=True)
    return root
