#!/usr/bin/env python3
"""The SBOM of the `vigil` binary: an SPDX 2.3 JSON document of every crate compiled into it.

    scripts/sbom.py --target x86_64-unknown-linux-musl --out dist/vigil-0.1.0.spdx.json

The crates are those `cargo metadata` resolves for the `vigil` package on that target,
following normal dependencies only (build scripts, proc macros' hosts and dev-dependencies
do not ship in the binary, but proc macros do shape it and are kept). Each package carries
its version, declared license, crates.io download location, the SHA-256 of its crate
(Cargo.lock's checksum) and a purl. The creation time is the commit's (SOURCE_DATE_EPOCH),
so the same commit gives the same document.
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tomllib


def spdx_id(package_id: str) -> str:
    return "SPDXRef-Package-" + re.sub(r"[^A-Za-z0-9.-]", "-", package_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="the Rust target triple of the binary")
    parser.add_argument("--out", required=True, help="the SPDX JSON file to write")
    parser.add_argument("--package", default="vigil")
    args = parser.parse_args()

    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", args.target],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    packages = {p["id"]: p for p in metadata["packages"]}
    nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}
    root = next(p["id"] for p in metadata["packages"] if p["name"] == args.package
                and p["id"] in metadata["workspace_members"])

    # Normal dependencies, transitively, from the binary's package.
    seen, queue, edges = {root}, [root], set()
    while queue:
        node = nodes[queue.pop()]
        for dep in node["deps"]:
            if not any(kind["kind"] is None for kind in dep["dep_kinds"]):
                continue
            edges.add((node["id"], dep["pkg"]))
            if dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                queue.append(dep["pkg"])

    with open(os.path.join(metadata["workspace_root"], "Cargo.lock"), "rb") as lock:
        checksums = {(p["name"], p["version"]): p["checksum"]
                     for p in tomllib.load(lock)["package"] if "checksum" in p}

    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or subprocess.run(
        ["git", "log", "-1", "--format=%ct"], check=True, capture_output=True, text=True).stdout.strip())
    created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    root_package = packages[root]

    spdx_packages = []
    for package_id in sorted(seen, key=lambda i: (packages[i]["name"], packages[i]["version"])):
        package = packages[package_id]
        from_crates_io = (package.get("source") or "").startswith("registry+")
        entry = {
            "SPDXID": spdx_id(package_id),
            "name": package["name"],
            "versionInfo": package["version"],
            "downloadLocation": (
                f"https://crates.io/api/v1/crates/{package['name']}/{package['version']}/download"
                if from_crates_io else "NOASSERTION"
            ),
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": package.get("license") or "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "filesAnalyzed": False,
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": f"pkg:cargo/{package['name']}@{package['version']}",
            }],
        }
        checksum = checksums.get((package["name"], package["version"]))
        if checksum:
            entry["checksums"] = [{"algorithm": "SHA256", "checksumValue": checksum}]
        spdx_packages.append(entry)

    relationships = [{
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": spdx_id(root),
    }] + [
        {"spdxElementId": spdx_id(a), "relationshipType": "DEPENDS_ON", "relatedSpdxElement": spdx_id(b)}
        for a, b in sorted(edges)
    ]
    document = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{root_package['name']}-{root_package['version']}-{args.target}",
        "documentNamespace": (
            f"https://github.com/vigil-operator/vigil/spdx/{root_package['name']}-"
            f"{root_package['version']}-{args.target}-{epoch}"
        ),
        "creationInfo": {"created": created, "creators": ["Tool: vigil scripts/sbom.py"]},
        "packages": spdx_packages,
        "relationships": relationships,
    }
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(document, out, indent=1, sort_keys=True)
        out.write("\n")
    print(f"{args.out}: {len(spdx_packages)} packages", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
