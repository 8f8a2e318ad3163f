// Pure functions of the UI: no DOM, no network, no clock (time is passed in).
// app.js uses them, and frontend/browsertest calls them in Chromium.

// decodeJWT returns the header and claims of a JWT without verifying its
// signature: anyone can read a token, only the server can check it. It
// throws an Error saying what is wrong with a string that is not a JWT.
export function decodeJWT(token) {
  const parts = String(token).trim().split(".");
  if (parts.length !== 3) {
    throw new Error(`not a JWT: ${parts.length} part(s), want 3 separated by dots`);
  }
  const part = (i, name) => {
    let value;
    try {
      value = JSON.parse(base64URLDecode(parts[i]));
    } catch {
      throw new Error(`not a JWT: its ${name} is not base64url-encoded JSON`);
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new Error(`not a JWT: its ${name} is not a JSON object`);
    }
    return value;
  };
  return { header: part(0, "header"), claims: part(1, "claims") };
}

// base64URLDecode decodes base64url (RFC 4648 §5, padding optional) into
// a string, reading the bytes as UTF-8.
export function base64URLDecode(s) {
  if (!/^[A-Za-z0-9_-]*={0,2}$/.test(s)) {
    throw new Error("not base64url");
  }
  const b64 = s.replace(/=+$/, "").replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
}

// base64URLEncode encodes a string's UTF-8 bytes as base64url without
// padding, as JWTs do.
export function base64URLEncode(s) {
  const bytes = new TextEncoder().encode(s);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// withClaims returns token with the given claims changed and the old
// signature kept: what an attacker could do without the key. The server
// must refuse the result.
export function withClaims(token, changes) {
  const [header, , signature] = String(token).trim().split(".");
  const { claims } = decodeJWT(token);
  return `${header}.${base64URLEncode(JSON.stringify({ ...claims, ...changes }))}.${signature}`;
}

// basicAuth returns the Authorization header value for HTTP Basic with a
// user name and password in UTF-8 (RFC 7617); btoa alone takes Latin-1 only.
export function basicAuth(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  return "Basic " + btoa(String.fromCharCode(...bytes));
}

// describeExpiry says when a token with claim exp (seconds since the epoch)
// expires, relative to nowMs (milliseconds), e.g. "expires in 59 min" or
// "expired 2 min ago".
export function describeExpiry(exp, nowMs) {
  if (typeof exp !== "number") {
    return "has no expiry (no exp claim)";
  }
  const s = Math.round(exp - nowMs / 1000);
  const span = (n) =>
    n < 90 ? `${n} s` : n < 90 * 60 ? `${Math.round(n / 60)} min` : `${(n / 3600).toFixed(1)} h`;
  return s >= 0 ? `expires in ${span(s)}` : `expired ${span(-s)} ago`;
}

// parseChallenge parses a WWW-Authenticate header with one challenge, such
// as `Bearer realm="app", error="invalid_token"`, into
// {scheme: "Bearer", params: {realm: "app", error: "invalid_token"}}.
export function parseChallenge(header) {
  const m = /^\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*(.*)$/.exec(header || "");
  if (!m) {
    return { scheme: "", params: {} };
  }
  const params = {};
  const re = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g;
  for (const p of m[2].matchAll(re)) {
    params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : p[3];
  }
  return { scheme: m[1], params };
}

// explainFailure turns a failed call into a sentence for people. what names
// the call ("Login"); status is the HTTP status, or 0 if the request never
// got an answer; body is the decoded JSON body (or null); challenge is the
// WWW-Authenticate header; err is the exception of a failed fetch.
export function explainFailure({ what, status = 0, body = null, challenge = "", retryAfter = "", err = null }) {
  if (status === 0) {
    const why = err && err.name === "TimeoutError" ? "no answer in time" : (err && err.message) || "network error";
    return `${what} failed: could not reach the edge (${why}). Is it running, and is this the right address?`;
  }
  const said = body && typeof body.error === "string" ? body.error : "";
  const quoted = said ? `“${said}”` : "";
  const c = parseChallenge(challenge);
  switch (status) {
    case 401:
      if (c.scheme.toLowerCase() === "basic") {
        return `${what} failed: ${said || "wrong user name or password"} (HTTP 401).`;
      }
      if (c.params.error) {
        return `${what} failed: the server rejected the token${said ? ` with ${quoted}` : ""} (HTTP 401, error="${c.params.error}" in WWW-Authenticate). It may be expired, tampered with, or signed with another key.`;
      }
      return `${what} failed: ${quoted || "not authorized"} (HTTP 401). Log in first.`;
    case 429:
      return `${what} failed: ${said || "too many requests"} (HTTP 429).` + (retryAfter ? ` Retry in ${retryAfter} s.` : "");
    case 502:
    case 503:
    case 504:
      return `${what} failed: the edge is up, but the service behind it did not answer${said ? `: ${quoted}` : ""} (HTTP ${status}).`;
    default:
      return `${what} failed${said ? `: ${quoted}` : ""} (HTTP ${status}).`;
  }
}

// percentile returns the p-th percentile (0 < p <= 100) of values by the
// nearest-rank method: the smallest value with at least p% of the values at
// or below it. It returns NaN for no values. values is not modified.
export function percentile(values, p) {
  if (values.length === 0) {
    return NaN;
  }
  const sorted = Float64Array.from(values).sort();
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

// bucketBySecond groups samples by the second they were sent in, for the
// seconds from first to last (whole seconds since the epoch, inclusive). A
// sample is {t: ms since the epoch, version: "1.0.0", ok: true}. It returns
// one bucket per second, oldest first, each {second, total, failures,
// versions: {version: count of successful answers}}; seconds with no
// samples have total 0.
export function bucketBySecond(samples, first, last) {
  const buckets = [];
  for (let s = first; s <= last; s++) {
    buckets.push({ second: s, total: 0, failures: 0, versions: {} });
  }
  for (const { t, version, ok } of samples) {
    const i = Math.floor(t / 1000) - first;
    if (i < 0 || i >= buckets.length) {
      continue;
    }
    const b = buckets[i];
    b.total++;
    if (ok) {
      b.versions[version] = (b.versions[version] || 0) + 1;
    } else {
      b.failures++;
    }
  }
  return buckets;
}

// compareVersions orders versions such as "1.10.0" after "1.9.0": numeric
// parts as numbers, anything else as text.
export function compareVersions(a, b) {
  const pa = String(a).split(/[.+-]/);
  const pb = String(b).split(/[.+-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? "";
    const y = pb[i] ?? "";
    const nx = /^\d+$/.test(x) ? Number(x) : NaN;
    const ny = /^\d+$/.test(y) ? Number(y) : NaN;
    const d = !isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y);
    if (d !== 0) {
      return d < 0 ? -1 : 1;
    }
  }
  return 0;
}

// formatMs formats a duration in milliseconds for the counters.
export function formatMs(ms) {
  if (!Number.isFinite(ms)) {
    return "–";
  }
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}
