/* Sandbox stand-in for Merge Link (https://cdn.merge.dev/initialize.js). Sandbox only.
 * window.MergeLink.initialize({linkToken, onSuccess, onExit, onReady, tenantConfig}) then MergeLink.openLink().
 * The modal iframe (/link/app) posts {source: "merge-link-sandbox", type: "success", public_token, integration}
 * back here; we call onSuccess(public_token, {integration}) like the real Link does. */
(function () {
  "use strict";
  var script = document.currentScript;
  var origin = script && script.src ? new URL(script.src, window.location.href).origin : window.location.origin;
  var config = null;
  var overlay = null;

  function close() {
    if (overlay && overlay.parentNode) { overlay.parentNode.removeChild(overlay); }
    overlay = null;
  }

  window.addEventListener("message", function (event) {
    var msg = event.data;
    if (event.origin !== origin || !msg || msg.source !== "merge-link-sandbox" || !config) { return; }
    if (msg.type === "success") {
      close();
      if (config.onSuccess) { config.onSuccess(msg.public_token, {integration: msg.integration, linked_account_id: msg.linked_account_id}); }
    } else if (msg.type === "exit") {
      close();
      if (config.onExit) { config.onExit(msg.error || null); }
    }
  });

  window.MergeLink = {
    initialize: function (options) {
      if (!options || !options.linkToken) { throw new Error("MergeLink.initialize: linkToken is required"); }
      config = options;
      if (options.tenantConfig && options.tenantConfig.apiBaseURL) {
        origin = new URL(options.tenantConfig.apiBaseURL, window.location.href).origin;
      }
      if (options.onReady) { setTimeout(options.onReady, 0); }
    },
    openLink: function () {
      if (!config) { throw new Error("MergeLink.openLink: call MergeLink.initialize first"); }
      close();
      overlay = document.createElement("div");
      overlay.id = "merge-link-overlay";
      overlay.style.cssText = "position:fixed;inset:0;background:rgba(0,0,0,.45);z-index:2147483647;" +
        "display:flex;align-items:center;justify-content:center";
      var frame = document.createElement("iframe");
      frame.id = "merge-link-iframe";
      frame.title = "Merge Link (sandbox)";
      frame.src = origin + "/link/app?link_token=" + encodeURIComponent(config.linkToken);
      frame.style.cssText = "width:420px;height:520px;border:0;border-radius:12px;background:#fff";
      overlay.appendChild(frame);
      document.body.appendChild(overlay);
    },
    exitLink: close
  };
})();
