/*
 * Live SMS counter: the rules of content/sms.py (GSM 03.38 / 3GPP TS 23.038), in plain JS.
 * tests/test_sms.py runs both on the same samples and requires them to agree.
 *
 * In the browser, every <textarea data-sms-counter> gets a line below it such as
 * "GSM-7 · 145 characters · 1 part". Labels come from a data-sms-labels JSON attribute
 * (translated server-side), the warning threshold from data-sms-max-parts (default 3).
 * Under Node, `require` it for smsInfo(text).
 */
(function () {
  "use strict";

  // Default alphabet (position 0x1B, the escape, left out; 0x09 is the capital Ç).
  var GSM7_BASIC =
    "@£$¥èéùìòÇ\nØø\rÅå" +
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ" +
    " !\"#¤%&'()*+,-./" +
    "0123456789:;<=>?" +
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§" +
    "¿abcdefghijklmnopqrstuvwxyzäöñüà";
  // Extension table: escape + code, two septets each.
  var GSM7_EXTENSION = "\f^{}\\[~]|€";

  var basic = new Set(Array.from(GSM7_BASIC));
  var extension = new Set(Array.from(GSM7_EXTENSION));

  var GSM7_SINGLE = 160, GSM7_MULTI = 153, UCS2_SINGLE = 70, UCS2_MULTI = 67;

  function countParts(sizes, total, single, multi) {
    if (sizes.length === 0) return 0;
    if (total <= single) return 1;
    // An escape and its character, or a surrogate pair, stay in one part.
    var parts = 1, used = 0;
    for (var i = 0; i < sizes.length; i++) {
      if (used + sizes[i] > multi) {
        parts += 1;
        used = 0;
      }
      used += sizes[i];
    }
    return parts;
  }

  function smsInfo(text) {
    var characters = Array.from(text || ""); // by code point, like a Python str
    var nonGsm = [];
    var seen = new Set();
    characters.forEach(function (c) {
      if (!basic.has(c) && !extension.has(c) && !seen.has(c)) {
        seen.add(c);
        nonGsm.push(c);
      }
    });
    var gsm = nonGsm.length === 0;
    var sizes = characters.map(function (c) {
      return gsm ? (extension.has(c) ? 2 : 1) : c.length; // c.length: UTF-16 units
    });
    var length = sizes.reduce(function (a, b) { return a + b; }, 0);
    var single = gsm ? GSM7_SINGLE : UCS2_SINGLE;
    var multi = gsm ? GSM7_MULTI : UCS2_MULTI;
    var parts = countParts(sizes, length, single, multi);
    return {
      encoding: gsm ? "GSM-7" : "UCS-2",
      length: length,
      parts: parts,
      perPart: parts > 1 ? multi : single,
      nonGsm: nonGsm,
    };
  }

  var DEFAULT_LABELS = {
    character: "character",
    characters: "characters",
    part: "part",
    parts: "parts",
    nonGsm: "not in GSM-7:",
    warning: "each part is charged; keep it to {max} or fewer",
  };

  function describe(info, labels, maxParts) {
    var line = [
      info.encoding,
      info.length + " " + (info.length === 1 ? labels.character : labels.characters),
      info.parts + " " + (info.parts === 1 ? labels.part : labels.parts),
    ];
    if (info.nonGsm.length) line.push(labels.nonGsm + " " + info.nonGsm.join(" "));
    if (info.parts > maxParts) line.push(labels.warning.replace("{max}", String(maxParts)));
    return line.join(" · ");
  }

  function attach(textarea) {
    if (textarea.dataset.smsCounterAttached) return;
    textarea.dataset.smsCounterAttached = "1";
    var labels = Object.assign({}, DEFAULT_LABELS);
    try {
      Object.assign(labels, JSON.parse(textarea.dataset.smsLabels || "{}"));
    } catch (error) {
      // Bad labels fall back to English rather than leave the editor without a counter.
    }
    var maxParts = parseInt(textarea.dataset.smsMaxParts || "3", 10);
    var output = document.createElement("div");
    output.className = "sms-counter";
    output.setAttribute("aria-live", "polite");
    textarea.insertAdjacentElement("afterend", output);
    function update() {
      var info = smsInfo(textarea.value);
      output.textContent = describe(info, labels, maxParts);
      output.classList.toggle("sms-counter--warning", info.parts > maxParts);
    }
    textarea.addEventListener("input", update);
    update();
  }

  function attachAll(root) {
    (root || document).querySelectorAll("textarea[data-sms-counter]").forEach(attach);
  }

  if (typeof module !== "undefined" && module.exports) {
    module.exports = { smsInfo: smsInfo };
  }
  if (typeof document !== "undefined") {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", function () { attachAll(); });
    } else {
      attachAll();
    }
    window.smsInfo = smsInfo;
  }
})();
