// sla-planner live dashboard: fetches the report's figures and redraws them on every tick event.
(function () {
  "use strict";
  var plotConfig = { displaylogo: false, responsive: true };
  var busy = false;
  var again = false;

  function text(id, value) {
    document.getElementById(id).textContent = value;
  }

  function section(index, title) {
    var id = "figure-" + index;
    var div = document.getElementById(id);
    if (div) {
      return div;
    }
    var sec = document.createElement("section");
    sec.id = "section-" + index;
    var h2 = document.createElement("h2");
    h2.textContent = title;
    div = document.createElement("div");
    div.id = id;
    div.className = "chart";
    sec.appendChild(h2);
    sec.appendChild(div);
    document.getElementById("charts").appendChild(sec);
    var li = document.createElement("li");
    var a = document.createElement("a");
    a.href = "#section-" + index;
    a.textContent = title;
    li.appendChild(a);
    document.getElementById("nav").appendChild(li);
    return div;
  }

  function render(data) {
    data.figures.forEach(function (fig, i) {
      var div = section(i + 1, fig.title);
      div.previousSibling.textContent = fig.title;
      Plotly.react(div, fig.figure.data, fig.figure.layout, plotConfig);
    });
    text("title", data.title);
    document.title = data.title;
    text("tick-count", String(data.ticks));
    text("last-tick", data.last_tick);
    document.body.setAttribute("data-ticks", String(data.ticks));
    document.body.setAttribute("data-rendered", String(data.figures.length));
  }

  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch("api/figures", { cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        render(data);
        text("status", "live");
      })
      .catch(function (err) {
        text("status", "update failed (" + err.message + "), retrying");
      })
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  var events = new EventSource("events");
  events.addEventListener("tick", refresh);
  events.onerror = function () {
    text("status", "disconnected, reconnecting");
  };
  events.onopen = function () {
    text("status", "live");
  };
  refresh();
})();
