// The organisers' sign-in: `campaign serve` prints a link ending in #token=…; the part
// after # never reaches a server. This script moves it into the form, removes it from
// the address bar and the history entry, and submits the form (a POST). Without
// scripts, paste the token into the field.
(function () {
  "use strict";
  var match = /^#token=([A-Za-z0-9_-]{20,100})$/.exec(window.location.hash);
  if (!match) { return; }
  window.history.replaceState(null, "", window.location.pathname);
  var form = document.getElementById("login");
  var field = document.getElementById("token");
  if (!form || !field) { return; }
  field.value = match[1];
  form.submit();
})();
