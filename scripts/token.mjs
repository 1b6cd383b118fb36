// `make token SUB=user-42`: prints an identity token for SUB, signed with the
// local worker's TALLY_JWT_SECRET, for curl experiments. The secret comes from
// the environment, else .dev.vars, else .dev.vars.example (which `make dev`
// copies to .dev.vars). TTL (seconds, default 3600) sets its lifetime.

import { readFileSync } from "node:fs";
import { mintToken } from "../examples/node/token.mjs";

/** One variable from a .dev.vars file (NAME=value lines, optionally quoted). */
function fromDevVars(path, name) {
  let text;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  for (const line of text.split("\n")) {
    const match = line.match(/^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/);
    if (match && match[1] === name) return match[2].replace(/^(["'])(.*)\1$/, "$2");
  }
  return undefined;
}

const sub = process.env.SUB;
const ttl = Number(process.env.TTL ?? 3600);
if (!sub || !Number.isInteger(ttl) || ttl <= 0) {
  console.error("usage: make token SUB=<user id> [TTL=<seconds, default 3600>]");
  process.exit(2);
}
const secret =
  process.env.TALLY_JWT_SECRET ||
  fromDevVars(new URL("../.dev.vars", import.meta.url), "TALLY_JWT_SECRET") ||
  fromDevVars(new URL("../.dev.vars.example", import.meta.url), "TALLY_JWT_SECRET");
if (!secret) {
  console.error("TALLY_JWT_SECRET is not set in the environment, .dev.vars or .dev.vars.example");
  process.exit(2);
}
console.log(await mintToken(sub, secret, ttl));
