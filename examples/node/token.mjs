// Mints a Tally identity token: an HS256 JSON Web Token whose `sub` is your
// user's id, signed with the worker's TALLY_JWT_SECRET. Node 20's Web Crypto
// does the HMAC, so this needs no dependency (the `jose` package works too).

const encoder = new TextEncoder();

/** base64url without padding, as JWTs use. */
function base64url(bytes) {
  return Buffer.from(bytes).toString("base64url");
}

/**
 * A token for `sub` that expires `ttlSeconds` from now. Mint it on your server
 * for a signed-in user and hand it to the page: never ship the secret itself.
 */
export async function mintToken(sub, secret, ttlSeconds = 3600) {
  const header = { alg: "HS256", typ: "JWT" };
  const claims = { sub, exp: Math.floor(Date.now() / 1000) + ttlSeconds };
  const signingInput = [header, claims]
    .map((part) => base64url(encoder.encode(JSON.stringify(part))))
    .join(".");
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const signature = await crypto.subtle.sign("HMAC", key, encoder.encode(signingInput));
  return `${signingInput}.${base64url(new Uint8Array(signature))}`;
}
