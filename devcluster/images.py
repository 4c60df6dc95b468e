"""The images the real node runs, made on this machine from the checkout; nothing is pulled.

- the runner image, built by ``hack/build-images.sh runner`` (buildah, from the Dockerfile
  and the checkout) into the project's image storage, written as a docker-archive;
- the pause image, the pod sandbox's process: ``hack/pause/pause.c`` compiled statically
  and written here as a one-layer OCI archive.

:func:`import_archive` loads an archive into containerd's ``k8s.io`` namespace, where the
CRI plugin finds it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAUSE_SOURCE = REPO / "hack" / "pause" / "pause.c"
PAUSE_IMAGE = "localhost/longtask/pause:1"
_BUILD_LINE = re.compile(r"^image (\S+) (\S+) size .* built in ([\d.]+) s archive (\S+)$",
                         re.MULTILINE)


class ImageBuildError(RuntimeError):
    """An image could not be built or imported; the message has the tool's output."""


@dataclass(frozen=True)
class ImageArchive:
    """An image as a file: ``name`` (``registry/repository:tag``) and ``path`` to its
    docker- or OCI-archive; ``seconds`` the build took."""

    name: str
    path: Path
    seconds: float = 0.0


def cache_dir() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/longtask``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "longtask"


def build_runner(*, timeout: float = 1200.0) -> ImageArchive:
    """Build the runner image from the checkout (``hack/build-images.sh runner``) into the
    project's image storage (its layer cache makes a rebuild quick) and archive it under
    :func:`cache_dir`. Raises :class:`ImageBuildError` with the build's output."""
    out = cache_dir() / "images" / "archives"
    started = time.monotonic()
    try:
        result = subprocess.run([str(REPO / "hack" / "build-images.sh"), "--out", str(out),
                                 "runner"], capture_output=True, text=True, timeout=timeout,
                                cwd=REPO)
    except subprocess.TimeoutExpired as err:
        raise ImageBuildError(f"the runner image did not build in {timeout:.0f} s") from err
    match = _BUILD_LINE.search(result.stdout)
    if result.returncode != 0 or match is None:
        raise ImageBuildError(f"hack/build-images.sh runner exited {result.returncode}:\n"
                              f"{result.stdout[-2000:]}{result.stderr[-4000:]}")
    return ImageArchive(match.group(2), Path(match.group(4)), time.monotonic() - started)


_built: dict[str, ImageArchive] = {}


RUNNER_ARCHIVE_ENV = "LONGTASK_KUBE_RUNNER_ARCHIVE"


def archive_name(path: Path) -> str:
    """The image name (first ``RepoTags`` entry) of a docker-archive; ``ImageBuildError``
    when the file is no such archive."""
    try:
        with tarfile.open(path) as archive:
            member = archive.extractfile("manifest.json")
            if member is None:
                raise KeyError("manifest.json")
            return str(json.load(member)[0]["RepoTags"][0])
    except (OSError, KeyError, IndexError, ValueError, tarfile.TarError) as err:
        raise ImageBuildError(f"{path} is not a docker-archive naming its image: {err}") from err


def runner_image() -> ImageArchive:
    """The runner image for the real node: the archive ``$LONGTASK_KUBE_RUNNER_ARCHIVE``
    names (built already, e.g. by the test session for its subprocesses), else
    :func:`build_runner` once per process, so every cluster a test session or the demo
    starts runs the image of the checkout as it was at the first call."""
    if "runner" not in _built:
        given = os.environ.get(RUNNER_ARCHIVE_ENV)
        _built["runner"] = (ImageArchive(archive_name(Path(given)), Path(given)) if given
                            else build_runner())
    return _built["runner"]


def _goarch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _blob(layout: tarfile.TarFile, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    layout.addfile(info, io.BytesIO(data))
    return {"digest": f"sha256:{digest}", "size": len(data)}


def build_pause(folder: Path | None = None) -> ImageArchive:
    """Compile ``hack/pause/pause.c`` statically (gcc) and write the OCI archive of
    :data:`PAUSE_IMAGE` holding it as ``/pause``; cached in ``folder`` (default under
    :func:`cache_dir`) by the source's hash. Raises :class:`ImageBuildError`."""
    source = PAUSE_SOURCE.read_bytes()
    key = hashlib.sha256(source + _goarch().encode()).hexdigest()[:16]
    folder = folder or cache_dir() / "pause"
    archive = folder / f"pause-{key}.oci.tar"
    if archive.exists():
        return ImageArchive(PAUSE_IMAGE, archive)
    folder.mkdir(parents=True, exist_ok=True)
    binary = folder / f"pause-{key}"
    result = subprocess.run(["gcc", "-static", "-Os", "-s", "-o", str(binary),
                             str(PAUSE_SOURCE)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise ImageBuildError(f"gcc could not build {PAUSE_SOURCE} (hack/install-node-deps.sh "
                              f"installs gcc and libc6-dev):\n{result.stderr}")
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tar.gettarinfo(str(binary), arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0
        with binary.open("rb") as handle:
            tar.addfile(info, handle)
    layer_bytes = layer.getvalue()
    tmp = archive.with_suffix(".new")
    with tarfile.open(tmp, mode="w") as layout:
        layer_ref = _blob(layout, layer_bytes)
        config = {"architecture": _goarch(), "os": "linux",
                  "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
                  "rootfs": {"type": "layers", "diff_ids": [layer_ref["digest"]]}}
        config_ref = _blob(layout, json.dumps(config).encode())
        manifest = {"schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               **config_ref},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                **layer_ref}]}
        manifest_ref = _blob(layout, json.dumps(manifest).encode())
        index = {"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest_ref,
            "platform": {"architecture": _goarch(), "os": "linux"},
            "annotations": {"io.containerd.image.name": PAUSE_IMAGE,
                            "org.opencontainers.image.ref.name": PAUSE_IMAGE.rsplit(":")[-1]},
        }]}
        for name, body in (("oci-layout", {"imageLayoutVersion": "1.0.0"}),
                           ("index.json", index)):
            data = json.dumps(body).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            layout.addfile(info, io.BytesIO(data))
    tmp.replace(archive)
    binary.unlink()
    return ImageArchive(PAUSE_IMAGE, archive)


def import_archive(socket: Path, image: ImageArchive, *, timeout: float = 300.0) -> float:
    """``ctr -n k8s.io images import`` of ``image`` through containerd at ``socket``; the
    seconds it took. Raises :class:`ImageBuildError` when ctr fails or the image's name
    is not there afterwards."""
    started = time.monotonic()
    ctr = ["ctr", "--address", str(socket), "--namespace", "k8s.io"]
    result = subprocess.run([*ctr, "images", "import", str(image.path)],
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise ImageBuildError(f"ctr images import {image.path} failed:\n{result.stderr}")
    listed = subprocess.run([*ctr, "images", "ls", "-q"], capture_output=True, text=True,
                            timeout=60).stdout.split()
    if image.name not in listed:
        raise ImageBuildError(f"{image.path} imported, but containerd has no {image.name}: "
                              f"{listed}")
    return time.monotonic() - started
