// Validates Kubernetes manifests (a multi-document YAML stream on stdin, such as
// `kubectl kustomize` prints) against the Kubernetes API's OpenAPI schemas
// (npm kubernetes-models), and the Istio resources found in ConfigMaps named
// egressgw-config (the store egressgw reads) against Istio's CRD schemas
// (npm @kubernetes-models/istio). Prints one line per object checked; exits 1 on the
// first object that does not validate or whose kind has no model.
import { readFileSync } from "node:fs";
import * as yaml from "js-yaml";

async function model(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const pkg = group.endsWith("istio.io") ? `@kubernetes-models/istio/${group}/${version}`
    : group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`;
  let mod;
  try {
    mod = await import(`${pkg}/${kind}`);
  } catch (e) {
    throw new Error(`${apiVersion} ${kind}: no schema (${pkg}/${kind}): ${e.message}`);
  }
  return mod[kind];
}

async function check(obj, where) {
  const M = await model(obj.apiVersion, obj.kind);
  const name = `${obj.kind} ${obj.metadata?.namespace ?? "-"}/${obj.metadata?.name}`;
  try {
    new M(obj).validate();
  } catch (e) {
    console.error(`${where}: ${name}: ${e.message}`);
    process.exit(1);
  }
  console.log(`valid ${obj.apiVersion} ${name} (${where})`);
}

const docs = yaml.loadAll(readFileSync(0, "utf8")).filter((d) => d);
if (docs.length === 0) {
  console.error("no objects on stdin");
  process.exit(1);
}
for (const d of docs) {
  await check(d, "kubernetes");
  if (d.kind === "ConfigMap" && d.metadata.name.startsWith("egressgw-config")) {
    for (const [file, text] of Object.entries(d.data ?? {}))
      for (const r of yaml.loadAll(text).filter((x) => x))
        await check(r, `istio ${file}`);
  }
}
