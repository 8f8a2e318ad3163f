// The page's behaviour: log in, call /secure, and watch a rollout. Every
// request goes to this page's own origin, the edge, which routes /login to
// auth and the rest to hello.
import {
  basicAuth,
  bucketBySecond,
  decodeJWT,
  describeExpiry,
  explainFailure,
  formatMs,
  percentile,
  withClaims,
} from "./lib.js?v=f0f3162f36";
import { renderTimeline } from "./chart.js?v=f1c3f96daa";

const $ = (id) => document.getElementById(id);

// call sends one request and resolves, never rejects, to what happened:
// {status (0 if no answer), body (decoded JSON or null), headers, ms, err}.
// credentials "omit": the page sends its own Authorization header, and a
// 401 with a Basic challenge must not open the browser's login dialog.
async function call(path, { method = "GET", authorization = "", timeoutMs = 5000 } = {}) {
  const started = performance.now();
  const headers = authorization ? { Authorization: authorization } : {};
  try {
    const resp = await fetch(path, {
      method,
      headers,
      credentials: "omit",
      cache: "no-store",
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await resp.text();
    let body = null;
    if ((resp.headers.get("Content-Type") || "").startsWith("application/json")) {
      try {
        body = JSON.parse(text);
      } catch {
        // Not JSON after all: explainFailure does without a body.
      }
    }
    return { status: resp.status, body, headers: resp.headers, ms: performance.now() - started, err: null };
  } catch (err) {
    return { status: 0, body: null, headers: new Headers(), ms: performance.now() - started, err };
  }
}

// show puts a message into a status region; kind is "ok", "error" or "busy".
function show(region, kind, text) {
  region.className = `result ${kind}`;
  region.textContent = text;
}

// failure explains a failed call in words.
function failure(what, r) {
  return explainFailure({
    what,
    status: r.status,
    body: r.body,
    challenge: r.headers.get("WWW-Authenticate") || "",
    retryAfter: r.headers.get("Retry-After") || "",
    err: r.err,
  });
}

// served says which instance answered, from the headers every service sets.
function served(r) {
  const version = r.headers.get("X-App-Version") || "?";
  const pod = r.headers.get("X-Pod-Name") || "?";
  return `Answered by version ${version} on pod ${pod} in ${formatMs(r.ms)} (request ID ${r.headers.get("X-Request-ID") || "?"}).`;
}

// ---- 1. Log in, and the token's claims ----

// The token lives in the text area only: this page's memory, never storage.
const tokenBox = $("token");

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = $("login-status");
  const button = event.submitter || $("login-button");
  button.disabled = true;
  show(status, "busy", "Logging in…");
  const r = await call("/login", {
    method: "POST",
    authorization: basicAuth($("user").value, $("password").value),
  });
  button.disabled = false;
  if (r.status !== 200 || !r.body || typeof r.body.token !== "string") {
    show(status, "error", failure("Login", r));
    return;
  }
  $("password").value = "";
  tokenBox.value = r.body.token;
  show(status, "ok", `Logged in. The token expires at ${new Date(r.body.expires_at).toLocaleString()}.`);
  showClaims();
  $("token-view").hidden = false;
});

// Claims with their meaning; times are seconds since the epoch.
const claimNames = {
  sub: "subject (user)",
  email: "email",
  iss: "issuer",
  aud: "audience",
  iat: "issued at",
  nbf: "not before",
  exp: "expires",
  jti: "token ID",
};
const timeClaims = new Set(["iat", "nbf", "exp"]);

// showClaims decodes the token in the text area into the claims list.
function showClaims() {
  const list = $("claims");
  const problem = $("claims-problem");
  let decoded;
  try {
    decoded = decodeJWT(tokenBox.value);
  } catch (err) {
    list.replaceChildren();
    $("expiry").textContent = "";
    problem.textContent = `This token cannot be decoded: ${err.message}.`;
    problem.hidden = false;
    return;
  }
  problem.hidden = true;
  const rows = [["alg", "signature algorithm (header)", decoded.header.alg]];
  for (const [k, v] of Object.entries(decoded.claims)) {
    rows.push([k, claimNames[k] || "", v]);
  }
  list.replaceChildren(
    ...rows.flatMap(([k, meaning, v]) => {
      const dt = document.createElement("dt");
      const code = document.createElement("code");
      code.textContent = k;
      dt.append(code, meaning ? ` ${meaning}` : "");
      const dd = document.createElement("dd");
      dd.dataset.claim = k;
      dd.textContent = timeClaims.has(k) && typeof v === "number" ? `${new Date(v * 1000).toLocaleString()} (${v})` : JSON.stringify(v);
      return [dt, dd];
    }),
  );
  $("expiry").textContent = `The token ${describeExpiry(decoded.claims.exp, Date.now())}.`;
}

tokenBox.addEventListener("input", showClaims);

// Keep "expires in …" current while the token is shown.
setInterval(() => {
  if (!$("token-view").hidden) {
    showClaims();
  }
}, 15000);

$("tamper").addEventListener("click", () => {
  try {
    tokenBox.value = withClaims(tokenBox.value, { sub: "admin" });
  } catch (err) {
    show($("login-status"), "error", `Cannot change the token: ${err.message}`);
    return;
  }
  showClaims();
  show($("login-status"), "ok", "Changed the subject to “admin” and kept the old signature. Now call /secure.");
});

// ---- 2. The secure call ----

$("secure-call").addEventListener("click", async () => {
  const result = $("secure-result");
  const token = tokenBox.value.trim();
  show(result, "busy", "Calling /secure…");
  const r = await call("/secure", { authorization: token ? `Bearer ${token}` : "" });
  if (r.status !== 200 || !r.body) {
    show(result, "error", failure("The secure call", r) + (r.status ? ` ${served(r)}` : ""));
    return;
  }
  show(result, "ok", `200 OK: “${r.body.message}”, user “${r.body.user}”. ${served(r)}`);
});

// ---- 3. The rollout view ----

// Seconds on the timeline: since the oldest answer kept, within these bounds,
// so that a short run fills the picture and a long one scrolls.
const MIN_WINDOW = 20;
const MAX_WINDOW = 60;
const MAX_IN_FLIGHT = 32; // beyond this the edge is too slow: skip a tick rather than pile up
const MAX_LATENCIES = 50000; // p50 and p99 are of the last this many answers (over an hour at 10/s)

const rollout = {
  timer: 0, // setInterval handle while running
  drawTimer: 0,
  inFlight: 0,
  samples: [], // {t, version, ok}: the last MAX_WINDOW seconds
  requests: 0,
  failures: 0,
  latencies: [], // ms, of the answers since the last reset (at most MAX_LATENCIES)
  versions: new Map(), // version → successful answers
  pods: new Map(), // pod → version it last answered with
  colors: new Map(), // version → color index, in the order first seen
  lastFailure: "",
};

function colorOf(version) {
  if (!rollout.colors.has(version)) {
    rollout.colors.set(version, rollout.colors.size % 6);
  }
  return rollout.colors.get(version);
}

// announce tells screen reader users about events, not every counter tick.
function announce(text) {
  $("rollout-news").textContent = text;
}

async function poll(path) {
  rollout.inFlight++;
  const t = Date.now();
  const token = tokenBox.value.trim();
  const r = await call(path, { authorization: path === "/secure" && token ? `Bearer ${token}` : "" });
  rollout.inFlight--;
  if (!rollout.timer) {
    setTimeout(draw); // stopped: no timer redraws, so this answer would not show
  }
  const version = r.headers.get("X-App-Version") || "";
  const ok = r.status >= 200 && r.status < 300 && version !== "";
  rollout.requests++;
  rollout.samples.push({ t, version, ok });
  if (r.status !== 0) {
    rollout.latencies.push(r.ms);
    if (rollout.latencies.length > MAX_LATENCIES) {
      rollout.latencies.splice(0, rollout.latencies.length - MAX_LATENCIES);
    }
  }
  if (!ok) {
    if (rollout.failures === 0) {
      announce(`First failure: ${failure(`GET ${path}`, r)}`);
    }
    rollout.failures++;
    rollout.lastFailure = `${new Date(t).toLocaleTimeString()}: ${failure(`GET ${path}`, r)}`;
    return;
  }
  if (!rollout.versions.has(version)) {
    announce(`Version ${version} is answering.`);
  }
  colorOf(version);
  rollout.versions.set(version, (rollout.versions.get(version) || 0) + 1);
  rollout.pods.set(r.headers.get("X-Pod-Name") || "?", version);
  $("last-answer").textContent = `Last answer: version ${version} from pod ${r.headers.get("X-Pod-Name") || "?"} in ${formatMs(r.ms)}.`;
}

function start() {
  const path = $("endpoint").value;
  const rate = Number($("rate").value);
  rollout.timer = setInterval(() => {
    if (rollout.inFlight < MAX_IN_FLIGHT) {
      poll(path);
    }
  }, 1000 / rate);
  rollout.drawTimer = setInterval(draw, 500);
  $("rollout-toggle").textContent = "Stop";
  $("rollout-toggle").setAttribute("aria-pressed", "true");
  $("endpoint").disabled = $("rate").disabled = true;
  $("rollout").dataset.running = "true";
  announce(`Polling ${path} ${rate} times a second.`);
}

function stop() {
  clearInterval(rollout.timer);
  clearInterval(rollout.drawTimer);
  rollout.timer = 0;
  $("rollout-toggle").textContent = "Start";
  $("rollout-toggle").setAttribute("aria-pressed", "false");
  $("endpoint").disabled = $("rate").disabled = false;
  $("rollout").dataset.running = "false";
  draw();
  announce(`Stopped after ${rollout.requests} requests, ${rollout.failures} failed.`);
}

function reset() {
  Object.assign(rollout, { samples: [], requests: 0, failures: 0, latencies: [], lastFailure: "" });
  rollout.versions.clear();
  rollout.pods.clear();
  rollout.colors.clear();
  $("last-answer").textContent = "";
  draw();
}

// draw updates the counters, the legend and the timeline.
function draw() {
  const now = Math.floor(Date.now() / 1000);
  rollout.samples = rollout.samples.filter((s) => s.t >= (now - MAX_WINDOW + 1) * 1000);
  const oldest = rollout.samples.reduce((m, s) => Math.min(m, Math.floor(s.t / 1000)), now);
  const span = Math.min(MAX_WINDOW, Math.max(MIN_WINDOW, now - oldest + 1));
  const buckets = bucketBySecond(rollout.samples, now - span + 1, now);
  renderTimeline($("timeline"), buckets, colorOf);
  $("x-start").textContent = `${span} s ago`;
  $("x-middle").textContent = `${Math.round(span / 2)} s ago`;

  $("c-requests").textContent = String(rollout.requests);
  $("c-failures").textContent = String(rollout.failures);
  $("c-failures").parentElement.classList.toggle("bad", rollout.failures > 0);
  $("c-p50").textContent = formatMs(percentile(rollout.latencies, 50));
  $("c-p99").textContent = formatMs(percentile(rollout.latencies, 99));
  $("c-pods").textContent = String(rollout.pods.size);
  $("last-failure").textContent = rollout.lastFailure ? `Last failure: ${rollout.lastFailure}` : "";
  const pods = [...rollout.pods].sort(([p], [q]) => p.localeCompare(q)).map(([p, v]) => `${p} (${v})`);
  $("pods").textContent = pods.length ? `Pods that answered, with their last version: ${pods.join(", ")}.` : "";

  // The legend: each version's answers since the start, and its share of
  // the last 5 seconds, which is where the rollout is now.
  const recent = buckets.slice(-5);
  const recentTotal = recent.reduce((n, b) => n + b.total, 0);
  const share = (count) => (recentTotal ? `${Math.round((100 * count) / recentTotal)}%` : "–");
  const items = [...rollout.colors.keys()].map((v) => {
    const recentCount = recent.reduce((n, b) => n + (b.versions[v] || 0), 0);
    return legendItem(`v-${colorOf(v)}`, v, rollout.versions.get(v) || 0, share(recentCount));
  });
  const recentFailures = recent.reduce((n, b) => n + b.failures, 0);
  items.push(legendItem("fail", "failed", rollout.failures, share(recentFailures)));
  $("legend").replaceChildren(...items);

  const summary = [...rollout.versions].map(([v, n]) => `${v}: ${n}`).join(", ") || "none yet";
  $("timeline").setAttribute(
    "aria-label",
    `Share of each version per second over the last ${span} seconds. Answers so far: ${summary}; failed: ${rollout.failures}.`,
  );
}

function legendItem(colorClass, name, count, share) {
  const li = document.createElement("li");
  li.dataset.version = name;
  const swatch = document.createElement("span");
  swatch.className = `swatch ${colorClass}`;
  const label = document.createElement("span");
  label.className = "name";
  label.textContent = name;
  const n = document.createElement("span");
  n.className = "count";
  n.textContent = String(count);
  const s = document.createElement("span");
  s.className = "share";
  s.textContent = `(${share} of the last 5 s)`;
  li.append(swatch, label, n, s);
  return li;
}

$("rollout-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (rollout.timer) {
    stop();
  } else {
    start();
  }
});
$("rollout-reset").addEventListener("click", reset);

$("origin").textContent = location.origin;
draw();
