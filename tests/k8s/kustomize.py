#!/usr/bin/env python3
"""A renderer for the subset of kustomize that deploy/kubernetes uses, for machines
without `kubectl kustomize` (it is not in Debian 12): resources (files and
kustomizations), namespace, labels (metadata only), images, configMapGenerator (files;
behavior create or merge; the name gets a content hash suffix and references to it in
pod volumes follow), and patches (JSON 6902 "add" and "replace" with a kind/name target).
Anything else in a kustomization is refused, so the subset cannot silently grow past
what this implements. tests/integration/test_kubernetes.py compares its output with
`kubectl kustomize` where that exists (names' hash suffixes aside).
Usage: kustomize.py DIR  (prints the objects as a YAML stream)"""
import copy
import hashlib
import json
import pathlib
import sys

import yaml

KNOWN = {"apiVersion", "kind", "namespace", "labels", "resources", "images",
         "configMapGenerator", "patches"}


def build(d):
    d = pathlib.Path(d)
    k = yaml.safe_load((d / "kustomization.yaml").read_text())
    extra = set(k) - KNOWN
    if extra:
        raise SystemExit(f"{d}: unsupported kustomization fields {sorted(extra)}")
    objs = []
    for r in k.get("resources", []):
        p = d / r
        if p.is_dir():
            objs += build(p)
        else:
            objs += [o for o in yaml.safe_load_all(p.read_text()) if o]
    for g in k.get("configMapGenerator", []):
        data = {pathlib.Path(f).name: (d / f).read_text() for f in g.get("files", [])}
        behavior = g.get("behavior", "create")
        if behavior == "merge":
            cm = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == g["name"]]
            if len(cm) != 1:
                raise SystemExit(f"{d}: merge into a missing ConfigMap {g['name']}")
            cm[0]["data"].update(data)
        elif behavior == "create":
            meta = {"name": g["name"]}
            if "namespace" in g:
                meta["namespace"] = g["namespace"]
            objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data,
                         "_generated": True})
        else:
            raise SystemExit(f"{d}: configMapGenerator behavior {behavior} unsupported")
    for p in k.get("patches", []):
        t = p["target"]
        ops = yaml.safe_load(p["patch"])
        for o in objs:
            if o["kind"] == t.get("kind") and o["metadata"]["name"] == t.get("name"):
                for op in ops:
                    apply_op(o, op)
    if "namespace" in k:
        for o in objs:
            o["metadata"]["namespace"] = k["namespace"]
    for lab in k.get("labels", []):
        if lab.get("includeSelectors") or lab.get("includeTemplates"):
            raise SystemExit(f"{d}: labels with includeSelectors/includeTemplates unsupported")
        for o in objs:
            o["metadata"].setdefault("labels", {}).update(lab["pairs"])
    for img in k.get("images", []):
        for o in objs:
            for c in containers(o):
                if c["image"].split(":")[0] == img["name"]:
                    c["image"] = f"{img.get('newName', img['name'])}:{img.get('newTag', 'latest')}"
    return objs


def containers(o):
    spec = o.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def apply_op(o, op):
    if op["op"] not in ("add", "replace"):
        raise SystemExit(f"patch op {op['op']} unsupported")
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    cur = o
    for p in parts[:-1]:
        cur = cur[int(p)] if isinstance(cur, list) else cur[p]
    last = parts[-1]
    if isinstance(cur, list):
        if last == "-":
            cur.append(op["value"])
        elif op["op"] == "add":
            cur.insert(int(last), op["value"])
        else:
            cur[int(last)] = op["value"]
    else:
        cur[last] = op["value"]


def finish(objs):
    """Generated ConfigMaps get their hash suffix, and pod volumes follow the name."""
    names = {}
    for o in objs:
        if o.pop("_generated", False):
            h = hashlib.sha256(json.dumps({"data": o["data"], "kind": "ConfigMap",
                                           "name": o["metadata"]["name"]},
                                          sort_keys=True).encode()).hexdigest()[:10]
            new = f"{o['metadata']['name']}-{h}"
            names[(o["metadata"].get("namespace"), o["metadata"]["name"])] = new
            o["metadata"]["name"] = new
    for o in objs:
        vols = o.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])
        for v in vols:
            cm = v.get("configMap")
            key = (o["metadata"].get("namespace"), cm["name"]) if cm else None
            if key in names:
                cm["name"] = names[key]
    return objs


if __name__ == "__main__":
    out = finish([copy.deepcopy(o) for o in build(sys.argv[1])])
    sys.stdout.write(yaml.safe_dump_all(out, sort_keys=False))
