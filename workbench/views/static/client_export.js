/*
 * Client-side figure export for the widgets' Export buttons when the kernel's machine has no
 * browser for kaleido: the user's own browser renders the figure with plotly.js (Plotly.toImage)
 * and sends the image back to the kernel, which writes the file. plotly.js is not on the page in
 * JupyterLab (plotly's widget keeps its own copy private), so the kernel sends plotly.min.js once,
 * in the `plotly_js` trait, and it is loaded from a blob URL (offline, no CDN).
 * Jobs arrive in `job`: {id, figure: {data, layout}, format: "svg"|"png", width, height, scale}.
 */
function loadPlotly(model) {
  if (globalThis.Plotly && globalThis.Plotly.toImage) return Promise.resolve(globalThis.Plotly);
  if (globalThis.__workbenchPlotly) return globalThis.__workbenchPlotly;
  const source = model.get("plotly_js");
  if (!source) return Promise.reject(new Error("plotly.js was not sent by the kernel"));
  // hide AMD/CommonJS so the UMD bundle sets globalThis.Plotly
  const code = "(function(){var define=undefined,module=undefined,exports=undefined;\n" +
    source + "\n}).call(globalThis);";
  globalThis.__workbenchPlotly = new Promise(function (resolve, reject) {
    const script = document.createElement("script");
    script.src = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
    script.onload = function () {
      globalThis.Plotly ? resolve(globalThis.Plotly) : reject(new Error("plotly.js did not load"));
    };
    script.onerror = function () { reject(new Error("plotly.js could not be loaded")); };
    document.head.appendChild(script);
  });
  return globalThis.__workbenchPlotly;
}

function renderClientExport({ model, el }) {
  el.style.display = "none";
  let done = -1;
  function run() {
    const job = model.get("job");
    if (!job || job.id === undefined || job.id === done) return;
    done = job.id;
    loadPlotly(model)
      .then(function (Plotly) {
        return Plotly.toImage(job.figure, {
          format: job.format, width: job.width, height: job.height, scale: job.scale || 1,
        });
      })
      .then(function (url) { model.send({ id: job.id, ok: true, url: url }); })
      .catch(function (err) { model.send({ id: job.id, ok: false, error: String(err) }); });
  }
  model.on("change:job", run);
  model.on("change:plotly_js", run);
  run();
}

export default { render: renderClientExport };
