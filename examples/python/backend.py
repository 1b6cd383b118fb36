"""A site back end talking to Tally (Python 3, PyJWT + the standard library).

Mints an identity token for a user, likes an item as that user, and adds to a
custom counter with the API key:

    pip install PyJWT
    TALLY_URL=http://127.0.0.1:8787 TALLY_JWT_SECRET=... TALLY_API_KEY=... \\
      python3 examples/python/backend.py

TALLY_USER (default user-42) and TALLY_ITEM (default blog/2026/hello) pick who
likes what. Exits non-zero, saying why, on any unexpected answer.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import jwt  # PyJWT

COUNTER = "downloads"


def setting(name, default=None):
    value = os.environ.get(name, default)
    if not value:
        sys.exit(f"set {name} (see the top of this file)")
    return value


def mint_token(sub, secret, ttl_seconds=3600):
    """An HS256 token for `sub`, signed with TALLY_JWT_SECRET: mint it on your
    server for a signed-in user and hand it to the page, never the secret."""
    claims = {"sub": sub, "exp": int(time.time()) + ttl_seconds}
    return jwt.encode(claims, secret, algorithm="HS256")


def call(base, method, path, bearer, body=None):
    """Sends one request and returns its JSON body; raises on anything but 200."""
    request = urllib.request.Request(base + path, method=method)
    request.add_header("Authorization", f"Bearer {bearer}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, data, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{method} {path} answered {error.code}: {error.read().decode()}")


def check(condition, what):
    if not condition:
        raise RuntimeError(f"unexpected answer: {what}")


def main():
    base = setting("TALLY_URL").rstrip("/")
    secret = setting("TALLY_JWT_SECRET")
    api_key = setting("TALLY_API_KEY")
    user = setting("TALLY_USER", "user-42")
    item = setting("TALLY_ITEM", "blog/2026/hello")
    # Item ids are one path segment: `blog/2026/hello` travels as `blog%2F2026%2Fhello`.
    item_path = "/v1/items/" + urllib.parse.quote(item, safe="")

    token = mint_token(user, secret, 3600)
    print(f"minted an HS256 token for {user} (expires in 3600 s)")

    like = call(base, "PUT", f"{item_path}/like", token)
    check(like["liked"] is True, f"like.liked is {like['liked']}")
    print(f"liked {item} as {user}: likes={like['likes']} "
          f"liked={json.dumps(like['liked'])} changed={json.dumps(like['changed'])}")

    read = call(base, "GET", item_path, token)
    check(read.get("liked") is True, f"read.liked is {read.get('liked')}")
    print(f"read {item} as {user}: likes={read['likes']} liked={json.dumps(read['liked'])}")

    added = call(base, "POST", f"{item_path}/counters/{COUNTER}", api_key, {"by": 3})
    print(f"added 3 to {COUNTER} on {item}: value={added['value']}")

    after = call(base, "GET", item_path, token)
    check(after["counters"].get(COUNTER) == added["value"],
          f"counters.{COUNTER} is {after['counters'].get(COUNTER)}")
    print(f"read back {COUNTER} on {item}: {after['counters'][COUNTER]}")


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, OSError, KeyError, ValueError) as error:
        sys.exit(f"tally example failed: {error}")
