// The signing page's only script: choose how to sign, draw on the pad, preview a typed
// signature, show the pseudonym fields. Without it the page still works (type or upload).
(function () {
  "use strict";
  var form = document.querySelector("form.sign");
  if (!form) { return; }
  var panels = { typed: "panel-typed", drawn: "panel-drawn", upload: "panel-upload" };
  var drawn = false;

  Array.prototype.forEach.call(document.querySelectorAll(".needs-js"), function (el) { el.hidden = false; });

  function kind() {
    var checked = form.querySelector("input[name=signature_kind]:checked");
    return checked ? checked.value : "typed";
  }
  function showPanels() {
    var current = kind();
    Object.keys(panels).forEach(function (k) {
      var el = document.getElementById(panels[k]);
      if (el) { el.hidden = k !== current; }
    });
    if (current === "drawn") { sizePad(); }
  }
  Array.prototype.forEach.call(form.querySelectorAll("input[name=signature_kind]"), function (r) {
    r.addEventListener("change", showPanels);
  });

  var pseudo = document.getElementById("pseudonym-fields");
  var nameField = document.getElementById("name-field");
  function showPseudonym() {
    if (!pseudo) { return; }
    var checked = form.querySelector("input[name=sign_as]:checked");
    var asPseudonym = !!(checked && checked.value === "pseudonym");
    pseudo.hidden = !asPseudonym;
    // A pseudonymous signer's real name goes in its own, optional, sealed field.
    if (nameField) { nameField.hidden = asPseudonym; }
  }
  Array.prototype.forEach.call(form.querySelectorAll("input[name=sign_as]"), function (r) {
    r.addEventListener("change", showPseudonym);
  });

  var typed = document.getElementById("typed_signature");
  var name = document.getElementById("name");
  var preview = document.getElementById("typed-preview");
  function updatePreview() {
    if (!preview) { return; }
    var pseudonym = document.getElementById("pseudonym");
    var shown = (pseudo && !pseudo.hidden && pseudonym) ? pseudonym.value.trim() : (name ? name.value.trim() : "");
    preview.textContent = (typed && typed.value.trim()) || shown || "";
  }
  if (typed) { typed.addEventListener("input", updatePreview); }
  if (name) { name.addEventListener("input", updatePreview); }
  var pseudonymInput = document.getElementById("pseudonym");
  if (pseudonymInput) { pseudonymInput.addEventListener("input", updatePreview); }

  var pad = document.getElementById("pad");
  var ctx = pad ? pad.getContext("2d") : null;
  var last = null;
  function sizePad() {
    if (!pad || pad.dataset.sized) { return; }
    var rect = pad.getBoundingClientRect();
    if (!rect.width) { return; }
    var ratio = window.devicePixelRatio || 1;
    pad.width = Math.round(rect.width * ratio);
    pad.height = Math.round(rect.width / 3 * ratio);
    ctx.scale(ratio, ratio);
    ctx.lineWidth = 2.2;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.strokeStyle = "#101040";
    pad.dataset.sized = "1";
  }
  function point(e) {
    var rect = pad.getBoundingClientRect();
    return { x: e.clientX - rect.left, y: e.clientY - rect.top };
  }
  if (pad && ctx) {
    pad.addEventListener("pointerdown", function (e) {
      sizePad();
      pad.setPointerCapture(e.pointerId);
      last = point(e);
      ctx.beginPath();
      ctx.arc(last.x, last.y, 0.8, 0, 2 * Math.PI);
      ctx.stroke();
      drawn = true;
      e.preventDefault();
    });
    pad.addEventListener("pointermove", function (e) {
      if (!last) { return; }
      var p = point(e);
      ctx.beginPath();
      ctx.moveTo(last.x, last.y);
      ctx.lineTo(p.x, p.y);
      ctx.stroke();
      last = p;
      e.preventDefault();
    });
    ["pointerup", "pointercancel", "pointerleave"].forEach(function (type) {
      pad.addEventListener(type, function () { last = null; });
    });
    document.getElementById("clear").addEventListener("click", function () {
      ctx.clearRect(0, 0, pad.width, pad.height);
      drawn = false;
    });
  }

  form.addEventListener("submit", function () {
    var field = document.getElementById("signature_drawn");
    if (field) { field.value = (kind() === "drawn" && drawn) ? pad.toDataURL("image/png") : ""; }
  });

  // A field marked wrong by the server stops looking wrong once the supporter edits it.
  Array.prototype.forEach.call(form.querySelectorAll("[aria-invalid=true]"), function (el) {
    el.addEventListener("input", function () { el.removeAttribute("aria-invalid"); });
  });

  showPanels();
  showPseudonym();
  updatePreview();
  var error = document.getElementById("form-error");
  if (error) { error.focus(); }
})();
