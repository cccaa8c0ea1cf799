// haoscar console: progressive enhancement only; every page works without it (forms post normally).
// No inline scripts anywhere (the CSP forbids them): behaviour hangs on data- attributes.
"use strict";

(function () {
  // The session's CSRF token, for fetch() calls that change something (header X-CSRF-Token).
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // fetch() with the CSRF header and same-origin credentials; other page scripts use haoscar.fetch.
  function haoscarFetch(url, options) {
    var opts = Object.assign({ credentials: "same-origin" }, options || {});
    opts.headers = Object.assign({ "X-CSRF-Token": csrfToken() }, opts.headers || {});
    return fetch(url, opts);
  }

  // <form data-confirm="Really switch over?">: ask before submitting (the server still checks everything).
  function confirmForms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) {
          event.preventDefault();
        }
      });
    });
  }

  // Move focus to the first invalid field, or to the error summary, after a form came back with problems.
  function focusErrors() {
    var invalid = document.querySelector('[aria-invalid="true"]');
    if (invalid) {
      invalid.focus();
      return;
    }
    var summary = document.querySelector('[role="alert"]');
    if (summary) {
      summary.setAttribute("tabindex", "-1");
      summary.focus();
    }
  }

  window.haoscar = { csrfToken: csrfToken, fetch: haoscarFetch };
  document.addEventListener("DOMContentLoaded", function () {
    confirmForms();
    focusErrors();
  });
})();
