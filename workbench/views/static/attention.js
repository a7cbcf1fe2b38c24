/*
 * Workbench attention views: head view (lines between tokens), model view (layer x head grid of
 * small maps) and query/key view (how q.k builds one head's weights). No dependencies, no network.
 *
 * Defines globalThis.WorkbenchAttention.render(el, payload, opts). Token text is only ever written
 * with textContent, so a token that looks like an HTML tag shows as text and never runs.
 *
 * Payloads (built by workbench/views/attention.py; binary blocks are base64, little-endian):
 *   head:  {kind, tokens, segments, n_layers, n_heads, n, k, layer, heads, layer_ids,
 *           layers: {layer: b64}}  one layer = uint16 key index (H, n, k) then float16 weight (H, n, k)
 *   model: {kind, tokens, n_layers, n_heads, size, layer_ids, thumbs: b64}  uint8 (L, H, size, size)
 *   qk:    {kind, tokens, n, d, layer, head, q: b64, k: b64}  float16 (n, d) each
 * opts: {controls: bool (own layer/head pickers), onSelect(queries), onPick(layer, head)}
 */
(function (root) {
  "use strict";

  const HEAD_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
    "#8C6D31", "#000000", "#7F3C8D", "#11A579", "#3969AC", "#F2B701", "#E73F74", "#80BA5A",
    "#E68310", "#008695"];
  const ROW = 18;

  function bytesFromB64(s) {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function halfToFloat(h) {
    const s = (h & 0x8000) ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const f = h & 0x3ff;
    if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
    if (e === 31) return f ? NaN : s * Infinity;
    return s * Math.pow(2, e - 15) * (1 + f / 1024);
  }

  function halves(bytes, offset, count) {
    const u16 = new Uint16Array(bytes.buffer, bytes.byteOffset + offset, count);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = halfToFloat(u16[i]);
    return out;
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    if (attrs) for (const k in attrs) node.setAttribute(k, attrs[k]);
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function hexToRgb(hex) {
    const v = parseInt(hex.slice(1), 16);
    return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
  }

  // sequential map, monotonic in lightness (prints in greyscale): white -> dark blue
  function seq(t) {
    t = Math.max(0, Math.min(1, t));
    return [Math.round(255 - t * 247), Math.round(255 - t * 207), Math.round(255 - t * 148)];
  }

  // diverging map for signed values: blue - white - red
  function div(t) {
    t = Math.max(-1, Math.min(1, t));
    if (t >= 0) return [255, Math.round(255 - 180 * t), Math.round(255 - 200 * t)];
    return [Math.round(255 + 200 * t), Math.round(255 + 140 * t), 255];
  }

  function style(root) {
    root.classList.add("wb-attn");
    root.style.fontFamily = "DejaVu Sans, Arial, sans-serif";
    root.style.fontSize = "12px";
    root.style.color = "#222";
  }

  function layerPicker(payload, current, onChange) {
    const wrap = el("label", {class: "wb-attn-control"}, "Layer: ");
    const select = el("select", {class: "wb-attn-layer"});
    payload.layer_ids.forEach(function (l) {
      const o = el("option", {value: String(l)}, String(l));
      if (l === current) o.selected = true;
      select.appendChild(o);
    });
    select.addEventListener("change", function () { onChange(parseInt(select.value, 10)); });
    wrap.appendChild(select);
    return wrap;
  }

  /* ---------------- head view ---------------- */
  function renderHead(root, payload, opts) {
    const n = payload.n, k = payload.k, H = payload.n_heads;
    const cache = {};
    const state = {
      layer: payload.layer,
      heads: new Set(payload.heads && payload.heads.length ? payload.heads : [...Array(H).keys()]),
      selected: new Set(opts.selected || []),
      hover: -1,
    };
    function layerData(l) {
      if (!(l in cache)) {
        const bytes = opts.layerBytes ? opts.layerBytes(l) : bytesFromB64(payload.layers[String(l)]);
        const count = H * n * k;
        cache[l] = {idx: new Uint16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + 2 * count)),
                    w: halves(bytes, 2 * count, count)};
      }
      return cache[l];
    }
    const bar = el("div", {class: "wb-attn-bar"});
    if (opts.controls !== false && payload.layer_ids.length > 1) {
      bar.appendChild(layerPicker(payload, state.layer, function (l) { state.layer = l; draw(); }));
    }
    const swatches = el("span", {class: "wb-attn-heads"});
    for (let h = 0; h < H; h++) {
      const sw = el("span", {class: "wb-attn-head", title: "head " + h, "data-head": String(h)});
      sw.style.cssText = "display:inline-block;width:14px;height:14px;margin:0 2px;cursor:pointer;" +
        "border:1px solid #444;vertical-align:middle;background:" + HEAD_COLOURS[h % HEAD_COLOURS.length];
      sw.addEventListener("click", function () {
        if (state.heads.has(h)) state.heads.delete(h); else state.heads.add(h);
        draw();
      });
      swatches.appendChild(sw);
    }
    bar.appendChild(el("span", null, " Heads: "));
    bar.appendChild(swatches);
    root.appendChild(bar);

    const body = el("div", {class: "wb-attn-body"});
    body.style.cssText = "display:flex;align-items:flex-start;margin-top:6px;";
    const left = el("div", {class: "wb-attn-col wb-attn-queries"});
    const right = el("div", {class: "wb-attn-col wb-attn-keys"});
    const width = 220;
    const canvas = el("canvas", {class: "wb-attn-lines"});
    const ratio = root.ownerDocument.defaultView.devicePixelRatio || 1;
    canvas.width = width * ratio;
    canvas.height = n * ROW * ratio;
    canvas.style.width = width + "px";
    canvas.style.height = (n * ROW) + "px";
    function tokenCell(i, side) {
      const c = el("div", {class: "wb-attn-token", "data-pos": String(i)}, payload.tokens[i]);
      c.style.cssText = "height:" + ROW + "px;line-height:" + ROW + "px;white-space:pre;" +
        "padding:0 4px;cursor:pointer;text-align:" + (side === "left" ? "right" : "left") +
        (payload.segments && payload.segments[i] ? ";color:#6a3d9a" : "");
      return c;
    }
    for (let i = 0; i < n; i++) {
      const q = tokenCell(i, "left");
      q.addEventListener("mouseenter", function () { state.hover = i; draw(); });
      q.addEventListener("mouseleave", function () { state.hover = -1; draw(); });
      q.addEventListener("click", function () {
        if (state.selected.has(i)) state.selected.delete(i); else state.selected.add(i);
        if (opts.onSelect) opts.onSelect([...state.selected].sort(function (a, b) { return a - b; }));
        draw();
      });
      left.appendChild(q);
      right.appendChild(tokenCell(i, "right"));
    }
    body.appendChild(left);
    body.appendChild(canvas);
    body.appendChild(right);
    root.appendChild(body);

    function draw() {
      const data = layerData(state.layer);
      const ctx = canvas.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, width, n * ROW);
      const focus = state.hover >= 0 ? new Set([state.hover]) : state.selected;
      const heads = [...state.heads];
      const alphaScale = focus.size ? 1 : Math.min(1, 4 / Math.max(1, heads.length));
      const minWeight = Math.min(0.005, 0.5 / n);  // skip invisible lines, keep near-uniform rows
      for (const h of heads) {
        const rgb = hexToRgb(HEAD_COLOURS[h % HEAD_COLOURS.length]);
        for (let i = 0; i < n; i++) {
          if (focus.size && !focus.has(i)) continue;
          const y0 = i * ROW + ROW / 2;
          const base = (h * n + i) * k;
          for (let r = 0; r < k; r++) {
            const w = data.w[base + r];
            if (!(w > minWeight)) continue;
            const j = data.idx[base + r];
            ctx.strokeStyle = "rgba(" + rgb[0] + "," + rgb[1] + "," + rgb[2] + "," + (w * alphaScale) + ")";
            ctx.lineWidth = focus.size ? 2 : 1.5;
            ctx.beginPath();
            ctx.moveTo(0, y0);
            ctx.lineTo(width, j * ROW + ROW / 2);
            ctx.stroke();
          }
        }
      }
      left.querySelectorAll(".wb-attn-token").forEach(function (c, i) {
        c.style.background = state.selected.has(i) ? "#ffe9a8" : "";
      });
      swatches.querySelectorAll(".wb-attn-head").forEach(function (s, h) {
        s.style.opacity = state.heads.has(h) ? "1" : "0.2";
      });
      root.setAttribute("data-wb-drawn", "1");
      root.setAttribute("data-wb-layer", String(state.layer));
    }
    draw();
    return {redraw: draw};
  }

  /* ---------------- model view ---------------- */
  function renderModel(root, payload, opts) {
    const L = payload.layer_ids.length, H = payload.n_heads, s = payload.size;
    const bytes = bytesFromB64(payload.thumbs);
    const cell = Math.max(40, Math.min(72, s));
    const grid = el("div", {class: "wb-attn-grid"});
    grid.style.cssText = "display:grid;grid-template-columns:28px repeat(" + H + "," + cell + "px);gap:3px;";
    grid.appendChild(el("div"));
    for (let h = 0; h < H; h++) grid.appendChild(el("div", {class: "wb-attn-label"}, "H" + h));
    for (let li = 0; li < L; li++) {
      grid.appendChild(el("div", {class: "wb-attn-label"}, "L" + payload.layer_ids[li]));
      for (let h = 0; h < H; h++) {
        const c = el("canvas", {class: "wb-attn-thumb", title: "layer " + payload.layer_ids[li] + ", head " + h});
        c.width = s; c.height = s;
        c.style.cssText = "width:" + cell + "px;height:" + cell + "px;image-rendering:pixelated;" +
          "border:1px solid #ccc;cursor:pointer;";
        const ctx = c.getContext("2d");
        const img = ctx.createImageData(s, s);
        const off = (li * H + h) * s * s;
        for (let p = 0; p < s * s; p++) {
          const rgb = seq(bytes[off + p] / 255);
          img.data[4 * p] = rgb[0]; img.data[4 * p + 1] = rgb[1];
          img.data[4 * p + 2] = rgb[2]; img.data[4 * p + 3] = 255;
        }
        ctx.putImageData(img, 0, 0);
        c.addEventListener("click", function () {
          if (opts.onPick) opts.onPick(payload.layer_ids[li], h);
        });
        grid.appendChild(c);
      }
    }
    root.appendChild(el("div", {class: "wb-attn-caption"},
      "Rows: layers, columns: heads. Each map: queries down, keys across" +
      (payload.n > s ? " (pooled from " + payload.n + " tokens)" : "") + "."));
    root.appendChild(grid);
    root.setAttribute("data-wb-drawn", "1");
    return {redraw: function () {}};
  }

  /* ---------------- query / key view ---------------- */
  function renderQK(root, payload, opts) {
    const n = payload.n, d = payload.d;
    const q = halves(bytesFromB64(payload.q), 0, n * d);
    const kv = halves(bytesFromB64(payload.k), 0, n * d);
    let query = (opts.selected && opts.selected.length) ? opts.selected[0] : 0;
    root.appendChild(el("div", {class: "wb-attn-caption"},
      "Layer " + payload.layer + ", head " + payload.head +
      ": click a query token; each key row shows k, q\u2218k, the score q\u00b7k/\u221ad and softmax weight."));
    const body = el("div");
    body.style.cssText = "display:flex;align-items:flex-start;gap:10px;margin-top:6px;";
    const list = el("div", {class: "wb-attn-col wb-attn-queries"});
    const table = el("div", {class: "wb-attn-qk"});
    body.appendChild(list); body.appendChild(table);
    root.appendChild(body);
    for (let i = 0; i < n; i++) {
      const c = el("div", {class: "wb-attn-token", "data-pos": String(i)}, payload.tokens[i]);
      c.style.cssText = "height:" + ROW + "px;line-height:" + ROW + "px;white-space:pre;cursor:pointer;padding:0 4px;";
      c.addEventListener("click", function () {
        query = i;
        if (opts.onSelect) opts.onSelect([i]);
        draw();
      });
      list.appendChild(c);
    }
    const px = Math.max(2, Math.min(6, Math.floor(256 / d)));
    function strip(values, scale) {
      const c = el("canvas", {class: "wb-attn-strip"});
      c.width = d; c.height = 1;
      c.style.cssText = "width:" + (d * px) + "px;height:" + (ROW - 4) + "px;image-rendering:pixelated;vertical-align:middle;";
      const ctx = c.getContext("2d");
      const img = ctx.createImageData(d, 1);
      for (let t = 0; t < d; t++) {
        const rgb = div(values[t] / scale);
        img.data[4 * t] = rgb[0]; img.data[4 * t + 1] = rgb[1]; img.data[4 * t + 2] = rgb[2]; img.data[4 * t + 3] = 255;
      }
      ctx.putImageData(img, 0, 0);
      return c;
    }
    function draw() {
      table.textContent = "";
      const qi = q.subarray(query * d, (query + 1) * d);
      const scores = new Float32Array(n);
      const prods = [];
      let maxAbs = 1e-9, maxProd = 1e-9;
      for (let t = 0; t < n * d; t++) maxAbs = Math.max(maxAbs, Math.abs(kv[t]), Math.abs(q[t]));
      for (let j = 0; j < n; j++) {
        const p = new Float32Array(d);
        let s = 0;
        for (let t = 0; t < d; t++) { p[t] = qi[t] * kv[j * d + t]; s += p[t]; maxProd = Math.max(maxProd, Math.abs(p[t])); }
        prods.push(p);
        scores[j] = s / Math.sqrt(d);
      }
      let m = -Infinity;
      for (let j = 0; j < n; j++) m = Math.max(m, scores[j]);
      let z = 0;
      const w = new Float32Array(n);
      for (let j = 0; j < n; j++) { w[j] = Math.exp(scores[j] - m); z += w[j]; }
      const head = el("div", {class: "wb-attn-qrow"});
      head.appendChild(el("span", {style: "display:inline-block;width:90px;font-weight:bold"}, "q: " + payload.tokens[query]));
      head.appendChild(strip(qi, maxAbs));
      table.appendChild(head);
      for (let j = 0; j < n; j++) {
        const row = el("div", {class: "wb-attn-krow"});
        row.style.cssText = "height:" + ROW + "px;white-space:nowrap;";
        row.appendChild(el("span", {style: "display:inline-block;width:90px;overflow:hidden;white-space:pre"}, payload.tokens[j]));
        row.appendChild(strip(kv.subarray(j * d, (j + 1) * d), maxAbs));
        row.appendChild(el("span", null, " "));
        row.appendChild(strip(prods[j], maxProd));
        row.appendChild(el("span", {style: "display:inline-block;width:60px;text-align:right"}, scores[j].toFixed(2)));
        const weight = w[j] / z;
        const bar = el("span", {class: "wb-attn-weight", title: weight.toFixed(4)});
        bar.style.cssText = "display:inline-block;height:10px;margin-left:6px;background:#0072B2;width:" +
          Math.round(weight * 100) + "px;";
        row.appendChild(bar);
        row.appendChild(el("span", {style: "margin-left:4px"}, weight.toFixed(3)));
        table.appendChild(row);
      }
      list.querySelectorAll(".wb-attn-token").forEach(function (c, i) {
        c.style.background = i === query ? "#ffe9a8" : "";
      });
      root.setAttribute("data-wb-drawn", "1");
    }
    draw();
    return {redraw: draw};
  }

  function render(root, payload, opts) {
    opts = opts || {};
    root.textContent = "";
    style(root);
    if (payload.title) root.appendChild(el("div", {class: "wb-attn-title", style: "font-weight:bold;margin-bottom:4px"}, payload.title));
    if (payload.kind === "head") return renderHead(root, payload, opts);
    if (payload.kind === "model") return renderModel(root, payload, opts);
    if (payload.kind === "qk") return renderQK(root, payload, opts);
    root.appendChild(el("div", null, "unknown view kind: " + payload.kind));
    return null;
  }

  function renderFromScript(id) {
    const node = document.getElementById(id);
    const data = JSON.parse(document.getElementById(id + "-data").textContent);
    return render(node, data, {});
  }

  root.WorkbenchAttention = {render: render, renderFromScript: renderFromScript,
    bytesFromB64: bytesFromB64, halves: halves};
})(globalThis);
