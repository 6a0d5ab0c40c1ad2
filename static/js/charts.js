/* Trueup charts: every <canvas data-chart="ID"> is drawn with Chart.js from the JSON in
   <script type="application/json" id="ID"> (Django's json_script), so no inline script is needed.
   The JSON: {"type": "bar"|"line", "labels": [...], "datasets": [{"label", "data", "tone"}],
              "stacked": bool, "currency": "USD" | null, "horizontal": bool}
   Each chart sits beside a table with the same figures, for people who would rather read. */
(function () {
  "use strict";
  var TONES = {
    under: "#b42318", over: "#b54708", credit: "#175cd3", timing: "#6941c6",
    proration: "#0e7090", recovered: "#067647", neutral: "#667085", usage: "#175cd3", allotment: "#98a2b3"
  };
  var PALETTE = ["#175cd3", "#b42318", "#b54708", "#067647", "#6941c6", "#0e7090", "#c11574", "#667085"];

  function money(currency) {
    if (!currency) return function (v) { return Number(v).toLocaleString(); };
    var fmt = new Intl.NumberFormat(undefined, { style: "currency", currency: currency, maximumFractionDigits: 0 });
    return function (v) { return fmt.format(v); };
  }

  function draw(canvas) {
    if (canvas.dataset.drawn || typeof window.Chart === "undefined") return;
    var source = document.getElementById(canvas.dataset.chart);
    if (!source) return;
    var spec = JSON.parse(source.textContent);
    var label = money(spec.currency);
    var datasets = spec.datasets.map(function (d, i) {
      var colour = TONES[d.tone] || PALETTE[i % PALETTE.length];
      return {
        label: d.label, data: d.data.map(Number), backgroundColor: colour, borderColor: colour,
        borderWidth: spec.type === "line" ? 2 : 0, tension: 0.2, fill: false,
        borderDash: d.dashed ? [6, 4] : undefined, pointRadius: spec.type === "line" ? 3 : undefined
      };
    });
    var valueAxis = { stacked: !!spec.stacked, beginAtZero: true, ticks: { callback: label } };
    var categoryAxis = { stacked: !!spec.stacked, grid: { display: false } };
    canvas.dataset.drawn = "1";
    new window.Chart(canvas, {
      type: spec.type || "bar",
      data: { labels: spec.labels, datasets: datasets },
      options: {
        indexAxis: spec.horizontal ? "y" : "x",
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: {
          legend: { display: datasets.length > 1, position: "bottom" },
          tooltip: { callbacks: { label: function (c) { return c.dataset.label + ": " + label(c.raw); } } }
        },
        scales: spec.horizontal ? { x: valueAxis, y: categoryAxis } : { x: categoryAxis, y: valueAxis }
      }
    });
  }

  function drawAll(root) {
    (root || document).querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:load", function (e) { drawAll(e.target); });
})();
