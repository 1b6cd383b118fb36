// A site back end talking to Tally (Node 20, no dependencies): mints an
// identity token for a user, likes an item as that user, and adds to a custom
// counter with the API key.
//
//   TALLY_URL=http://127.0.0.1:8787 TALLY_JWT_SECRET=... TALLY_API_KEY=... \
//     node examples/node/backend.mjs
//
// TALLY_USER (default user-42) and TALLY_ITEM (default blog/2026/hello) pick
// who likes what. Exits non-zero, saying why, on any unexpected answer.

import { mintToken } from "./token.mjs";

function setting(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (!value) {
    console.error(`set ${name} (see the comment at the top of this file)`);
    process.exit(2);
  }
  return value;
}

const base = setting("TALLY_URL").replace(/\/+$/, "");
const secret = setting("TALLY_JWT_SECRET");
const apiKey = setting("TALLY_API_KEY");
const user = setting("TALLY_USER", "user-42");
const item = setting("TALLY_ITEM", "blog/2026/hello");
const counter = "downloads";

/** Sends one request and returns its JSON body; throws on anything but 200. */
async function call(method, path, bearer, body) {
  const headers = { authorization: `Bearer ${bearer}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(`${base}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json();
  if (response.status !== 200) {
    throw new Error(`${method} ${path} answered ${response.status}: ${JSON.stringify(answer)}`);
  }
  return answer;
}

function check(condition, what) {
  if (!condition) throw new Error(`unexpected answer: ${what}`);
}

// Item ids are one path segment: `blog/2026/hello` travels as `blog%2F2026%2Fhello`.
const itemPath = `/v1/items/${encodeURIComponent(item)}`;

try {
  const token = await mintToken(user, secret, 3600);
  console.log(`minted an HS256 token for ${user} (expires in 3600 s)`);

  const like = await call("PUT", `${itemPath}/like`, token);
  check(like.liked === true, `like.liked is ${like.liked}`);
  console.log(`liked ${item} as ${user}: likes=${like.likes} liked=${like.liked} changed=${like.changed}`);

  const read = await call("GET", itemPath, token);
  check(read.liked === true, `read.liked is ${read.liked}`);
  console.log(`read ${item} as ${user}: likes=${read.likes} liked=${read.liked}`);

  const added = await call("POST", `${itemPath}/counters/${counter}`, apiKey, { by: 3 });
  console.log(`added 3 to ${counter} on ${item}: value=${added.value}`);

  const after = await call("GET", itemPath, token);
  check(after.counters[counter] === added.value, `counters.${counter} is ${after.counters[counter]}`);
  console.log(`read back ${counter} on ${item}: ${after.counters[counter]}`);
} catch (error) {
  console.error(`tally example failed: ${error.message}`);
  process.exit(1);
}
