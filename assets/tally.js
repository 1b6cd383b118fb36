/*! Tally embed: <tally-like item="..."> and <tally-views item="..." metric="unique">, no dependencies. */
(() => {
  "use strict";
  if (!window.customElements || customElements.get("tally-like")) return;

  // The API lives where this script came from, unless the page says otherwise.
  const me = document.currentScript;
  const API = ((me && me.dataset.api) || (me && me.src ? new URL(me.src).origin : location.origin)).replace(/\/+$/, "");
  const KEY = "tally:visitor:" + API;
  let pageToken = (me && me.dataset.token) || null;
  let minting = null;

  const enc = encodeURIComponent;
  const itemPath = (item) => "/v1/items/" + enc(item);

  // localStorage throws in some privacy modes and sandboxed frames: then tokens live for the page only.
  let memo = null;
  const saved = () => {
    try { return JSON.parse(localStorage.getItem(KEY)); } catch (_) { return memo; }
  };
  const save = (v) => {
    memo = v;
    try { v ? localStorage.setItem(KEY, JSON.stringify(v)) : localStorage.removeItem(KEY); } catch (_) { /* memo keeps it */ }
  };

  // "Don't count me": Tally.ignoreMe(true), or a visit to any page with #tally-ignore, makes
  // this browser record no views on this site (counts still show) until Tally.ignoreMe(false).
  const IGNORE = "tally:ignore";
  let ignoring = false;
  try { ignoring = localStorage.getItem(IGNORE) === "1"; } catch (_) { /* not kept */ }
  function ignoreMe(on) {
    ignoring = !!on;
    try { ignoring ? localStorage.setItem(IGNORE, "1") : localStorage.removeItem(IGNORE); } catch (_) { /* page only */ }
    document.querySelectorAll("tally-views").forEach((el) => el.toggleAttribute("ignored", ignoring));
    document.dispatchEvent(new CustomEvent("tally:ignore", { detail: { ignored: ignoring } }));
  }
  if (location.hash === "#tally-ignore") ignoreMe(true);

  class TallyError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      Object.assign(this, { status, code, retryAfter });
    }
  }

  async function call(method, path, token) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    let res, body = null;
    try {
      res = await fetch(API + path, { method, headers, credentials: "omit", signal: AbortSignal.timeout(10000) });
    } catch (_) {
      throw new TallyError(0, "network", "Tally could not be reached.");
    }
    try { body = await res.json(); } catch (_) { /* a non-JSON error page */ }
    if (!res.ok) {
      const e = (body && body.error) || {};
      throw new TallyError(res.status, e.code || "http_" + res.status, e.message || res.statusText, +res.headers.get("Retry-After") || 0);
    }
    return body;
  }

  // One anonymous identity per browser and API, minted once and reused until it nearly expires.
  function visitor() {
    const v = saved();
    if (v && v.token && v.expires_at > Date.now() / 1000 + 60) return Promise.resolve(v.token);
    if (!minting) {
      minting = call("POST", "/v1/visitors")
        .then((r) => (save({ token: r.token, expires_at: r.expires_at }), r.token))
        .finally(() => { minting = null; });
    }
    return minting;
  }

  // Runs fn with the best identity: the element's or the page's token, else the visitor token.
  // A visitor token the API no longer accepts is replaced once; a page token is the page's to renew.
  async function withIdentity(el, required, fn) {
    const own = el.getAttribute("token") || pageToken;
    if (own) return fn(own);
    let token = null;
    try { token = await visitor(); } catch (e) { if (required) throw e; }
    try {
      return await fn(token);
    } catch (e) {
      if (e.status !== 401 || !token) throw e;
      save(null);
      return fn(await visitor());
    }
  }

  // Reads made in the same tick are batched into one GET /v1/items?ids=... per token.
  let queue = [];
  function read(item, token) {
    return new Promise((resolve, reject) => {
      if (!queue.length) setTimeout(flush);
      queue.push({ item, token, resolve, reject });
    });
  }
  function flush() {
    const groups = new Map();
    for (const q of queue.splice(0)) (groups.get(q.token) || groups.set(q.token, []).get(q.token)).push(q);
    groups.forEach((list, token) => {
      const ids = [...new Set(list.map((q) => q.item))];
      for (let i = 0; i < ids.length; i += 100) {
        const chunk = ids.slice(i, i + 100);
        const mine = list.filter((q) => chunk.includes(q.item));
        call("GET", "/v1/items?ids=" + chunk.map(enc).join(","), token).then(
          (r) => mine.forEach((q) => q.resolve(r.items.find((x) => x.item === q.item) || { likes: 0, views: 0 })),
          (e) => mine.forEach((q) => q.reject(e)),
        );
      }
    });
  }

  const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
  const short = (n) => (n < 1000 ? String(n) : compact.format(n).replace("K", "k"));

  function explain(e, what) {
    if (e.status === 429) return "Too many requests: try again " + (e.retryAfter ? "in " + e.retryAfter + " s." : "shortly.");
    if (e.status === 401) return "Please sign in again.";
    if (!e.status || e.status >= 500) return what + " wasn't saved: Tally is unavailable, try again.";
    return e.message || what + " failed.";
  }

  const CSS = `:host{display:inline-flex;align-items:center;gap:.5em;vertical-align:middle}
button{display:inline-flex;align-items:center;gap:.35em;font:inherit;line-height:1.2;cursor:pointer;padding:.3em .8em;border-radius:999px;border:1px solid var(--tally-border,#c9ced8);background:var(--tally-bg,#fff);color:var(--tally-fg,#333)}
button:hover{border-color:var(--tally-accent,#d6336c)}
button[aria-pressed=true]{color:var(--tally-accent,#d6336c);border-color:var(--tally-accent,#d6336c);background:var(--tally-accent-bg,#fff0f5)}
button:focus-visible{outline:3px solid var(--tally-focus,#1c64f2);outline-offset:2px}
button[aria-busy=true]{cursor:progress}
svg{width:1.1em;height:1.1em;fill:none;stroke:currentColor;stroke-width:2}
[aria-pressed=true] svg{fill:currentColor}
.err{color:var(--tally-error,#b3261e);font-size:.85em}
.err:empty{display:none}`;
  const HEART = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M12 20.5C6 16 3 12.8 3 9.2 3 6.6 5 4.5 7.6 4.5c1.8 0 3.3 1 4.4 2.6 1.1-1.6 2.6-2.6 4.4-2.6 2.6 0 4.6 2.1 4.6 4.7 0 3.6-3 6.8-9 11.3z"/></svg>';

  class Base extends HTMLElement {
    static get observedAttributes() { return ["item", "token"]; }
    constructor() {
      super();
      this.gen = 0;
      this.attachShadow({ mode: "open" });
    }
    connectedCallback() { this.on = true; this.load(); }
    disconnectedCallback() { this.on = false; }
    attributeChangedCallback(_, was, now) { if (this.on && was !== now) this.load(); }
    emit(type, detail) {
      this.dispatchEvent(new CustomEvent("tally:" + type, { bubbles: true, composed: true, detail: Object.assign({ item: this.getAttribute("item") }, detail) }));
    }
    problem(e, message) {
      this.setAttribute("error", e.code || "error");
      this.emit("error", { status: e.status, code: e.code, message: e.message, retryAfter: e.retryAfter });
      return message;
    }
  }

  class Like extends Base {
    constructor() {
      super();
      this.shadowRoot.innerHTML = `<style>${CSS}</style><button type="button" part="button" aria-pressed="false" aria-busy="true">${HEART}<span part="count">–</span></button><span class="err" part="error" role="status"></span>`;
      [this.btn, this.num, this.err] = this.shadowRoot.querySelectorAll("button,span");
      this.btn.addEventListener("click", (ev) => this.toggle(ev));
      this.likes = null;
    }

    async load() {
      const item = this.getAttribute("item");
      if (!item) return;
      const gen = ++this.gen;
      try {
        const r = await withIdentity(this, false, (t) => read(item, t));
        if (gen === this.gen) this.show(r.likes, !!r.liked);
      } catch (e) {
        if (gen === this.gen) this.btn.title = this.problem(e, "The count could not be loaded.");
      }
    }

    show(likes, liked) {
      this.likes = likes;
      this.liked = liked;
      this.num.textContent = short(likes);
      this.btn.title = likes + (likes === 1 ? " like" : " likes");
      this.btn.setAttribute("aria-label", (this.getAttribute("label") || "Like") + " (" + this.btn.title + ")");
      this.btn.setAttribute("aria-pressed", liked);
      this.btn.setAttribute("aria-busy", !!this.busy);
      this.setAttribute("likes", likes);
      this.toggleAttribute("liked", liked);
      this.toggleAttribute("busy", !!this.busy);
    }

    async toggle(ev) {
      // The second click of a double click, or any click while one is in flight or before the
      // count is known, is not a new intent: ignoring it means a double click never counts twice.
      if (ev.detail > 1 || this.busy) return;
      if (this.likes === null) return void this.load(); // the count never arrived: retry the read
      const item = this.getAttribute("item");
      const before = [this.likes, this.liked];
      const want = !this.liked;
      const gen = ++this.gen; // a read still in flight must not overwrite what follows
      this.busy = true;
      this.err.textContent = "";
      this.removeAttribute("error");
      this.show(Math.max(0, this.likes + (want ? 1 : -1)), want);
      try {
        const r = await withIdentity(this, true, (t) => call(want ? "PUT" : "DELETE", itemPath(item) + "/like", t));
        this.busy = false;
        if (gen === this.gen) this.show(r.likes, r.liked);
        for (const el of document.querySelectorAll("tally-like")) {
          if (el !== this && !el.busy && el.likes !== null && el.getAttribute("item") === item && el.getAttribute("token") === this.getAttribute("token")) el.show(r.likes, r.liked);
        }
        this.emit("change", { likes: r.likes, liked: r.liked, changed: r.changed });
      } catch (e) {
        this.busy = false;
        this.show(before[0], before[1]);
        this.err.textContent = this.problem(e, explain(e, want ? "Your like" : "Your unlike"));
      }
      this.toggleAttribute("busy", false);
      this.btn.setAttribute("aria-busy", false);
    }
  }

  // Views are recorded once per item per page load, however many elements show them.
  const recorded = new Map();

  class Views extends Base {
    static get observedAttributes() { return ["item", "token", "metric", "window"]; }
    constructor() {
      super();
      this.shadowRoot.innerHTML = `<style>:host{display:inline}</style><span part="count">–</span><span part="label"></span>`;
      [this.num, this.label] = this.shadowRoot.querySelectorAll("span");
    }

    async load() {
      const item = this.getAttribute("item");
      if (!item) return;
      const gen = ++this.gen;
      const unique = this.getAttribute("metric") === "unique";
      this.toggleAttribute("ignored", ignoring);
      let r;
      try {
        if (this.hasAttribute("passive") || ignoring) {
          r = await withIdentity(this, false, (t) => read(item, t));
        } else {
          if (!recorded.has(item)) {
            const view = withIdentity(this, false, (t) => call("POST", itemPath(item) + "/views", t));
            recorded.set(item, view);
            view.then((v) => this.emit("view", { views: v.views, counted: v.counted }), () => recorded.delete(item));
          }
          r = await recorded.get(item);
          // The view's answer has no uniques: read them once it is counted.
          if (unique) r = await withIdentity(this, false, (t) => read(item, t));
        }
      } catch (e) {
        if (gen === this.gen) this.title = this.problem(e, explain(e, "This view"));
        return;
      }
      if (gen !== this.gen) return;
      const n = unique ? (r.unique_viewers || {})[this.getAttribute("window") || "all_time"] || 0 : r.views;
      this.num.textContent = short(n);
      this.label.textContent = unique ? (n === 1 ? " visitor" : " visitors") : n === 1 ? " view" : " views";
      this.title = n + this.label.textContent;
      this.setAttribute(unique ? "visitors" : "views", n);
      this.removeAttribute("error");
    }
  }

  customElements.define("tally-like", Like);
  customElements.define("tally-views", Views);

  window.Tally = {
    /** The API base URL in use. */
    api: API,
    /** Uses `jwt` (a signed-in user's token) from now on, or the visitor token again with null. */
    setToken(jwt) {
      pageToken = jwt || null;
      document.querySelectorAll("tally-like").forEach((el) => el.on && el.load());
    },
    /** Records no views from this browser on this site (true) or counts them again (false); kept in localStorage. */
    ignoreMe,
    /** Whether this browser's views are ignored. */
    ignored: () => ignoring,
  };
})();
