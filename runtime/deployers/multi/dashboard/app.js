// tsweaver dashboard: plain JavaScript, no build step. Reads the admin server's JSON APIs every 2 s and
// renders deployments, groups and replicas, the call graph (SVG), colocation advice, metric charts (SVG), traces with a
// timeline, and the log tail. Every text from the app goes in through textContent, never as HTML.

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#2563eb", "#16a34a", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#dc2626", "#4f46e5", "#0d9488"];
const $ = (id) => document.getElementById(id);

/** An element: h("td", { class: "num" }, "42", child...). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}
/** An SVG element. */
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}
function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
}

async function api(path) {
  const res = await fetch(path, { cache: "no-store" });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

const colorCache = new Map();
/** A stable color per group name. */
function colorOf(name) {
  if (!colorCache.has(name)) {
    let x = 0;
    for (const ch of name) x = (x * 31 + ch.charCodeAt(0)) >>> 0;
    colorCache.set(name, PALETTE[x % PALETTE.length]);
  }
  return colorCache.get(name);
}

const fmtMs = (v) =>
  v === undefined || v === null ? "–" : v >= 100 ? `${v.toFixed(0)} ms` : v >= 1 ? `${v.toFixed(1)} ms` : `${v.toFixed(2)} ms`;
const fmtRate = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const fmtNum = (v) =>
  Math.abs(v) >= 1000 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : Number.isInteger(v) ? String(v) : v.toFixed(2);
const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });
const ago = (iso) => {
  const secs = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return secs < 90 ? `${secs.toFixed(0)} s ago` : secs < 5400 ? `${(secs / 60).toFixed(0)} min ago` : `${(secs / 3600).toFixed(1)} h ago`;
};

// ---- deployments, listeners, groups ----

function renderDeployments(status, deployments) {
  $("title").textContent = `${status.app} · deployment ${status.deploymentId} · ${status.state} · started ${ago(status.startedAt)}`;
  document.title = `${status.app} · tsweaver`;
  const rows = deployments.map((d) =>
    h(
      "tr",
      { class: d.deploymentId === status.deploymentId ? "current" : "", "data-testid": "deployment-row" },
      h(
        "td",
        { class: "mono" },
        d.admin && d.deploymentId !== status.deploymentId && d.live === "running"
          ? h("a", { href: `http://${d.admin}/` }, d.deploymentId)
          : d.deploymentId,
      ),
      h("td", {}, d.app),
      h("td", {}, h("span", { class: `badge ${d.live === "running" ? "running" : "dead"}` }, d.live)),
      h("td", { class: "muted" }, ago(d.startedAt)),
    ),
  );
  $("deployments").replaceChildren(
    h("thead", {}, h("tr", {}, h("th", {}, "id"), h("th", {}, "app"), h("th", {}, "state"), h("th", {}, "started"))),
    h("tbody", {}, rows),
  );
  const lis = status.listeners.map((l) =>
    h(
      "tr",
      { "data-testid": "listener-row" },
      h("td", {}, l.name),
      h("td", {}, h("a", { href: `http://${l.address}/` }, `http://${l.address}`)),
      h("td", { class: "num" }, `${l.replicas} replicas`),
    ),
  );
  $("listeners").replaceChildren(
    lis.length ? h("tbody", {}, lis) : h("tbody", {}, h("tr", {}, h("td", { class: "empty" }, "no listeners exported yet"))),
  );
}

function renderGroups(status) {
  const body = [];
  for (const g of status.groups) {
    const replicas = g.replicas.length ? g.replicas : [undefined];
    replicas.forEach((r, i) => {
      const cells = [];
      if (i === 0) {
        cells.push(
          h(
            "td",
            { rowspan: replicas.length, "data-testid": "group-name" },
            h("span", { class: "dot", style: `background:${colorOf(g.name)}` }),
            g.name,
          ),
          h("td", { rowspan: replicas.length, class: "muted" }, g.components.join(", ")),
        );
      }
      if (!r) {
        cells.push(h("td", { colspan: 5, class: "muted" }, "not started (no caller yet)"));
      } else {
        cells.push(
          h("td", { class: "mono" }, r.id),
          h("td", { class: "num mono" }, r.pid || "–"),
          h("td", {}, h("span", { class: `badge ${r.state}` }, r.state)),
          h("td", {}, h("span", { class: `badge ${r.health}` }, r.health)),
          h("td", { class: "num" }, r.restarts),
        );
      }
      body.push(
        h(
          "tr",
          r ? { "data-testid": "replica-row", "data-group": g.name, "data-health": r.health } : { "data-testid": "group-row-idle" },
          cells,
        ),
      );
    });
  }
  const head = h(
    "thead",
    {},
    h(
      "tr",
      {},
      ["group", "components", "replica", "pid", "state", "health", "restarts"].map((t) => h("th", {}, t)),
    ),
  );
  $("groups").replaceChildren(head, h("tbody", {}, body));
}

// ---- call graph ----

function renderGraph(graph, status) {
  const groupOf = new Map();
  for (const g of status.groups) for (const c of g.components) groupOf.set(c, g.name);
  const nodes = [...new Set([...graph.components, ...graph.edges.flatMap((e) => [e.caller, e.callee])])];
  $("graph-window").textContent = graph.windowSec > 0 ? `rates over the last ${graph.windowSec.toFixed(0)} s` : "";
  if (nodes.length === 0) {
    $("graph").replaceChildren(h("div", { class: "empty" }, "no components yet"));
    return;
  }
  // Columns by longest path from the roots (components nobody calls); cycles cannot loop forever.
  const depth = new Map(nodes.map((n) => [n, 0]));
  const calls = graph.edges.filter((e) => e.caller !== e.callee);
  for (let i = 0; i < nodes.length; i++) {
    let changed = false;
    for (const e of calls) {
      const d = depth.get(e.caller) + 1;
      if (d > depth.get(e.callee) && d < nodes.length) {
        depth.set(e.callee, d);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const columns = [];
  for (const n of nodes) (columns[depth.get(n)] ??= []).push(n);
  const W = 190,
    H = 46,
    COL = 330,
    ROW = 86,
    PAD = 24;
  // Room above the boxes for arcs over skipped columns.
  const skips = Math.max(0, ...calls.map((e) => depth.get(e.callee) - depth.get(e.caller) - 1));
  const TOP = skips > 0 ? 40 + 18 * skips : 0;
  const pos = new Map();
  const rows = Math.max(...columns.map((c) => (c ? c.length : 0)));
  columns.forEach((col, ci) => {
    if (!col) return;
    col.sort((a, b) => (groupOf.get(a) ?? "").localeCompare(groupOf.get(b) ?? "") || a.localeCompare(b));
    const offset = ((rows - col.length) * ROW) / 2;
    col.forEach((n, ri) => pos.set(n, { x: PAD + ci * COL, y: PAD + TOP + offset + ri * ROW }));
  });
  const width = PAD * 2 + (columns.length - 1) * COL + W;
  const height = PAD * 2 + TOP + (rows - 1) * ROW + H + 20;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": "component call graph" });
  svg.append(
    s(
      "defs",
      {},
      s(
        "marker",
        { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        s("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#64748b" }),
      ),
      s(
        "marker",
        { id: "arrow-bad", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        s("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#dc2626" }),
      ),
    ),
  );
  for (const e of graph.edges) {
    const a = pos.get(e.caller),
      b = pos.get(e.callee);
    if (!a || !b) continue;
    let d, lx, ly;
    if (e.caller === e.callee) {
      d = `M ${a.x + W - 30} ${a.y} C ${a.x + W} ${a.y - 40}, ${a.x + W + 40} ${a.y + 10}, ${a.x + W} ${a.y + H / 2}`;
      lx = a.x + W + 10;
      ly = a.y - 14;
    } else if (b.x > a.x && b.x - a.x <= COL) {
      const x1 = a.x + W,
        y1 = a.y + H / 2,
        x2 = b.x,
        y2 = b.y + H / 2,
        mx = (x1 + x2) / 2;
      d = `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2 - 2} ${y2}`;
      lx = mx;
      ly = (y1 + y2) / 2 - 6;
    } else if (b.x > a.x) {
      // Skips columns: arc over the boxes in between, higher the more it skips.
      const x1 = a.x + W / 2,
        y1 = a.y,
        x2 = b.x + W / 2,
        y2 = b.y,
        span = Math.round((b.x - a.x) / COL);
      const top = Math.min(a.y, b.y) - 26 - 18 * span;
      d = `M ${x1} ${y1} C ${x1} ${top}, ${x2} ${top}, ${x2} ${y2 - 2}`;
      lx = (x1 + x2) / 2;
      ly = top + 0.75 * (Math.min(y1, y2) - top) - 4;
    } else {
      // A call back to an earlier (or the same) column: arc below the boxes.
      const x1 = a.x + W / 2,
        y1 = a.y + H,
        x2 = b.x + W / 2,
        y2 = b.y + H,
        low = Math.max(y1, y2) + 40;
      d = `M ${x1} ${y1} C ${x1} ${low}, ${x2} ${low}, ${x2} ${y2 + 2}`;
      lx = (x1 + x2) / 2;
      ly = low - 6;
    }
    const bad = e.errorRate > 0;
    const label = `${fmtRate(e.callsPerSec)}/s · ${fmtMs(e.meanMs)}`;
    const errLabel = bad ? `${(e.errorRate * 100).toFixed(e.errorRate < 0.01 ? 2 : 0)}% errors` : "";
    const title = `${e.caller} → ${e.callee} (${e.remote ? "remote" : "colocated"})\n${e.calls} calls, ${e.errors} errors since start\np50 ≈ ${fmtMs(e.p50Ms)}, p99 ≈ ${fmtMs(e.p99Ms)}`;
    svg.append(
      s(
        "g",
        {
          class: `edge ${e.remote ? "remote" : "local"} ${bad ? "errors" : ""}`,
          "data-testid": "graph-edge",
          "data-caller": e.caller,
          "data-callee": e.callee,
          "data-remote": e.remote,
          "data-calls": e.calls,
        },
        s("title", {}, title),
        s("path", { d, "marker-end": bad ? "url(#arrow-bad)" : "url(#arrow)" }),
        s(
          "text",
          { x: lx, y: bad ? ly - 13 : ly, "text-anchor": "middle", "data-testid": "edge-label" },
          s("tspan", {}, label),
          bad ? s("tspan", { x: lx, dy: 13 }, errLabel) : "",
        ),
      ),
    );
  }
  for (const n of nodes) {
    const p = pos.get(n);
    const group = groupOf.get(n) ?? "";
    const color = colorOf(group || n);
    svg.append(
      s(
        "g",
        { class: "node", "data-testid": "graph-node", "data-component": n, transform: `translate(${p.x},${p.y})` },
        s("title", {}, `${n}\ngroup ${group}`),
        s("rect", { width: W, height: H, rx: 8, fill: "#fff", stroke: color }),
        s("rect", { width: 6, height: H, rx: 3, fill: color }),
        s("text", { x: 16, y: 19 }, n.length > 28 ? `…${n.slice(-27)}` : n),
        s("text", { x: 16, y: 35, class: "group" }, group ? `group ${group}` : ""),
      ),
    );
  }
  $("graph").replaceChildren(svg);
}

// ---- charts ----

function renderCharts(charts) {
  const out = [];
  for (const c of charts) {
    const lines = c.lines.filter((l) => l.points.length > 0);
    const W = 320,
      H = 110,
      L = 36,
      R = 6,
      T = 8,
      B = 16;
    const ts = lines.flatMap((l) => l.points.map((p) => p[0]));
    const vs = lines.flatMap((l) => l.points.map((p) => p[1]));
    const t0 = Math.min(...ts),
      t1 = Math.max(...ts);
    const vmax = Math.max(1e-9, ...vs);
    const x = (t) => L + (t1 > t0 ? ((t - t0) / (t1 - t0)) * (W - L - R) : (W - L - R) / 2);
    const y = (v) => T + (1 - v / vmax) * (H - T - B);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
    svg.append(
      s("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#d1d5db" }),
      s("line", { x1: L, x2: W - R, y1: T, y2: T, stroke: "#f3f4f6" }),
      s("text", { x: L - 4, y: T + 8, "text-anchor": "end", class: "axis" }, fmtNum(vmax)),
      s("text", { x: L - 4, y: H - B, "text-anchor": "end", class: "axis" }, "0"),
    );
    if (lines.length && t1 > t0)
      svg.append(
        s("text", { x: L, y: H - 3, class: "axis" }, clock(t0)),
        s("text", { x: W - R, y: H - 3, "text-anchor": "end", class: "axis" }, clock(t1)),
      );
    lines.forEach((l) => {
      const color = colorOf(l.label);
      const pts = l.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
      if (l.points.length === 1) svg.append(s("circle", { cx: x(l.points[0][0]), cy: y(l.points[0][1]), r: 2.5, fill: color }));
      else
        svg.append(s("polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 1.8, "vector-effect": "non-scaling-stroke" }));
    });
    const legend = lines.map((l) =>
      h(
        "span",
        {},
        h("span", { class: "dot", style: `background:${colorOf(l.label)}` }),
        `${l.label} `,
        h("b", {}, `${fmtNum(l.points[l.points.length - 1][1])}${c.unit}`),
      ),
    );
    out.push(
      h(
        "div",
        { class: "chart", "data-testid": "chart" },
        h("h3", {}, c.title),
        svg,
        h("div", { class: "legend" }, legend.length ? legend : h("span", { class: "muted" }, "no data yet")),
      ),
    );
  }
  $("charts").replaceChildren(...out);
}

// ---- traces ----

let selectedTrace = "";

function renderTraces(traces, note) {
  // Where the traces come from when it is not the deployer's processes (AWS: X-Ray, or where they are instead).
  $("traces-note").replaceChildren(
    ...(note
      ? [
          h("p", { class: "muted", "data-testid": "traces-source" }, note.source),
          note.error ? h("p", { class: "trace-error", "data-testid": "traces-error" }, note.error) : "",
        ]
      : []),
  );
  // Spans of a trace arrive from several processes in batches: prefer showing one whose root is in.
  // (and that ended a moment ago, so its children are in too).
  const settled = (t) => t.complete && t.startMicros / 1000 + t.durationMicros / 1000 < Date.now() - 1000;
  if (!traces.some((t) => t.traceId === selectedTrace))
    selectedTrace = (traces.find(settled) ?? traces.find((t) => t.complete) ?? traces[0])?.traceId ?? "";
  const rows = traces.map((t) =>
    h(
      "tr",
      {
        class: t.traceId === selectedTrace ? "selected" : "",
        "data-testid": "trace-row",
        "data-trace": t.traceId,
        onclick: () => selectTrace(t.traceId),
      },
      h("td", {}, t.errors ? h("span", { class: "badge UNHEALTHY" }, "error") : h("span", { class: "badge HEALTHY" }, "ok")),
      h("td", {}, t.complete ? t.root : h("span", { class: "muted", title: "the root span has not arrived (yet)" }, `${t.root} …`)),
      h("td", { class: "num" }, fmtMs(t.durationMicros / 1000)),
      h("td", { class: "num" }, t.spans),
      h("td", { class: "muted" }, clock(t.startMicros / 1000)),
    ),
  );
  const head = h(
    "thead",
    {},
    h(
      "tr",
      {},
      ["", "root", "duration", "spans", "at"].map((x) => h("th", {}, x)),
    ),
  );
  $("traces").replaceChildren(
    head,
    h(
      "tbody",
      {},
      rows.length
        ? rows
        : h(
            "tr",
            {},
            h(
              "td",
              { colspan: 5, class: "empty" },
              note ? "no traces" : "no traces yet (TSWEAVER_TRACE_SAMPLE and TSWEAVER_TRACE_RATE set how many calls are traced)",
            ),
          ),
    ),
  );
}

async function selectTrace(id) {
  selectedTrace = id;
  for (const tr of document.querySelectorAll("[data-testid=trace-row]")) tr.classList.toggle("selected", tr.dataset.trace === id);
  await renderTimeline();
}

async function renderTimeline() {
  if (!selectedTrace) {
    $("timeline").replaceChildren(h("div", { class: "empty" }, "select a trace"));
    return;
  }
  const { spans } = await api(`/api/trace?id=${selectedTrace}`);
  const start = Math.min(...spans.map((x) => x.startMicros));
  const total = Math.max(1, Math.max(...spans.map((x) => x.endMicros)) - start);
  const ids = new Set(spans.map((x) => x.spanId));
  const children = new Map();
  for (const sp of spans) {
    const parent = ids.has(sp.parentSpanId) ? sp.parentSpanId : "";
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(sp);
  }
  const rows = [];
  const walk = (parent, depth) => {
    for (const sp of (children.get(parent) ?? []).sort((a, b) => a.startMicros - b.startMicros)) {
      const kind = sp.kind === 2 ? "client" : sp.kind === 1 ? "server" : "span";
      const left = ((sp.startMicros - start) / total) * 100;
      const width = ((sp.endMicros - sp.startMicros) / total) * 100;
      const where = sp.attributes["tsweaver.weavelet"] ?? "";
      rows.push(
        h(
          "div",
          { class: "row", "data-testid": "span-row" },
          h(
            "div",
            {
              class: "label",
              style: `padding-left:${depth * 14}px`,
              title: `${sp.name} (${kind}) in ${where}${sp.statusMessage ? `\n${sp.statusMessage}` : ""}`,
            },
            h("span", { class: "kind" }, kind),
            sp.name,
          ),
          h(
            "div",
            { class: "lane" },
            h("div", {
              class: `bar ${kind} ${sp.statusCode === 2 ? "error" : ""}`,
              "data-testid": "span-bar",
              style: `left:${left.toFixed(3)}%;width:${Math.max(width, 0.3).toFixed(3)}%`,
              title: `${where}\n+${fmtMs((sp.startMicros - start) / 1000)}, ${fmtMs((sp.endMicros - sp.startMicros) / 1000)}`,
            }),
          ),
          h("div", { class: "dur" }, fmtMs((sp.endMicros - sp.startMicros) / 1000)),
        ),
      );
      walk(sp.spanId, depth + 1);
    }
  };
  walk("", 0);
  const errors = spans.filter((x) => x.statusCode === 2);
  $("timeline").replaceChildren(
    h(
      "div",
      { class: "head" },
      h("b", {}, "trace "),
      h("span", { class: "mono", "data-testid": "timeline-trace" }, selectedTrace),
      h("span", { class: "muted" }, ` · ${spans.length} spans · ${fmtMs(total / 1000)}`),
      errors.length ? h("span", { style: "color:var(--bad)" }, ` · ${errors[0].statusMessage}`) : "",
    ),
    ...rows,
  );
}

// ---- logs ----

function renderLogs(entries, components) {
  const sel = $("log-component");
  const known = new Set([...sel.options].map((o) => o.value));
  for (const c of components) if (!known.has(c)) sel.append(h("option", { value: c }, c));
  const box = $("logs");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 30;
  const lines = entries.map((e) => {
    const t = new Date(Number(e.timeMicros) / 1000).toISOString().slice(11, 23);
    const attrs = Object.entries(e.attrs ?? {})
      .filter(([k]) => k !== "stack")
      .map(([k, v]) => ` ${k}=${v}`)
      .join("");
    return h(
      "div",
      { class: `line ${e.level}`, "data-testid": "log-line" },
      h("span", { class: "l" }, (e.level || "info")[0].toUpperCase()),
      " ",
      h("span", { class: "t" }, t),
      " ",
      h("span", { class: "c" }, e.component),
      " ",
      h("span", { class: "w" }, `${e.node}${e.file ? ` ${e.file}:${e.line}` : ""}]`),
      " ",
      e.msg,
      h("span", { class: "a" }, attrs),
    );
  });
  box.replaceChildren(...(lines.length ? lines : [h("div", { class: "empty" }, "no log entries match")]));
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function logQuery() {
  const q = new URLSearchParams({ n: "200" });
  if ($("log-component").value) q.set("component", $("log-component").value);
  if ($("log-level").value) q.set("level", $("log-level").value);
  if ($("log-grep").value) q.set("grep", $("log-grep").value);
  return q.toString();
}

// ---- colocation advice ----

/** The advisor's proposal from the last 60 s of calls: cross-process traffic now and advised, the line to paste. */
function renderAdvice(advice) {
  const el = $("advice");
  if (advice.error !== undefined) {
    el.replaceChildren(h("p", { class: "muted" }, `no advice: ${advice.error}`));
    return;
  }
  if (advice.edges.length === 0 || advice.windowSec === 0) {
    el.replaceChildren(h("p", { class: "muted", "data-testid": "advice-empty" }, "no calls between components in the last minute"));
    return;
  }
  const rate = (n) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
  const summary = h(
    "p",
    { "data-testid": "advice-summary" },
    `cross-process calls/s: ${rate(advice.now.callsPerSec)} now, ${rate(advice.advised.callsPerSec)} with the advice`,
  );
  // The server formats the line (colocateToml), as `tsweaver multi advise` prints it.
  const line = advice.changed ? advice.toml : "the current grouping is already what the advice would pick";
  const rows = advice.edges
    .slice(0, 8)
    .map((e) =>
      h(
        "tr",
        {},
        h("td", {}, `${e.a} ↔ ${e.b}`),
        h("td", { class: "num" }, rate(e.callsPerSec)),
        h("td", {}, e.remoteNow ? "across processes" : "in-process"),
        h("td", {}, e.remoteAdvised ? "across processes" : "in-process"),
      ),
    );
  el.replaceChildren(
    summary,
    h("pre", { "data-testid": "advice-line" }, line),
    h(
      "table",
      { class: "table" },
      h("tr", {}, h("th", {}, "components"), h("th", {}, "calls/s"), h("th", {}, "now"), h("th", {}, "advised")),
      rows,
    ),
    ...advice.held.slice(0, 3).map((t) => h("p", { class: "muted" }, `held back: ${t}`)),
  );
}

// ---- refresh loop ----

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const [status, { deployments }, graph, advice, { charts }, { traces, note }, { entries }] = await Promise.all([
      api("/api/status"),
      api("/api/deployments"),
      api("/api/graph"),
      // Advice is an extra: a deployment that cannot give it still shows everything else.
      api("/api/advice?window=60").catch((err) => ({ error: err.message })),
      api("/api/charts"),
      api("/api/traces?limit=30"),
      api(`/api/logs?${logQuery()}`),
    ]);
    renderDeployments(status, deployments);
    renderGroups(status);
    renderGraph(graph, status);
    renderAdvice(advice);
    renderCharts(charts);
    renderTraces(traces, note);
    await renderTimeline();
    renderLogs(entries, ["stdout", "stderr", ...status.groups.flatMap((g) => g.components)]);
    $("updated").textContent = `updated ${clock(Date.now())}`;
    document.body.dataset.ready = "true";
  } catch (err) {
    $("updated").textContent = `update failed: ${err.message}`;
  } finally {
    busy = false;
  }
}

for (const id of ["log-component", "log-level", "log-grep"]) $(id).addEventListener("input", () => void refresh());
setInterval(() => {
  if ($("live").checked) void refresh();
}, 2000);
void refresh();
