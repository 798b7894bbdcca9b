"""npm tarballs: fetched once with `npm pack` into a cache, then read member by member.

Tarballs are never extracted, so no name inside them can write outside the output folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from marble.errors import MarbleError


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "marble" / "npm"


def tarball_name(package: str, version: str) -> str:
    """The file `npm pack` writes: "@lobehub/fluent-emoji-3d" -> "lobehub-fluent-emoji-3d-1.1.0.tgz"."""
    return f"{package.removeprefix('@').replace('/', '-')}-{version}.tgz"


def fetch_npm_tarball(package: str, version: str, cache_dir: Path) -> Path:
    """Path of the package's tarball in `cache_dir`, running `npm pack` if it is not there yet."""
    tarball = Path(cache_dir) / tarball_name(package, version)
    if tarball.is_file():
        return tarball
    npm = shutil.which("npm")
    if npm is None:
        raise MarbleError("npm is required to fetch the emoji data: apt-get install npm (or install Node.js)")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    # Pack into a scratch folder so an interrupted download never looks like a cached tarball.
    with tempfile.TemporaryDirectory(dir=tarball.parent, prefix=".npm-pack-") as scratch:
        try:
            result = subprocess.run(
                [npm, "pack", f"{package}@{version}"], cwd=scratch, capture_output=True, text=True, timeout=1800
            )
        except subprocess.TimeoutExpired:
            raise MarbleError(f"npm pack {package}@{version} took over 30 minutes; check the network") from None
        packed = Path(scratch) / tarball.name
        if result.returncode != 0 or not packed.is_file():
            raise MarbleError(f"npm pack {package}@{version} failed:\n{result.stderr[-2000:]}")
        packed.replace(tarball)
    return tarball


def member_names(tarball: Path) -> list[str]:
    """Names of the regular files in a tarball."""
    with tarfile.open(tarball, "r:gz") as archive:
        return [member.name for member in archive.getmembers() if member.isfile()]


def iter_members(tarball: Path, names: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each named regular file, in archive order so gzip is read only once."""
    with tarfile.open(tarball, "r:gz") as archive:
        index = {member.name: member for member in archive.getmembers() if member.isfile()}
        missing = [name for name in names if name not in index]
        if missing:
            raise MarbleError(f"{tarball.name} lacks {len(missing)} expected files, e.g. {missing[:3]}")
        for member in sorted((index[name] for name in set(names)), key=lambda m: m.offset_data):
            yield member.name, archive.extractfile(member).read()


def read_json_member(tarball: Path, name: str):
    return json.loads(dict(iter_members(tarball, [name]))[name])


__all__ = ["default_cache_dir", "tarball_name", "fetch_npm_tarball", "member_names", "iter_members", "read_json_member"]
