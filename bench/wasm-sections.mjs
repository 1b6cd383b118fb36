// What a wasm module's bytes are made of: each section's size, raw and
// gzipped on its own (gzip -9), custom sections by name. For the size goal of
// issue 11 (docs/benchmarks.md).
//
//   node bench/wasm-sections.mjs build/index_bg.wasm
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

const NAMES = ["custom", "type", "import", "function", "table", "memory", "global", "export", "start", "element", "code", "data", "data count", "tag"];
const bytes = readFileSync(process.argv[2]);
let at = 8; // magic and version
const leb = () => {
  let value = 0;
  let shift = 0;
  for (;;) {
    const b = bytes[at++];
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (!(b & 0x80)) return value;
  }
};
const rows = [];
while (at < bytes.length) {
  const id = bytes[at++];
  const size = leb();
  const start = at;
  let name = NAMES[id] ?? `section ${id}`;
  if (id === 0) {
    const length = leb();
    name = `custom "${bytes.subarray(at, at + length).toString()}"`;
  }
  const body = bytes.subarray(start, start + size);
  rows.push([name, size, gzipSync(body, { level: 9 }).length]);
  at = start + size;
}
const total = gzipSync(bytes, { level: 9 }).length;
console.log(`${process.argv[2]}: ${bytes.length} bytes raw, ${total} gzipped`);
for (const [name, raw, gz] of rows) {
  console.log(`  ${name.padEnd(36)} ${String(raw).padStart(8)} raw ${String(gz).padStart(8)} gzipped alone`);
}
