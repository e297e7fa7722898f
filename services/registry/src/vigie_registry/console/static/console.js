// The console's drawing of counting lines and zones over the scene view. Progressive: the form's fields
// (line-N-points, zone-N-points...) are the truth and work without this script; it draws them, and fills
// them from clicks or from a keyboard cursor (arrow keys, Enter or Space to place a point).
"use strict";

(function () {
  const canvas = document.getElementById("canvas");
  const form = document.getElementById("geometry");
  if (!canvas || !form) {
    return;
  }
  const SVG = "http://www.w3.org/2000/svg";
  const width = Number(canvas.dataset.width);
  const height = Number(canvas.dataset.height);
  const shapes = document.getElementById("shapes");
  const pending = document.getElementById("pending");
  const cursorMark = document.getElementById("cursor");
  const status = document.getElementById("drawing-status");
  const buttons = {
    line: document.getElementById("draw-line"),
    zone: document.getElementById("draw-zone"),
    finish: document.getElementById("finish-zone"),
    cancel: document.getElementById("cancel-drawing"),
  };
  let mode = null; // "line" or "zone" while drawing
  let points = [];
  let target = null; // the row redrawn, if any
  const cursor = { x: 0.5, y: 0.5 };

  function say(key, values) {
    let text = canvas.dataset["msg" + key] || "";
    for (const [name, value] of Object.entries(values || {})) {
      text = text.split("{" + name + "}").join(String(value));
    }
    status.textContent = text;
  }

  function round(value) {
    return Math.round(Math.min(1, Math.max(0, value)) * 1000) / 1000;
  }

  function parse(text) {
    const found = [];
    for (const pair of text.trim().split(/[\s;]+/)) {
      const [x, y] = pair.split(",").map(Number);
      if (pair && Number.isFinite(x) && Number.isFinite(y)) {
        found.push([x, y]);
      }
    }
    return found;
  }

  function element(name, attributes) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) {
      node.setAttribute(key, value);
    }
    return node;
  }

  function frame(list) {
    return list.map(([x, y]) => `${(x * width).toFixed(1)},${(y * height).toFixed(1)}`).join(" ");
  }

  function label(text, [x, y]) {
    const node = element("text", { class: "label", x: x * width + 8, y: y * height - 8 });
    node.textContent = text;
    return node;
  }

  function arrow(from, to, kind) {
    return element("line", {
      class: kind, x1: from[0], y1: from[1], x2: to[0], y2: to[1], "marker-end": "url(#arrow)",
    });
  }

  function rows(kind) {
    return Array.from(form.querySelectorAll(`fieldset[data-kind="${kind}"]`));
  }

  function field(row, part) {
    return row.querySelector(`[data-part="${part}"]`);
  }

  function draw() {
    shapes.replaceChildren();
    for (const row of rows("zone")) {
      const corners = parse(field(row, "points").value);
      if (field(row, "delete").checked || corners.length < 3) continue;
      shapes.append(element("polygon", { class: "zone", points: frame(corners) }));
      shapes.append(label(field(row, "id").value, corners[0]));
    }
    for (const row of rows("line")) {
      const ends = parse(field(row, "points").value);
      if (field(row, "delete").checked || ends.length !== 2) continue;
      shapes.append(element("polyline", { class: "line", points: frame(ends), "marker-end": "url(#arrow)" }));
      shapes.append(label(field(row, "id").value, ends[0]));
      // Arrows across the line, towards the side each counted direction goes to (right of start -> end).
      const [sx, sy] = [ends[0][0] * width, ends[0][1] * height];
      const [ex, ey] = [ends[1][0] * width, ends[1][1] * height];
      const length = Math.hypot(ex - sx, ey - sy) || 1;
      const [nx, ny] = [(-(ey - sy) / length) * 40, ((ex - sx) / length) * 40];
      const middle = [(sx + ex) / 2, (sy + ey) / 2];
      const directions = field(row, "directions").value;
      if (directions !== "right_to_left") {
        shapes.append(arrow([middle[0] - nx, middle[1] - ny], [middle[0] + nx, middle[1] + ny], "crossing"));
      }
      if (directions !== "left_to_right") {
        shapes.append(arrow([middle[0] + nx, middle[1] + ny], [middle[0] - nx, middle[1] - ny], "crossing"));
      }
    }
    pending.replaceChildren();
    if (points.length) {
      const kind = mode === "zone" ? "zone pending-shape" : "line pending-shape";
      pending.append(element("polyline", { class: kind, points: frame(points) }));
      for (const [x, y] of points) {
        pending.append(element("circle", { class: "vertex", cx: x * width, cy: y * height, r: 7 }));
      }
    }
    cursorMark.setAttribute("transform", `translate(${cursor.x * width} ${cursor.y * height})`);
    cursorMark.hidden = mode === null && document.activeElement !== canvas;
    buttons.finish.disabled = !(mode === "zone" && points.length >= 3);
    buttons.cancel.disabled = mode === null;
    buttons.line.setAttribute("aria-pressed", String(mode === "line"));
    buttons.zone.setAttribute("aria-pressed", String(mode === "zone"));
  }

  function blankRow(kind) {
    const all = rows(kind);
    const blank = all.find((row) => !field(row, "id").value.trim() && !field(row, "points").value.trim());
    if (blank) return blank;
    // A copy of the last row, renumbered, emptied.
    const last = all[all.length - 1];
    const next = Math.max(...all.map((row) => Number(row.dataset.row.split("-")[1]))) + 1;
    const copy = last.cloneNode(true);
    const old = last.dataset.row;
    const fresh = `${kind}-${next}-`;
    copy.dataset.row = fresh;
    for (const node of copy.querySelectorAll("[id], [name], [for], [aria-describedby], [data-redraw]")) {
      for (const attribute of ["id", "name", "for", "aria-describedby", "data-redraw"]) {
        const value = node.getAttribute(attribute);
        if (value) node.setAttribute(attribute, value.split(old).join(fresh));
      }
    }
    for (const node of copy.querySelectorAll(".field-error")) node.remove();
    for (const node of copy.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
    for (const input of copy.querySelectorAll("input")) {
      if (input.type === "checkbox") input.checked = false;
      else input.value = "";
    }
    copy.querySelector("legend").textContent = all[0].querySelector("legend").textContent;
    last.after(copy);
    return copy;
  }

  function freeName(kind) {
    const taken = new Set(rows(kind).map((row) => field(row, "id").value.trim()));
    let n = rows(kind).length;
    while (taken.has(`${kind}-${n}`)) n += 1;
    return `${kind}-${n}`;
  }

  function complete() {
    const kind = mode;
    const row = target && target.dataset.kind === kind ? target : blankRow(kind);
    const name = field(row, "id");
    if (!name.value.trim()) name.value = freeName(kind);
    field(row, "points").value = points.map(([x, y]) => `${x},${y}`).join(" ");
    field(row, "delete").checked = false;
    const count = points.length;
    mode = null;
    points = [];
    target = null;
    draw();
    say(kind === "line" ? "Line" : "Zone", { id: name.value, n: count });
  }

  function place(x, y) {
    if (mode === null) {
      say("Need");
      return;
    }
    points.push([round(x), round(y)]);
    say("Point", { n: points.length, x: round(x), y: round(y) });
    if (mode === "line" && points.length === 2) {
      complete();
      return;
    }
    draw();
  }

  function start(kind) {
    mode = kind;
    points = [];
    draw();
    say(kind === "line" ? "ModeLine" : "ModeZone");
    canvas.focus();
  }

  function cancel() {
    mode = null;
    points = [];
    target = null;
    draw();
    say("Cancel");
  }

  buttons.line.addEventListener("click", () => start("line"));
  buttons.zone.addEventListener("click", () => start("zone"));
  buttons.finish.addEventListener("click", () => {
    if (mode === "zone" && points.length >= 3) complete();
  });
  buttons.cancel.addEventListener("click", cancel);

  canvas.addEventListener("click", (event) => {
    // The picture's box (inside the canvas's border): what the normalised coordinates span.
    const box = canvas.querySelector("svg").getBoundingClientRect();
    cursor.x = round((event.clientX - box.left) / box.width);
    cursor.y = round((event.clientY - box.top) / box.height);
    place(cursor.x, cursor.y);
  });

  canvas.addEventListener("keydown", (event) => {
    const step = event.shiftKey ? 0.05 : 0.01;
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (event.key in moves) {
      cursor.x = round(cursor.x + moves[event.key][0]);
      cursor.y = round(cursor.y + moves[event.key][1]);
      say("Cursor", { x: cursor.x, y: cursor.y });
      draw();
    } else if (event.key === "Enter" || event.key === " ") {
      place(cursor.x, cursor.y);
    } else if (event.key === "Backspace" && points.length) {
      points.pop();
      say("Undo");
      draw();
    } else if (event.key === "Escape" && mode !== null) {
      cancel();
    } else if ((event.key === "f" || event.key === "F") && mode === "zone" && points.length >= 3) {
      complete();
    } else {
      return;
    }
    event.preventDefault();
  });
  canvas.addEventListener("focus", draw);
  canvas.addEventListener("blur", draw);

  form.addEventListener("input", draw);
  form.addEventListener("change", draw);
  form.addEventListener("click", (event) => {
    const button = event.target.closest("[data-redraw]");
    if (!button) return;
    target = form.querySelector(`fieldset[data-row="${button.dataset.redraw}"]`);
    say("Redraw", { id: field(target, "id").value });
    buttons[target.dataset.kind].focus();
  });

  // The drawing needs this script: its tools appear only with it.
  canvas.tabIndex = 0;
  canvas.setAttribute("role", "application");
  canvas.setAttribute("aria-label", canvas.dataset.label);
  canvas.setAttribute("aria-describedby", "drawing-help drawing-status");
  for (const node of document.querySelectorAll("#drawing-tools, #drawing-help, [data-redraw]")) {
    node.hidden = false;
  }
  draw();
})();
