#!/usr/bin/env bash
# Writes a CycloneDX 1.5 JSON SBOM for one release binary: every crate compiled into it for its
# target, with version, licence, purl, repository, crates.io checksum and the dependency graph,
# and the binary's own SHA-256 as the SBOM's subject.
# Why not cargo-cyclonedx: building that tool on every fresh CI machine costs minutes of the two
# cores, and `cargo tree` (cargo's own resolver, features resolved exactly as `cargo build -p
# PACKAGE --target TARGET` does, dev-dependencies excluded) already knows the graph; the crates'
# checksums come from Cargo.lock. Build-time crates (proc-macros, build scripts' dependencies)
# are listed too, marked as `scope: excluded` (in the supply chain, not in the binary).
# Usage: scripts/sbom.sh PACKAGE TARGET BINARY OUT.cdx.json
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[[ $# -eq 4 ]] || { echo "usage: scripts/sbom.sh PACKAGE TARGET BINARY OUT.cdx.json" >&2; exit 2; }
PACKAGE="$1" TARGET="$2" BINARY="$3" OUT="$4"
[[ -f "$BINARY" ]] || { echo "sbom: $BINARY not found" >&2; exit 1; }
tree() {
  cargo tree --locked --quiet -p "$PACKAGE" --target "$TARGET" --prefix depth -f '{p}|{l}|{r}' "$@"
}
normal="$(mktemp)" all="$(mktemp)"
trap 'rm -f "$normal" "$all"' EXIT
tree -e normal >"$normal"
tree -e normal,build >"$all"
python3 - "$PACKAGE" "$TARGET" "$BINARY" "$OUT" "$normal" "$all" "$ROOT/Cargo.lock" <<'PY'
import hashlib, json, re, sys, tomllib, uuid, datetime
package, target, binary, out, normal_path, all_path, lock_path = sys.argv[1:]

def parse(path):
    """cargo tree --prefix depth lines -> (nodes {ref: info}, edges {ref: set(ref)}, root)."""
    nodes, edges, stack, root = {}, {}, [], None
    for line in open(path):
        line = line.rstrip("\n")
        if not line:
            continue
        m = re.match(r"^(\d+)(.*)$", line)
        depth, rest = int(m.group(1)), m.group(2)
        p, lic, repo = (rest.split("|") + ["", ""])[:3]
        repo = repo.removesuffix(" (*)").strip()
        words = p.split()
        name, version = words[0], words[1].lstrip("v")
        source = " ".join(words[2:])
        ref = f"pkg:cargo/{name}@{version}"
        info = nodes.setdefault(ref, {"name": name, "version": version, "license": lic.strip(),
                                      "repo": repo, "local": source.startswith("(/"),
                                      "proc_macro": "(proc-macro)" in source})
        edges.setdefault(ref, set())
        del stack[depth:]
        if stack:
            edges[stack[-1]].add(ref)
        else:
            root = ref
        stack.append(ref)
    return nodes, edges, root

normal_nodes, normal_edges, root = parse(normal_path)
everything, edges, _ = parse(all_path)
# In the binary: reachable from the package through normal dependencies, never through a
# proc-macro (its own dependencies run in the compiler only).
linked, todo = {root}, [root]
while todo:
    for dep in normal_edges[todo.pop()]:
        if dep not in linked and not normal_nodes[dep]["proc_macro"]:
            linked.add(dep)
            todo.append(dep)
checksums = {(p["name"], p["version"]): p.get("checksum")
             for p in tomllib.load(open(lock_path, "rb"))["package"]}
digest = hashlib.sha256(open(binary, "rb").read()).hexdigest()

def component(ref, info):
    c = {"type": "application" if ref == root else "library", "bom-ref": ref,
         "name": info["name"], "version": info["version"], "purl": ref}
    if info["license"]:
        c["licenses"] = [{"expression": info["license"]}]
    if info["repo"]:
        c["externalReferences"] = [{"type": "vcs", "url": info["repo"]}]
    sha = checksums.get((info["name"], info["version"]))
    if sha:
        c["hashes"] = [{"alg": "SHA-256", "content": sha}]
    # Compiled into the binary, or only run while building it (proc-macros, build scripts).
    c["scope"] = "required" if ref in linked else "excluded"
    return c

subject = component(root, everything[root])
subject["hashes"] = [{"alg": "SHA-256", "content": digest}]
subject["properties"] = [{"name": "cargo:target", "value": target}]
bom = {
    "bomFormat": "CycloneDX",
    "specVersion": "1.5",
    "serialNumber": f"urn:uuid:{uuid.uuid4()}",
    "version": 1,
    "metadata": {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tools": {"components": [{"type": "application", "name": "scripts/sbom.sh (cargo tree)"}]},
        "component": subject,
    },
    "components": [component(r, i) for r, i in sorted(everything.items()) if r != root],
    "dependencies": [{"ref": r, "dependsOn": sorted(d)} for r, d in sorted(edges.items())],
}
with open(out, "w") as f:
    json.dump(bom, f, indent=1)
    f.write("\n")
print(f"{out}: {len(bom['components'])} components, "
      f"{sum(c['scope'] == 'required' for c in bom['components'])} in the binary", file=sys.stderr)
PY
