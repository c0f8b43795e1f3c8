// A small SVG line chart (no library: the studio must work offline).
// lineChart({series: [{name, points: [[x, y], ...], color}], xLabel, yLabel, logX, logY,
//            integerX, width, height, xMin, xMax, yMin, yMax, markers: [{x, label}]}) -> <svg>
// integerX: x ticks only at whole numbers (epochs, counts), never 1.5.

const NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

function node(tag, attrs = {}, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  return n;
}

function ticks(lo, hi, log, integer = false) {
  if (log) {
    const out = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(10 ** e);
    return out.filter((t) => t >= lo * 0.999 && t <= hi * 1.001);
  }
  const span = hi - lo || 1;
  const step = 10 ** Math.floor(Math.log10(span / 4));
  let nice = [1, 2, 5, 10].map((m) => m * step).find((s) => span / s <= 6) || step * 10;
  if (integer) nice = Math.max(1, Math.round(nice));
  const out = [];
  for (let t = Math.ceil(lo / nice) * nice; t <= hi + 1e-9; t += nice) out.push(+t.toPrecision(6));
  return out;
}

function fmt(v) { return Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(0) : String(+v.toPrecision(3)); }

export function lineChart({ series, xLabel = "", yLabel = "", logX = false, logY = false, integerX = false, width = 560,
                            height = 260, xMin, xMax, yMin, yMax, markers = [] }) {
  const pad = { l: 52, r: 12, t: 12, b: 36 };
  const svg = node("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}` });
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)
    && (!logX || x > 0) && (!logY || y > 0));
  svg.dataset.points = String(all.length);
  if (!all.length) {
    svg.append(node("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "no data yet"));
    return svg;
  }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  let x0 = xMin ?? Math.min(...xs), x1 = xMax ?? Math.max(...xs);
  let y0 = yMin ?? Math.min(...ys), y1 = yMax ?? Math.max(...ys);
  if (x0 === x1) { x1 = x0 + (logX ? x0 * 9 : 1); }
  if (y0 === y1) { y1 = y0 + (logY ? y0 * 9 : 1); }
  const tx = (v) => logX ? Math.log10(v) : v, ty = (v) => logY ? Math.log10(v) : v;
  const sx = (v) => pad.l + (tx(v) - tx(x0)) / (tx(x1) - tx(x0)) * (width - pad.l - pad.r);
  const sy = (v) => height - pad.b - (ty(v) - ty(y0)) / (ty(y1) - ty(y0)) * (height - pad.t - pad.b);
  const axis = node("g", { stroke: "#d9dee7" });
  for (const t of ticks(x0, x1, logX, integerX && !logX)) {
    axis.append(node("line", { x1: sx(t), x2: sx(t), y1: pad.t, y2: height - pad.b }));
    svg.append(node("text", { x: sx(t), y: height - pad.b + 12, "text-anchor": "middle", "data-axis": "x" }, fmt(t)));
  }
  for (const t of ticks(y0, y1, logY)) {
    axis.append(node("line", { x1: pad.l, x2: width - pad.r, y1: sy(t), y2: sy(t) }));
    svg.append(node("text", { x: pad.l - 4, y: sy(t) + 3, "text-anchor": "end", "data-axis": "y" }, fmt(t)));
  }
  svg.prepend(axis);
  svg.append(node("text", { x: (width + pad.l) / 2, y: height - 4, "text-anchor": "middle" }, xLabel));
  svg.append(node("text", { x: 12, y: height / 2, transform: `rotate(-90 12 ${height / 2})`, "text-anchor": "middle" }, yLabel));
  for (const m of markers) {
    if (!(m.x >= x0 && m.x <= x1)) continue;
    svg.append(node("line", { x1: sx(m.x), x2: sx(m.x), y1: pad.t, y2: height - pad.b, stroke: "#9ca3af", "stroke-dasharray": "4 3" }));
    if (m.label) svg.append(node("text", { x: sx(m.x) + 3, y: pad.t + 10 }, m.label));
  }
  series.forEach((s, i) => {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logX || x > 0) && (!logY || y > 0));
    const color = s.color || PALETTE[i % PALETTE.length];
    if (pts.length) {
      svg.append(node("polyline", { fill: "none", stroke: color, "stroke-width": 2, "data-series": s.name,
        points: pts.map(([x, y]) => `${sx(Math.min(Math.max(x, x0), x1)).toFixed(1)},${sy(Math.min(Math.max(y, y0), y1)).toFixed(1)}`).join(" ") }));
      if (pts.length < 40) for (const [x, y] of pts) svg.append(node("circle", { cx: sx(x), cy: sy(y), r: 2.5, fill: color }));
    }
    svg.append(node("text", { x: width - pad.r - 4, y: pad.t + 12 + i * 13, "text-anchor": "end", fill: color, style: `fill:${color}` }, s.name));
  });
  return svg;
}
