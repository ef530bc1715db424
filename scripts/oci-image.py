#!/usr/bin/env python3
"""Packs static programs into a `FROM scratch` OCI image archive, reproducibly.

The archive is an OCI image layout in a tar (`oci-layout`, `index.json`, `blobs/`), which
`ctr images import`, `podman load`, `skopeo copy oci-archive:` and `crane push` read. The
same inputs give the same bytes, so the same digest: files are sorted, owned by root, dated
at the Unix epoch (or SOURCE_DATE_EPOCH), gzip carries no name and no time, and the config
records no build time but that date.

  scripts/oci-image.py --name REF --out FILE.tar --entrypoint /vigil \\
      --file /vigil=target/x86_64-unknown-linux-musl/release/vigil:0755 \\
      [--tree /usr/lib/python3.11=STAGING/usr/lib/python3.11 ...] \\
      [--user 65532:65532] [--label KEY=VALUE ...] [--env KEY=VALUE ...] [--arch amd64]

`--tree PATH=DIR` adds every file and symbolic link under DIR at PATH (modes kept): a
runtime assembled from Debian's packages for a program that is not static.

It prints the manifest digest. Used by `make image` (the operator), the e2e tools (the
pause image of the real node) and the crash programs of the workload tests.
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
CREATED = datetime.datetime.fromtimestamp(EPOCH, datetime.timezone.utc).strftime(
    "%Y-%m-%dT%H:%M:%SZ"
)


def tree(path, root):
    """The files and symbolic links under `root` as (path in image, source, mode) entries;
    a link's source is ("symlink", its target)."""
    entries = []
    for directory, subdirs, names in os.walk(root):
        subdirs.sort()
        for name in sorted(subdirs) + sorted(names):
            source = os.path.join(directory, name)
            inside = path.rstrip("/") + "/" + os.path.relpath(source, root)
            if os.path.islink(source):
                entries.append((inside, ("symlink", os.readlink(source)), 0o777))
            elif os.path.isfile(source):
                entries.append((inside, source, os.stat(source).st_mode & 0o7777))
    return entries


def layer(files):
    """An uncompressed tar of `files` [(path in image, source, mode)] and its parents."""
    buffer = io.BytesIO()
    dirs = set()
    for path, _, _ in files:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = [(d, None, 0o755) for d in dirs] + [
            (p.strip("/"), s, m) for p, s, m in files
        ]
        for path, source, mode in sorted(entries):
            info = tarfile.TarInfo(path)
            info.mtime = EPOCH
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = mode
            if source is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(source, tuple):
                info.type = tarfile.SYMTYPE
                info.linkname = source[1]
                tar.addfile(info)
            else:
                with open(source, "rb") as f:
                    data = f.read()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def blob(out, data, media_type):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    out[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="image reference, e.g. ghcr.io/o/vigil:0.1.0")
    parser.add_argument("--out", required=True, help="the archive to write")
    parser.add_argument("--file", action="append", default=[], help="PATH=SOURCE[:MODE]")
    parser.add_argument("--tree", action="append", default=[], help="PATH=DIR")
    parser.add_argument("--entrypoint", action="append", default=[])
    parser.add_argument("--cmd", action="append", default=[])
    parser.add_argument("--user", default="")
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--label", action="append", default=[])
    parser.add_argument("--arch", default="amd64")
    args = parser.parse_args()

    files = []
    for spec in args.file:
        path, _, source = spec.partition("=")
        mode = "0755"
        head, colon, tail = source.rpartition(":")
        if colon and tail.isdigit():
            source, mode = head, tail
        if not path.startswith("/") or not os.path.isfile(source):
            sys.exit(f"oci-image: --file {spec}: want /PATH=FILE[:MODE] with FILE a file")
        files.append((path, source, int(mode, 8)))
    for spec in args.tree:
        path, _, source = spec.partition("=")
        if not path.startswith("/") or not os.path.isdir(source):
            sys.exit(f"oci-image: --tree {spec}: want /PATH=DIR with DIR a folder")
        files.extend(tree(path, source))
    if not files:
        sys.exit("oci-image: give at least one --file or --tree")

    blobs = {}
    tar = layer(files)
    # mtime=0 and no file name: gzip's header is the same on every build.
    compressed = gzip.compress(tar, compresslevel=9, mtime=0)
    layer_desc = blob(blobs, compressed, "application/vnd.oci.image.layer.v1.tar+gzip")
    labels = dict(kv.split("=", 1) for kv in args.label)
    config = {
        "created": CREATED,
        "architecture": args.arch,
        "os": "linux",
        "config": {
            k: v
            for k, v in {
                "User": args.user,
                "Entrypoint": args.entrypoint,
                "Cmd": args.cmd,
                "Env": args.env,
                "Labels": labels,
            }.items()
            if v
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
        "history": [{"created": CREATED, "created_by": "scripts/oci-image.py"}],
    }
    config_desc = blob(
        blobs,
        json.dumps(config, sort_keys=True, separators=(",", ":")).encode(),
        "application/vnd.oci.image.config.v1+json",
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc],
        "annotations": {k: v for k, v in labels.items() if k.startswith("org.opencontainers.image.")},
    }
    manifest_desc = blob(
        blobs,
        json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode(),
        "application/vnd.oci.image.manifest.v1+json",
    )
    manifest_desc["platform"] = {"architecture": args.arch, "os": "linux"}
    # containerd reads the full name from io.containerd.image.name; podman and skopeo read
    # org.opencontainers.image.ref.name.
    manifest_desc["annotations"] = {
        "io.containerd.image.name": args.name,
        "org.opencontainers.image.ref.name": args.name,
    }
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [manifest_desc],
    }
    entries = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True, separators=(",", ":")).encode(),
    }
    for digest, data in blobs.items():
        entries["blobs/sha256/" + digest.split(":", 1)[1]] = data

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as out:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
            out.addfile(info)
        for name in sorted(entries):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(entries[name]), 0o644, EPOCH
            out.addfile(info, io.BytesIO(entries[name]))
    os.replace(tmp, args.out)
    print(manifest_desc["digest"])


if __name__ == "__main__":
    main()
