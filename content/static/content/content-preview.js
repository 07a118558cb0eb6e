/*
 * The template preview page (admin/content/template/preview.html):
 *  - the desktop / mobile toggle sets the width of the email's frame;
 *  - the contact picker asks the server for up to 10 contacts as the marketeer types (debounced)
 *    and, when one is picked, reloads the preview for that contact;
 *  - the language list reloads the preview when another language is chosen.
 * Words come from data-label-* attributes, translated on the server.
 */
(function () {
  "use strict";

  var DEBOUNCE_MS = 250;
  var MIN_LENGTH = 2;

  function debounce(fn, wait) {
    var timer = null;
    return function () {
      var args = arguments;
      clearTimeout(timer);
      timer = setTimeout(function () { fn.apply(null, args); }, wait);
    };
  }

  function initDeviceToggle() {
    var frame = document.getElementById("content-preview-frame");
    var buttons = document.querySelectorAll("[data-preview-width]");
    if (!frame) return;
    buttons.forEach(function (button) {
      button.addEventListener("click", function () {
        frame.style.width = button.dataset.previewWidth + "px";
        buttons.forEach(function (other) {
          other.setAttribute("aria-pressed", String(other === button));
        });
      });
    });
  }

  function initAutosubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  function initPicker(picker) {
    var input = picker.querySelector("input[type=search]");
    var list = picker.querySelector("[role=listbox]");
    var status = picker.querySelector(".contact-picker-status");
    var form = picker.closest("form");
    var url = picker.dataset.searchUrl;
    var latest = 0;

    function choose(result) {
      var hidden = form.querySelector("input[name=contact]");
      if (!hidden) {
        hidden = document.createElement("input");
        hidden.type = "hidden";
        hidden.name = "contact";
        form.appendChild(hidden);
      }
      hidden.value = result.id;
      form.submit();
    }

    function show(results) {
      list.replaceChildren();
      input.setAttribute("aria-expanded", String(results.length > 0));
      status.textContent = results.length ? "" : picker.dataset.labelNone;
      results.forEach(function (result) {
        var item = document.createElement("li");
        item.setAttribute("role", "option");
        var button = document.createElement("button");
        button.type = "button";
        button.className = "contact-picker-option";
        var name = document.createElement("strong");
        name.textContent = result.name;
        var details = document.createElement("span");
        details.className = "quiet";
        details.textContent = [result.identity, result.contact_key].filter(Boolean).join(" · ");
        button.append(name, " ", details);
        button.addEventListener("click", function () { choose(result); });
        item.appendChild(button);
        list.appendChild(item);
      });
    }

    var search = debounce(function () {
      var term = input.value.trim();
      if (term.length < MIN_LENGTH) {
        latest += 1;
        show([]);
        status.textContent = "";
        return;
      }
      var mine = (latest += 1);
      status.textContent = picker.dataset.labelSearching;
      fetch(url + "?q=" + encodeURIComponent(term), {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      })
        .then(function (response) {
          if (!response.ok) throw new Error(String(response.status));
          return response.json();
        })
        .then(function (data) {
          if (mine === latest) show(data.results || []);
        })
        .catch(function () {
          if (mine === latest) {
            list.replaceChildren();
            status.textContent = picker.dataset.labelFailed;
          }
        });
    }, DEBOUNCE_MS);

    input.addEventListener("input", search);
    input.addEventListener("keydown", function (event) {
      // Enter picks the only match instead of submitting the form with a half-typed term.
      if (event.key === "Enter") {
        event.preventDefault();
        var options = list.querySelectorAll(".contact-picker-option");
        if (options.length === 1) options[0].click();
      } else if (event.key === "ArrowDown") {
        var first = list.querySelector(".contact-picker-option");
        if (first) {
          event.preventDefault();
          first.focus();
        }
      }
    });
    list.addEventListener("keydown", function (event) {
      var options = Array.prototype.slice.call(list.querySelectorAll(".contact-picker-option"));
      var index = options.indexOf(document.activeElement);
      if (index < 0) return;
      if (event.key === "ArrowDown" && index < options.length - 1) {
        event.preventDefault();
        options[index + 1].focus();
      } else if (event.key === "ArrowUp") {
        event.preventDefault();
        (index > 0 ? options[index - 1] : input).focus();
      }
    });
  }

  function init() {
    initDeviceToggle();
    initAutosubmit();
    document.querySelectorAll(".contact-picker").forEach(initPicker);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
