// Live view client. Protocol: send "read_frame", receive one binary JPEG, repeat.
// Asking again only after a picture has arrived is the flow control: a slow link
// gets fewer but always fresh pictures.
(function () {
  "use strict";
  var img = document.getElementById("live-view");
  var fpsLabel = document.getElementById("fps");
  var statusLabel = document.getElementById("status");
  var arrivals = [];
  var retryDelay = 500;
  var currentUrl = null;

  function setStatus(text, ok) {
    statusLabel.textContent = text;
    statusLabel.className = "status " + (ok ? "ok" : "bad");
  }

  function showFrame(blob) {
    var url = URL.createObjectURL(blob);
    img.onload = function () {
      if (currentUrl) { URL.revokeObjectURL(currentUrl); }
      currentUrl = url;
    };
    img.src = url;
    var now = performance.now();
    arrivals.push(now);
    while (arrivals.length && now - arrivals[0] > 2000) { arrivals.shift(); }
  }

  setInterval(function () {
    var now = performance.now();
    while (arrivals.length && now - arrivals[0] > 2000) { arrivals.shift(); }
    fpsLabel.textContent = (arrivals.length / 2).toFixed(1);
  }, 500);

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + "/websocket");
    ws.binaryType = "blob";
    ws.onopen = function () {
      retryDelay = 500;
      setStatus("live", true);
      ws.send("read_frame");
    };
    ws.onmessage = function (event) {
      ws.send("read_frame");
      showFrame(event.data);
    };
    ws.onclose = function () {
      setStatus("reconnecting…", false);
      setTimeout(function () {
        // after a restart of the server the session may be gone: let the page decide
        fetch("/", { redirect: "manual", cache: "no-store" }).then(function (r) {
          if (r.type === "opaqueredirect") { location.href = "/login"; } else { connect(); }
        }, connect);
      }, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 10000);
    };
  }
  connect();
}());
