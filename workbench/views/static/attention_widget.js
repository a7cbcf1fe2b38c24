/*
 * anywidget glue for the attention views: Python sends one view's payload (for the head view only
 * the current layer) in the `payload` trait; token clicks come back in `selected`, clicks on a
 * model-view map in `picked` ([layer, head]). Appended after attention.js, which defines
 * globalThis.WorkbenchAttention.
 */
function renderAttention({ model, el }) {
  function draw() {
    const payload = model.get("payload");
    if (!payload || !payload.kind) {
      el.textContent = "";
      return;
    }
    globalThis.WorkbenchAttention.render(el, payload, {
      controls: false,
      selected: model.get("selected"),
      onSelect: function (sel) {
        model.set("selected", sel);
        model.save_changes();
      },
      onPick: function (layer, head) {
        model.set("picked", [layer, head]);
        model.save_changes();
      },
    });
  }
  model.on("change:payload", draw);
  draw();
}

export default { render: renderAttention };
