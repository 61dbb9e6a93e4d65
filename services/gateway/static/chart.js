// A small line chart on a <canvas>: several named series of {x, y} points, axes and a legend.
"use strict";

const COLORS = ["#1a4fa0", "#c0392b", "#1e8449", "#8e44ad", "#d68910"];

function drawChart(canvas, series, { xLabel = "", yLabel = "" } = {}) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = width * ratio; canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  const pad = { left: 52, right: 12, top: 24, bottom: 34 };
  const points = series.flatMap((s) => s.points);
  ctx.fillStyle = "#5b6577"; ctx.font = "12px system-ui";
  if (!points.length) { ctx.fillText("no data yet", width / 2 - 30, height / 2); return; }
  let [x0, x1] = [Math.min(...points.map((p) => p.x)), Math.max(...points.map((p) => p.x))];
  let [y0, y1] = [Math.min(...points.map((p) => p.y)), Math.max(...points.map((p) => p.y))];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const X = (x) => pad.left + ((x - x0) / (x1 - x0)) * (width - pad.left - pad.right);
  const Y = (y) => height - pad.bottom - ((y - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
  ctx.strokeStyle = "#aab2c0"; ctx.beginPath();
  ctx.moveTo(pad.left, pad.top); ctx.lineTo(pad.left, height - pad.bottom); ctx.lineTo(width - pad.right, height - pad.bottom);
  ctx.stroke();
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    ctx.fillText(y.toPrecision(3), 4, Y(y) + 4);
  }
  ctx.fillText(`${x0}`, pad.left, height - pad.bottom + 14);
  ctx.fillText(`${x1}`, width - pad.right - 24, height - pad.bottom + 14);
  ctx.fillText(xLabel, width / 2 - 20, height - 6);
  ctx.fillText(yLabel, pad.left + 4, 14);
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 2; ctx.beginPath();
    s.points.forEach((p, j) => (j ? ctx.lineTo(X(p.x), Y(p.y)) : ctx.moveTo(X(p.x), Y(p.y))));
    ctx.stroke();
    s.points.forEach((p) => { ctx.beginPath(); ctx.arc(X(p.x), Y(p.y), 2.5, 0, 2 * Math.PI); ctx.fill(); });
    ctx.fillText(s.name, width - pad.right - 150 + 0, pad.top + 14 * i);
  });
}
