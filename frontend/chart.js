// The rollout timeline: one column per second, split into the share of
// each version that answered and, in red on top, the share that failed.

const SVG = "http://www.w3.org/2000/svg";

// The SVG's own coordinates: the element is stretched to its box by CSS
// (preserveAspectRatio="none"), so only proportions matter here.
const WIDTH = 600;
const HEIGHT = 100;

// renderTimeline redraws svg from buckets (see bucketBySecond in lib.js),
// oldest first. colorOf maps a version to its color class index, so each
// version keeps its color as others come and go.
export function renderTimeline(svg, buckets, colorOf) {
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const g = document.createElementNS(SVG, "g");
  for (const y of [0, 25, 50, 75]) {
    g.append(el("line", { x1: 0, x2: WIDTH, y1: y, y2: y, class: "grid" }));
  }
  const w = WIDTH / buckets.length;
  buckets.forEach((b, i) => {
    if (b.total === 0) {
      return;
    }
    const x = i * w;
    let y = HEIGHT; // stack upwards from the bottom
    const versions = Object.keys(b.versions).sort((p, q) => colorOf(p) - colorOf(q));
    for (const v of versions) {
      const h = (b.versions[v] / b.total) * HEIGHT;
      y -= h;
      g.append(el("rect", { x, y, width: w, height: h, class: `v-${colorOf(v)}` }));
    }
    if (b.failures > 0) {
      const h = (b.failures / b.total) * HEIGHT;
      g.append(el("rect", { x, y: y - h, width: w, height: h, class: "fail" }));
    }
  });
  // Column gaps: drawn over the bars so that the columns stay apart at any width.
  for (let i = 1; i < buckets.length; i++) {
    g.append(el("line", { x1: i * w, x2: i * w, y1: 0, y2: HEIGHT, class: "gap" }));
  }
  svg.replaceChildren(g);
}

function el(name, attrs) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) {
    e.setAttribute(k, String(v));
  }
  return e;
}
