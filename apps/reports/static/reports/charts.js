// Draws each report chart from the JSON beside it (Chart.js 4 from unfold's static files, the global Chart).
document.addEventListener("DOMContentLoaded", function () {
  var palette = ["#2563eb", "#16a34a", "#ea580c", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#4b5563"];
  document.querySelectorAll("canvas.report-chart").forEach(function (canvas) {
    var source = document.getElementById(canvas.dataset.chart);
    if (!source || typeof Chart === "undefined") return;
    var spec = JSON.parse(source.textContent);
    var doughnut = spec.type === "doughnut";
    var datasets = spec.datasets.map(function (dataset, index) {
      var colour = palette[index % palette.length];
      return Object.assign({}, dataset, {
        backgroundColor: doughnut ? palette : colour,
        borderColor: colour,
        borderWidth: spec.type === "line" ? 2 : 0,
      });
    });
    var scales = {};
    if (!doughnut) {
      var value = spec.horizontal ? "x" : "y";
      var category = spec.horizontal ? "y" : "x";
      scales[value] = {beginAtZero: true, stacked: spec.stacked};
      scales[category] = {stacked: spec.stacked};
    }
    new Chart(canvas, {
      type: spec.type,
      data: {labels: spec.labels, datasets: datasets},
      options: {
        maintainAspectRatio: false,
        animation: false,
        indexAxis: spec.horizontal ? "y" : "x",
        scales: scales,
        plugins: {legend: {display: spec.datasets.length > 1 || doughnut}},
      },
    });
  });
});
