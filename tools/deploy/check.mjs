// Deployment checks for tests/static/deploy.sh. Offline; Node 20+.
//   node check.mjs manifests FILE...
//       every document of every (multi-document) YAML file is validated against the Kubernetes
//       API schemas of the npm package kubernetes-models (ServiceMonitor: the Prometheus
//       Operator's, @kubernetes-models/prometheus-operator); plus tillsync's own rules: probes on
//       /readyz and /healthz, selector matching the pod labels, no duplicate env names, names
//       DNS-1123 labels of at most 63 characters. A kind without a schema is an error.
//   node check.mjs env --bin DIR --src DIR --compose FILE --manifests FILE...
//       for each service (services/*/main.c): the variables of `DIR/<svc> --config-help` are all
//       named (NAME or NAME_FILE) in its Deployment of every manifest file and in its
//       docker-compose service (FILE is `docker-compose config` output); required ones have a
//       value; no variable is set that the service does not read; connection variables
//       (Postgres, Redis, Kafka) appear exactly for the services whose spec asks for them.
//   node check.mjs topics --src DIR
//       deploy/topics.txt agrees with the local Kafka mock's table (deploy/local/kafka-mock/main.c).
// Prints one line per problem and exits 1 if there is any.
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import YAML from "yaml";

const problems = [];
const problem = (msg) => problems.push(msg);

function docsOf(file) {
  return YAML.parseAllDocuments(fs.readFileSync(file, "utf8"))
    .map((d, i) => {
      if (d.errors.length) problem(`${file}: document ${i + 1}: YAML: ${d.errors[0].message}`);
      return d.toJS();
    })
    .filter((d) => d && typeof d === "object");
}

async function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const spec = group === "monitoring.coreos.com"
    ? `@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`
    : `kubernetes-models/${group ? group + "/" : ""}${version}/${kind}`;
  try {
    const mod = await import(spec);
    return mod[kind];
  } catch {
    return null;
  }
}

const dns1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function podSpecOf(doc) {
  if (doc.kind === "Deployment" || doc.kind === "Job") return doc.spec?.template?.spec;
  return null;
}

function ownRules(where, doc) {
  const name = doc.metadata?.name;
  if (typeof name !== "string" || name.length > 63 || !dns1123.test(name))
    problem(`${where}: metadata.name "${name}" is not a DNS-1123 label of at most 63 characters`);
  const pod = podSpecOf(doc);
  if (pod) {
    for (const c of pod.containers || []) {
      const seen = new Set();
      for (const e of c.env || []) {
        if (seen.has(e.name)) problem(`${where}: container ${c.name}: env ${e.name} is set twice`);
        seen.add(e.name);
      }
      if (c.securityContext?.allowPrivilegeEscalation !== false)
        problem(`${where}: container ${c.name}: securityContext.allowPrivilegeEscalation must be false`);
    }
  }
  if (doc.kind === "Deployment") {
    const c = pod?.containers?.[0];
    if (c?.readinessProbe?.httpGet?.path !== "/readyz")
      problem(`${where}: readinessProbe must GET /readyz`);
    if (c?.livenessProbe?.httpGet?.path !== "/healthz")
      problem(`${where}: livenessProbe must GET /healthz`);
    if (!c?.resources?.requests || !c?.resources?.limits)
      problem(`${where}: container needs resources.requests and resources.limits`);
    const sel = doc.spec?.selector?.matchLabels || {};
    const labels = doc.spec?.template?.metadata?.labels || {};
    for (const [k, v] of Object.entries(sel))
      if (labels[k] !== v) problem(`${where}: selector ${k}=${v} does not match the pod labels`);
  }
}

async function checkManifests(files) {
  let n = 0;
  for (const file of files) {
    for (const doc of docsOf(file)) {
      const where = `${path.basename(file)}: ${doc.kind}/${doc.metadata?.name}`;
      n++;
      if (!doc.apiVersion || !doc.kind) { problem(`${where}: no apiVersion/kind`); continue; }
      const Model = await modelFor(doc.apiVersion, doc.kind);
      if (!Model) { problem(`${where}: no schema for ${doc.apiVersion} ${doc.kind}`); continue; }
      try {
        new Model(doc).validate();
      } catch (e) {
        const errs = e.errors || [{ instancePath: "", message: e.message }];
        for (const er of errs.slice(0, 5))
          problem(`${where}: ${er.instancePath || "/"} ${er.message}${er.params?.additionalProperty ? " (" + er.params.additionalProperty + ")" : ""}`);
      }
      ownRules(where, doc);
    }
  }
  return n;
}

// ---- env
function servicesOf(src) {
  const out = {};
  for (const d of fs.readdirSync(path.join(src, "services")).sort()) {
    const main = path.join(src, "services", d, "main.c");
    if (!fs.existsSync(main)) continue;
    const text = fs.readFileSync(main, "utf8");
    const flag = (f) => new RegExp(`\\.${f}\\s*=\\s*true`).test(text);
    out[d] = { kafka: flag("kafka"), postgres: flag("postgres"), redis: flag("redis") };
  }
  return out;
}

// Rows "| `NAME` | yes|no | ..." of the Markdown table(s) `--config-help` prints.
function configVars(bin, svc) {
  const exe = path.join(bin, svc);
  if (!fs.existsSync(exe)) { problem(`${exe}: not built (the env check needs --config-help)`); return null; }
  const text = execFileSync(exe, ["--config-help"], { encoding: "utf8" });
  const vars = new Map();
  for (const m of text.matchAll(/^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|\s*(yes|no)\s*\|/gm))
    vars.set(m[1], { required: m[2] === "yes" });
  if (vars.size === 0) problem(`${exe} --config-help: no variables found in its output`);
  return vars;
}

// Which connection a common variable belongs to (services/common/service.c common_vars()).
function connectionOf(name) {
  if (["DATABASE_URL", "PG_POOL_SIZE", "MIGRATIONS_DIR"].includes(name)) return "postgres";
  if (["REDIS_URL", "REDIS_POOL_SIZE"].includes(name)) return "redis";
  if (name.startsWith("KAFKA_")) return "kafka";
  return null;
}

// env: Map name -> {set: bool (has a value or a valueFrom)}
function compareEnv(where, svc, needs, vars, env) {
  for (const [name, v] of vars) {
    const conn = connectionOf(name);
    const has = env.has(name) || env.has(name + "_FILE");
    if (conn && !needs[conn]) {
      if (has) problem(`${where}: ${name} is set, but ${svc} has no .${conn} in services/${svc}/main.c`);
      continue;
    }
    if (!has) { problem(`${where}: ${name} (read by ${svc}) is not named`); continue; }
    if (v.required && !(env.get(name)?.set || env.get(name + "_FILE")?.set))
      problem(`${where}: ${name} is required by ${svc} but has no value`);
  }
  for (const name of env.keys()) {
    const base = name.endsWith("_FILE") && vars.has(name.slice(0, -5)) ? name.slice(0, -5) : name;
    if (!vars.has(base)) problem(`${where}: ${name} is set but ${svc} does not read it (typo?)`);
  }
}

function checkEnv(opts) {
  const svcs = servicesOf(opts.src);
  const names = Object.keys(svcs);
  if (names.length === 0) problem(`${opts.src}/services: no services/*/main.c`);
  const compose = YAML.parse(fs.readFileSync(opts.compose, "utf8"));
  const rendered = opts.manifests.map((f) => ({ file: path.basename(f), docs: docsOf(f) }));
  let checked = 0;
  for (const svc of names) {
    const vars = configVars(opts.bin, svc);
    if (!vars) continue;
    // docker-compose
    const cs = compose.services?.[svc];
    if (!cs) problem(`docker-compose: no service ${svc}`);
    else {
      let e = cs.environment || {};
      if (Array.isArray(e)) e = Object.fromEntries(e.map((s) => [s.split("=")[0], s.split("=").slice(1).join("=")]));
      const env = new Map(Object.entries(e).map(([k, v]) => [k, { set: v !== null && String(v) !== "" }]));
      compareEnv(`docker-compose ${svc}`, svc, svcs[svc], vars, env);
    }
    // every rendered chart
    for (const r of rendered) {
      const deps = r.docs.filter((d) => d.kind === "Deployment" &&
        d.metadata?.labels?.["app.kubernetes.io/component"] === svc);
      if (deps.length !== 1) { problem(`${r.file}: ${deps.length} Deployments of ${svc}, expected 1`); continue; }
      const c = deps[0].spec.template.spec.containers[0];
      const env = new Map((c.env || []).map((x) => [x.name,
        { set: Boolean(x.valueFrom) || (x.value !== undefined && x.value !== "") }]));
      compareEnv(`${r.file} Deployment ${svc}`, svc, svcs[svc], vars, env);
      const jobs = r.docs.filter((d) => d.kind === "Job" && d.metadata?.labels?.["app.kubernetes.io/component"] === svc);
      const migrating = jobs.some((j) => (j.spec.template.spec.containers[0].command || []).includes("--migrate-only"));
      if (svcs[svc].postgres && !migrating) problem(`${r.file}: no migration Job (--migrate-only) for ${svc}`);
      if (!svcs[svc].postgres && jobs.length) problem(`${r.file}: migration Job for ${svc}, which has no database`);
    }
    checked += vars.size;
  }
  return { services: names.length, vars: checked };
}

// ---- topics
function checkTopics(src) {
  const listed = new Map();
  const file = path.join(src, "deploy/topics.txt");
  for (const [i, line] of fs.readFileSync(file, "utf8").split("\n").entries()) {
    const t = line.trim();
    if (!t || t.startsWith("#")) continue;
    const [name, parts, policy, extra] = t.split(/\s+/);
    if (extra !== undefined || !/^[a-z0-9._-]+$/.test(name || "") || !/^[1-9][0-9]*$/.test(parts || "") ||
        !["delete", "compact", "compact,delete"].includes(policy))
      problem(`${file}:${i + 1}: expected "<name> <partitions> <delete|compact>", got "${t}"`);
    if (listed.has(name)) problem(`${file}:${i + 1}: ${name} listed twice`);
    listed.set(name, { partitions: Number(parts), policy });
  }
  const mock = path.join(src, "deploy/local/kafka-mock/main.c");
  if (!fs.existsSync(mock)) return listed.size;
  const text = fs.readFileSync(mock, "utf8");
  const rows = [...text.matchAll(/\{\s*"([a-z0-9._-]+)"\s*,\s*(\d+)\s*,\s*(true|false)\s*\}/g)];
  if (rows.length === 0) problem(`${mock}: topic table not found (has its format changed?)`);
  const expect = new Map();
  for (const [, name, parts, consumed] of rows) {
    expect.set(name, Number(parts));
    if (consumed === "true") expect.set(name + ".dlq", 1);
  }
  for (const [name, parts] of expect) {
    if (!listed.has(name)) problem(`deploy/topics.txt: ${name} is missing (the kafka mock creates it)`);
    else if (listed.get(name).partitions !== parts)
      problem(`deploy/topics.txt: ${name} has ${listed.get(name).partitions} partitions, the kafka mock ${parts}`);
  }
  for (const name of listed.keys())
    if (!expect.has(name)) problem(`deploy/topics.txt: ${name} is not created by the kafka mock`);
  for (const name of ["catalog.items.v1", "inventory.levels.v1"])
    if (listed.get(name)?.policy !== "compact") problem(`deploy/topics.txt: ${name} must be compacted (DESIGN.md)`);
  return listed.size;
}

function parseOpts(args) {
  const o = { manifests: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--bin") o.bin = args[++i];
    else if (a === "--src") o.src = args[++i];
    else if (a === "--compose") o.compose = args[++i];
    else if (a === "--manifests") { o.manifests.push(...args.slice(i + 1)); break; }
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

const [cmd, ...rest] = process.argv.slice(2);
let summary;
if (cmd === "manifests") summary = `${await checkManifests(rest)} manifests`;
else if (cmd === "env") {
  const r = checkEnv(parseOpts(rest));
  summary = `${r.services} services, ${r.vars} variables`;
} else if (cmd === "topics") summary = `${checkTopics(parseOpts(rest).src)} topics`;
else {
  console.error("usage: check.mjs manifests FILE... | env --bin DIR --src DIR --compose FILE --manifests FILE... | topics --src DIR");
  process.exit(2);
}
for (const p of problems) console.log(`FAIL ${p}`);
console.log(`check ${cmd}: ${summary}, ${problems.length} problem(s)`);
process.exit(problems.length ? 1 : 0);
