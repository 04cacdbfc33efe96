// 四单工作台: draws the page's charts with Apache ECharts from the JSON the server rendered.
(function () {
  "use strict";
  function ready(fn) { if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); } }
  var days = ["周一", "周二", "周三", "周四", "周五", "周六", "周日"];
  var hours = []; for (var h = 0; h < 24; h++) { hours.push(h + "时"); }
  function base(title) { return { animation: false, title: { text: title, left: 8, top: 4, textStyle: { fontSize: 13 } }, tooltip: { trigger: "axis" }, grid: { left: 44, right: 14, top: 42, bottom: 28, containLabel: false } }; }
  function bars(title, labels, series, unit) {
    var o = base(title);
    o.legend = { top: 4, right: 8, textStyle: { fontSize: 11 } };
    o.xAxis = { type: "category", data: labels, axisLabel: { fontSize: 10, interval: 0, rotate: labels.length > 6 ? 30 : 0 } };
    o.yAxis = { type: "value", name: unit || "", nameTextStyle: { fontSize: 10 } };
    o.grid.bottom = labels.length > 6 ? 56 : 28;
    o.series = series;
    return o;
  }
  function heat(title, data, max) {
    var o = base(title);
    o.tooltip = { position: "top" };
    o.grid = { left: 44, right: 14, top: 36, bottom: 64 };
    o.xAxis = { type: "category", data: hours, splitArea: { show: true }, axisLabel: { fontSize: 10 } };
    o.yAxis = { type: "category", data: days, splitArea: { show: true } };
    o.visualMap = { min: 0, max: max, calculable: false, orient: "horizontal", left: "center", bottom: 4, itemHeight: 80, itemWidth: 12, text: ["多", "少"], textStyle: { fontSize: 11 }, inRange: { color: ["#fff7ec", "#fdbb84", "#b71c1c"] } };
    o.series = [{ type: "heatmap", data: data, label: { show: false } }];
    return o;
  }
  var builders = {
    month: function (d) { return bars("各月订单", d.months, [{ name: "点单", type: "bar", data: d.placed_by_month, itemStyle: { color: "#c62828" } }, { name: "办结", type: "line", data: d.completed_by_month, itemStyle: { color: "#1565c0" } }], "单"); },
    category: function (d) { var o = base("各类别订单"); o.tooltip = { trigger: "item" }; o.series = [{ type: "pie", radius: ["30%", "62%"], center: ["50%", "58%"], data: d.categories, label: { fontSize: 10 } }]; return o; },
    unit: function (d) { var o = bars("各单位订单与办结率", d.units, [{ name: "点单", type: "bar", data: d.placed_by_unit, itemStyle: { color: "#c62828" } }, { name: "办结率%", type: "line", yAxisIndex: 1, data: d.completion_by_unit, itemStyle: { color: "#2e7d32" } }], "单"); o.yAxis = [o.yAxis, { type: "value", max: 100, name: "%" }]; o.grid.right = 36; return o; },
    accept: function (d) { return bars("接单用时 p50 / p90 (小时)", d.units, [{ name: "p50", type: "bar", data: d.accept_p50, itemStyle: { color: "#ef9a9a" } }, { name: "p90", type: "bar", data: d.accept_p90, itemStyle: { color: "#b71c1c" } }], "小时"); },
    complete: function (d) { return bars("完成用时 p50 / p90 (小时)", d.units, [{ name: "p50", type: "bar", data: d.complete_p50, itemStyle: { color: "#90caf9" } }, { name: "p90", type: "bar", data: d.complete_p90, itemStyle: { color: "#1565c0" } }], "小时"); },
    satisfaction: function (d) { return bars("满意率 (4–5 星)", d.units, [{ name: "满意率%", type: "bar", data: d.satisfaction_by_unit, itemStyle: { color: "#2e7d32" } }], "%"); },
    "heat-arrivals": function (d) { return heat("下单时间分布 (周×小时)", d.arrivals, d.max); },
    "heat-acceptances": function (d) { return heat("接单时间分布 (周×小时)", d.acceptances, d.max); }
  };
  ready(function () {
    var source = document.getElementById("chart-data");
    if (!source || typeof echarts === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    var charts = [];
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var build = builders[el.getAttribute("data-chart")];
      if (!build) { return; }
      var chart = echarts.init(el, null, { renderer: "canvas" });
      chart.setOption(build(data));
      charts.push(chart);
    });
    window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
    document.body.setAttribute("data-charts-ready", String(charts.length));
  });
})();
